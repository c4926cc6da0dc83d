"""Fixtures for source tests: a feed server, people and a schedule, and a poll shortcut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from oncal_feed import accounts, shifts
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_database
from oncal_feed.models import Shift, Source, User
from oncal_feed.sources.service import PollReport, create_source, poll_source
from oncal_feed.validation import ScheduleInput, SourceInput, UserInput
from tests.sources.feed_server import FeedServer

FEEDS = Path(__file__).parent / "feeds"
# Monday 2 March 2026, noon UTC: the poll window starts at 2026-03-02T00:00Z. The samples
# cross the US (8 March) and EU (29 March) changes to summer time.
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
PEOPLE = {
    "alice@example.com": "Alice Example",
    "bob@example.com": "Bob Builder",
    "zoe@example.com": "Zoe Angstrom",
}


def sample(name: str) -> bytes:
    """The bytes of a sample feed in tests/sources/feeds/."""
    return (FEEDS / name).read_bytes()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Sources may be fetched from loopback (the feed server); fetches give up after 2 s."""
    return {**app_config, "SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32", "SOURCE_TIMEOUT": 2}


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    """A running feed server."""
    with FeedServer() as server:
        yield server


class Sources:
    """People, a `payments` schedule (Europe/Berlin), and shortcuts to sources and shifts."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.database = get_database(app)
        with self.database.session() as session:
            shifts.upsert_schedule(
                session, "payments", ScheduleInput("Payments", "Europe/Berlin"), NOW
            )
            for email, name in PEOPLE.items():
                accounts.create_user(session, UserInput(email, name, "Europe/Berlin"), NOW)

    def add(
        self, url: str, *, user_email: str | None = None, name: str = "Feed", **more: Any
    ) -> int:
        """Add an ics source for `url`; return its id."""
        data = SourceInput(kind="ics", name=name, url=url, user_email=user_email, **more)
        with self.database.session() as session:
            schedule = shifts.get_schedule(session, "payments")
            return create_source(session, schedule, data, get_vault(self.app), NOW, 60).id

    def poll(self, source_id: int, now: datetime = NOW, **options: Any) -> PollReport:
        """Poll the source now, in an app context."""
        with self.app.app_context():
            return poll_source(self.app, source_id, now, **options)

    def source(self, source_id: int) -> Source:
        """The source row as stored now."""
        with self.database.sessionmaker() as session:
            source = session.get(Source, source_id)
            assert source is not None
            return source

    def shifts(self, *, live: bool = True) -> list[Shift]:
        """The schedule's shifts by start (live only unless `live=False`)."""
        with self.database.sessionmaker() as session:
            query = select(Shift).order_by(Shift.starts_at, Shift.id)
            if live:
                query = query.where(Shift.deleted_at.is_(None))
            return list(session.scalars(query))

    def owners(self) -> list[tuple[str, str]]:
        """(start in UTC, owner's email) of each live shift."""
        with self.database.sessionmaker() as session:
            rows = session.execute(
                select(Shift.starts_at, User.email)
                .join(User, User.id == Shift.user_id)
                .where(Shift.deleted_at.is_(None))
                .order_by(Shift.starts_at)
            ).all()
        return [(start.strftime("%Y-%m-%dT%H:%MZ"), email) for start, email in rows]


@pytest.fixture
def world(app: Flask) -> Sources:
    """People, a schedule, and source shortcuts."""
    return Sources(app)


def relative_feed(start: datetime, people: list[str], hours: int = 24) -> bytes:
    """A Grafana OnCall-shaped feed of back-to-back shifts from `start` (for real-time tests).

    Each entry of `people` is one shift's person, as Grafana writes them (`[L1] name`, the
    email in DESCRIPTION).
    """
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID://Grafana Labs//Grafana On-Call//"]
    for index, email in enumerate(people):
        begin = start + timedelta(hours=hours * index)
        end = begin + timedelta(hours=hours)
        lines += [
            "BEGIN:VEVENT",
            f"SUMMARY:[L1] {email.split('@')[0]}",
            f"DTSTART;VALUE=DATE-TIME:{begin:%Y%m%dT%H%M%SZ}",
            f"DTEND;VALUE=DATE-TIME:{end:%Y%m%dT%H%M%SZ}",
            "DTSTAMP;VALUE=DATE-TIME:20260301T100000Z",
            f"UID:OBSW3AAFX5PWT-{index}",
            f"DESCRIPTION:{email}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def api_instant(value: dict[str, str]) -> str:
    """A Google or Graph start/end (any offset, or Graph's naive UTC) as `YYYY-MM-DDTHH:MMZ`."""
    text = value["dateTime"]
    if value.get("timeZone") == "UTC" and "+" not in text and not text.endswith("Z"):
        text = text.split(".")[0] + "+00:00"
    instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
