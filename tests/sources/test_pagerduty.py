"""A PagerDuty API source against the fake PagerDuty: levels, emails, paging, 90-day spans."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from oncal_feed import shifts
from oncal_feed.connections.vault import get_vault
from oncal_feed.rendering.event import RenderOptions, shift_event
from oncal_feed.sources.service import create_source
from oncal_feed.validation import ScheduleInput, SourceInput
from tests.connections.flows import database_text
from tests.fakes.pagerduty import FakePagerDuty
from tests.sources.conftest import NOW, Sources

KEY = "pd-test-key-0123456789"
START = NOW.replace(hour=9)


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    """A running fake PagerDuty with Alice and Bob."""
    with FakePagerDuty(KEY) as fake:
        fake.add_user("PALICE1", "Alice Example", "alice@example.com")
        fake.add_user("PBOB001", "Bob Builder", "bob@example.com")
        fake.add_user("PCAROL1", "Carol Unknown", "carol@elsewhere.example")
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def app_config(app_config: dict[str, Any], pagerduty: FakePagerDuty) -> dict[str, Any]:
    """The app reads PagerDuty's API from the fake."""
    return {**app_config, "PAGERDUTY_API_BASE": pagerduty.api_base}


def add_pagerduty(
    world: Sources, token: str = KEY, schedules: tuple[str, ...] = ("PI7DH85",)
) -> int:
    """Add a PagerDuty source for the schedules; return its id."""
    data = SourceInput(
        kind="pagerduty", name="PagerDuty", api_token=token, pagerduty_schedule_ids=schedules
    )
    with world.database.session() as session:
        schedule = shifts.get_schedule(session, "payments")
        return create_source(session, schedule, data, get_vault(world.app), NOW, 60).id


def test_levels_become_roles_and_emails_map_people(
    world: Sources, pagerduty: FakePagerDuty
) -> None:
    """Level 1 primary, 2 secondary; users' emails (include[]=users) name the people."""
    pagerduty.add_oncall("PALICE1", START, START + timedelta(days=7), level=1)
    pagerduty.add_oncall("PBOB001", START, START + timedelta(days=7), level=2)
    pagerduty.add_oncall("PCAROL1", START + timedelta(days=7), START + timedelta(days=14))
    source_id = add_pagerduty(world)
    report = world.poll(source_id)
    assert report.outcome == "changed", report.problem
    got = sorted((s.role, s.starts_at, s.user_id) for s in world.shifts())
    assert [role for role, _, _ in got] == ["primary", "secondary"]
    source = world.source(source_id)
    assert (source.events_read, source.shifts_mapped, source.unmatched_count) == (3, 2, 1)
    first = pagerduty.requests[0]
    assert first.header("Accept") == "application/vnd.pagerduty+json;version=2"
    assert first.query["schedule_ids[]"] == ["PI7DH85"]
    assert first.query["include[]"] == ["users"]
    assert world.poll(source_id, NOW + timedelta(minutes=1)).outcome == "unchanged"


def test_pages_and_spans_of_at_most_90_days(world: Sources, pagerduty: FakePagerDuty) -> None:
    """150 days of two levels need two pages per span; a 180-day window needs two spans."""
    for day in range(150):
        first, second = ("PALICE1", "PBOB001") if day % 2 else ("PBOB001", "PALICE1")
        begin, end = START + timedelta(days=day), START + timedelta(days=day + 1)
        pagerduty.add_oncall(first, begin, end, level=1)
        pagerduty.add_oncall(second, begin, end, level=2)
    source_id = add_pagerduty(world)
    report = world.poll(source_id)
    assert report.outcome == "changed", report.problem
    assert len(world.shifts()) == 300
    spans = {(r.param("since"), r.param("until")) for r in pagerduty.requests}
    assert len(spans) == 2
    offsets = [r.param("offset") for r in pagerduty.requests]
    assert offsets.count("100") >= 1


def test_rate_limit_backs_off_and_changes_nothing(world: Sources, pagerduty: FakePagerDuty) -> None:
    """429 with Retry-After: the source is failing, the next poll waits at least that long."""
    pagerduty.add_oncall("PALICE1", START, START + timedelta(days=7))
    source_id = add_pagerduty(world)
    world.poll(source_id)
    before = [(s.uid, s.revision) for s in world.shifts()]
    pagerduty.fail_next(1, 429, retry_after=900)
    report = world.poll(source_id, NOW + timedelta(minutes=1))
    assert report.outcome == "failed"
    assert report.problem == "PagerDuty's API asked us to slow down (HTTP 429)."
    assert report.next_poll_at is not None
    assert report.next_poll_at >= NOW + timedelta(minutes=1, seconds=900)
    assert [(s.uid, s.revision) for s in world.shifts()] == before


def test_wrong_key_says_so_and_the_key_is_stored_encrypted(
    world: Sources, pagerduty: FakePagerDuty
) -> None:
    """401: a plain-words problem; the key is in no table in clear text."""
    source_id = add_pagerduty(world, token="not-the-right-key-42")
    report = world.poll(source_id)
    assert report.problem == (
        "PagerDuty's API answered HTTP 401 (the link or key may have expired or been revoked)."
    )
    with world.database.sessionmaker() as session:
        assert "not-the-right-key-42" not in database_text(session)
    assert world.source(source_id).redacted == "PagerDuty API, schedules PI7DH85"


def test_events_link_to_the_schedule_on_pagerduty(world: Sources, pagerduty: FakePagerDuty) -> None:
    """The schedule's page at PagerDuty (`html_url`) becomes the schedule's link, so its
    events point there; a link an admin set is kept."""
    pagerduty.add_oncall("PALICE1", START, START + timedelta(days=7), level=1)
    source_id = add_pagerduty(world)
    assert world.poll(source_id).outcome == "changed"
    link = "https://acme.pagerduty.com/schedules/PI7DH85"
    with world.database.sessionmaker() as session:
        schedule = shifts.get_schedule(session, "payments")
        assert schedule.url == link
        (shift,) = shifts.shifts_for_user(
            session, world.shifts()[0].user_id, START - timedelta(days=1), START + timedelta(days=8)
        )
        event = shift_event(shifts.shift_facts(shift), RenderOptions("https://oncal.test"))
    assert event.url == link
    assert f"Schedule: {link}" in event.description

    with world.database.session() as session:
        shifts.upsert_schedule(
            session,
            "payments",
            ScheduleInput("Payments", "Europe/Berlin", "https://wiki.test/p"),
            NOW,
        )
    assert world.poll(source_id, NOW + timedelta(minutes=1)).outcome == "unchanged"
    with world.database.sessionmaker() as session:
        assert shifts.get_schedule(session, "payments").url == "https://wiki.test/p"
