"""The README's promises, run for real: its curl block against a running demo (with the
dates it computes), and running the demo a second time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from oncal_feed.db import Base
from oncal_feed.models import Shift
from tests.demo_process import demo_env, readme_curl_block, run_demo, serve_demo
from tests.processes import ROOT, http_request

MARK = "@@@ answer @@@"


def mondays() -> list[date]:
    """The README's W1..W4: the coming Monday (never today) and the three after it."""
    today = datetime.now().astimezone().date()  # the shell's today, as `date` has it
    first = today + timedelta(days=7 - today.weekday())
    return [first + timedelta(weeks=n) for n in range(4)]


def run_block(port: int, instance: Path) -> list[str]:
    """Run the README's block against the demo on `port`; one output per paragraph."""
    block = readme_curl_block()
    # The reader's checkout is the current directory; ours may run from another venv.
    block = block.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    paragraphs = [part for part in block.split("\n\n") if part.strip()]
    script = f"\nprintf '\\n{MARK}\\n'\n".join(paragraphs)
    done = subprocess.run(
        ["bash", "-eu", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=demo_env(instance),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [part.strip() for part in done.stdout.split(MARK)]


def test_readme_curl_block_against_a_running_demo(tmp_path: Path) -> None:
    """Each answer is what the README's comments say; Kim can then sign in."""
    w1, w2, w3, _w4 = (f"{day.isoformat()}T08:00:00Z" for day in mondays())
    with serve_demo(tmp_path / "instance") as demo:
        answers = run_block(demo.port, demo.instance)
        setup, user, schedule, shift, window, moved, listed, deleted, invite = answers
        assert setup == ""
        kim = json.loads(user)
        assert (kim["email"], kim["display_name"]) == ("kim@example.com", "Kim Lee")
        assert json.loads(schedule)["name"] == "Checkout"
        created = json.loads(shift)
        assert (created["external_id"], created["starts_at"], created["ends_at"]) == (
            "week-1", w1, w2,
        )  # fmt: skip
        counts = json.loads(window)
        assert {k: counts[k] for k in ("created", "updated", "deleted")} == {
            "created": 2, "updated": 0, "deleted": 0,
        }  # fmt: skip
        assert json.loads(moved)["starts_at"] == w3.replace("T08", "T12")
        kims = json.loads(listed)["shifts"]
        assert [(s["external_id"], s["starts_at"]) for s in kims] == [
            ("week-1", w1), ("week-2", w2),
        ]  # fmt: skip
        # Inside the feeds' default window (the reason the dates are relative).
        assert datetime.fromisoformat(w1) - datetime.now(UTC) < timedelta(days=8)
        assert deleted == "204"
        link = json.loads(invite)
        assert link["url"].startswith(f"{demo.base_url}/password?token=")
        status, page = http_request("GET", link["url"])
        assert status == 200
        assert b'name="password"' in page


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: the database as data (JSON values as their text,
    so that rows can be compared as sets)."""

    def plain(value: Any) -> Any:
        return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value

    with engine.connect() as connection:
        return {
            table.name: sorted(
                (tuple(plain(value) for value in row) for row in connection.execute(select(table))),
                key=repr,
            )
            for table in Base.metadata.sorted_tables
        }


def test_running_the_demo_twice(tmp_path: Path) -> None:
    """Twice on one day: the second run changes no row and says so. Then, after API edits
    to the demo's own shifts, a run puts back exactly those and says what it changed."""
    instance = tmp_path / "instance"
    first = run_demo(instance, "--no-serve")
    assert first.returncode == 0, first.stderr
    engine = create_engine(f"sqlite:///{instance / 'oncal-feed.sqlite'}")
    before = dump(engine)
    second = run_demo(instance, "--no-serve")
    assert second.returncode == 0, second.stderr
    assert re.search(r": 0 created, 0 updated, \d+ unchanged, 0 deleted", second.stdout)
    assert "Put the demo's own schedules back" not in second.stdout
    assert dump(engine) == before

    with engine.begin() as connection:
        shift_id, ends = connection.execute(
            select(Shift.id, Shift.ends_at).where(Shift.external_id.like("primary-%"))
        ).first()  # type: ignore[misc]
        connection.execute(
            Shift.__table__.update().where(Shift.id == shift_id).values(notes="edited")
        )
    third = run_demo(instance, "--no-serve")
    assert third.returncode == 0, third.stderr
    assert ": 0 created, 1 updated, " in third.stdout
    assert "1 shift(s) changed since were reset" in third.stdout
    after = dump(engine)
    assert set(after) == set(before)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"shifts", "users", "schedules"}
    # Users and schedules: only the calendar version (and when it changed) of the edited
    # shift's owner and schedule moved, so their feeds refetch.
    schedule_names = [c.name for c in Base.metadata.tables["schedules"].columns]
    schedule_moving = {
        schedule_names.index("calendar_version"),
        schedule_names.index("calendar_changed_at"),
    }
    moved_schedules = set(before["schedules"]) ^ set(after["schedules"])
    assert len(moved_schedules) == 2
    assert len({
        tuple(v for i, v in enumerate(row) if i not in schedule_moving) for row in moved_schedules
    }) == 1  # fmt: skip
    names = [c.name for c in Base.metadata.tables["users"].columns]
    moving = {names.index("calendar_version"), names.index("calendar_changed_at")}
    moved_users = set(before["users"]) ^ set(after["users"])
    assert len(moved_users) == 2
    rest = {tuple(v for i, v in enumerate(row) if i not in moving) for row in moved_users}
    assert len(rest) == 1
    # Shifts: only the edited one changed, and its notes are the demo's again.
    moved_shifts = set(before["shifts"]) ^ set(after["shifts"])
    assert {row[0] for row in moved_shifts} == {shift_id}
    restored = next(row for row in after["shifts"] if row[0] == shift_id)
    original = next(row for row in before["shifts"] if row[0] == shift_id)
    notes = [c.name for c in Shift.__table__.columns].index("notes")
    assert restored[notes] == original[notes] != "edited"
    assert ends is not None
