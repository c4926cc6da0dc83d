"""The chaos scenario: push sync through every kind of fault, killed workers and churn.

One run, on both providers at once (Alice's Google and Outlook calendars, the real
adapters against the fakes, the worker in a process of its own as `oncal-feed worker`
runs it, the minute sweep included):

1. `shifts` shifts are imported while both fakes fail a fifth of their calendar calls
   (`FAULT_RATES`: 500/503, 429 with Retry-After, the 403 throttle, calls held past the
   client's timeout, connections dropped before and after the write committed, answers
   so slow that the write lands after the client gave up), and the worker is SIGKILLed
   in the middle of the initial sync, then started again at once;
2. `changes` random changes follow, each committed and notified as the API does: new
   shifts, moves, reassignments to Bob (they leave Alice's calendars), deletions, new
   notes and window imports. On the way the user deletes each whole calendar (all its
   events to be written afresh), edits and deletes some of our events in both calendars
   (and a day passes, so the daily full check is due), and the worker is killed again
   mid-batch and restarted;
3. with the faults still on, the clock runs until both calendars hold exactly what the
   shifts render to, every record says so (nothing left that a sync would still send),
   and both stay so (`settle` seconds: longer than a slow call takes to
   land), for up to `budget` seconds; then the faults stop, and the calendars must get
   there within `calm_budget`; then, once any late-write recheck still due has run (a
   listing the engine asks for after giving up on an insert that may land late), the
   worker is watched while idle, and the calendars must still be exact.

The figures say how long convergence took after the last change with the faults on (or
what was still missing when the budget ran out, and how long it took once they stopped),
how long each killed worker's connections waited before a new worker took them over
(the goal: within the lease plus 10 s), the round trips per change (each calendar's, and
both together), and the writes while idle. `tests/sync/test_chaos.py` runs it with a fixed
seed; `benchmarks/sync.py --chaos` with any seed and size.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import or_, select, update

from oncal_feed import shifts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, SyncRecord
from oncal_feed.notify import shifts_changed
from oncal_feed.sync.schedule import LATE_WRITE_RECHECK, full_check_due, pending_recheck
from oncal_feed.sync.tasks import request_sync
from oncal_feed.validation import ShiftInput
from tests.sync.remote import (
    ALICE,
    connect_both,
    connection,
    desired_events,
    google_events,
    graph_events,
    mismatch,
    remote_events,
)
from tests.sync.support import World
from tests.sync.worker_process import WorkerChild

BOB = "bob@example.com"
# Share of the calendar calls (batch members included) each kind of fault takes: 20 %.
FAULT_RATES = {
    "error_rate": 0.05,
    "rate_limit_rate": 0.025,
    "quota_rate": 0.025,
    "hang_rate": 0.025,
    "drop_rate": 0.025,
    "drop_after_commit_rate": 0.03,
    "slow_rate": 0.02,
}
# Longer than the PROVIDER_TIMEOUT the scenario asks for: held or slow calls time out.
PROVIDER_TIMEOUT = 1
FAULT_SECONDS = 1.5
CHANGE_KINDS = ("create", "move", "reassign", "delete", "notes", "window")
CHANGE_WEIGHTS = (25, 25, 15, 15, 10, 10)


@dataclass(frozen=True)
class Settings:
    """The scenario's size; the defaults are the CI test's."""

    seed: int = 2026
    shifts: int = 500
    changes: int = 200
    lease_seconds: int = 6
    pace: float = 0.015  # mean seconds between two changes
    settle: float = 3.0
    budget: float = 30.0  # seconds allowed for convergence after the last change, faults on
    calm_budget: float = 120.0  # then, the faults off, for the rest


@dataclass
class Figures:
    """What a run measured."""

    convergence: float | None = None  # after the last change, faults on
    faulty_problems: dict[str, Any] = field(default_factory=dict)
    calm_convergence: float | None = None  # after the faults stopped, when it took that
    resumes: list[float] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)
    round_trips: Counter[str] = field(default_factory=Counter)  # by provider
    recheck_wait: float = 0.0  # before the idle watch, for late-write rechecks still due
    idle_writes: int = 0
    idle_runs: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    problems: dict[str, Any] = field(default_factory=dict)
    states: set[str] = field(default_factory=set)

    def lines(self, settings: Settings) -> list[str]:
        """The figures as lines to print."""
        total = sum(self.changes.values())
        share = sum(self.injected.values()) / max(self.calls, 1)
        return [
            f"chaos: seed {settings.seed}, {settings.shifts} shifts, {total} changes "
            f"({', '.join(f'{n} {k}' for k, n in sorted(self.changes.items()))})",
            f"chaos: faults injected {sum(self.injected.values())} of {self.calls} calendar "
            f"calls ({share:.0%}): "
            + ", ".join(f"{n} {k}" for k, n in sorted(self.injected.items())),
            f"chaos: last change to exact convergence, faults on: {self._convergence(settings)}",
            f"chaos: worker killed {len(self.resumes)} times; resumed after "
            + ", ".join(f"{s:.1f} s" for s in self.resumes)
            + f" (lease {settings.lease_seconds} s; goal <= lease + 10 s)",
            # Every change reaches both calendars, so one round trip per calendar is 2 here.
            f"chaos: round trips per change, faults and retries included: "
            f"{self.round_trips.total() / max(total, 1):.2f} over both calendars ("
            + ", ".join(
                f"{provider} {trips / max(total, 1):.2f}"
                for provider, trips in sorted(self.round_trips.items())
            )
            + " each)",
            f"chaos: idle, faults off (after {self.recheck_wait:.1f} s for late-write rechecks "
            f"still due): {self.idle_writes} writes, {self.idle_runs} calendar calls",
            f"chaos: end state: {self.problems or 'exact on both providers'}",
        ]

    def _convergence(self, settings: Settings) -> str:
        if self.convergence is not None:
            return f"{self.convergence:.1f} s (goal <= 60 s)"
        calm = (
            "not even after the faults stopped"
            if self.calm_convergence is None
            else f"{self.calm_convergence:.1f} s after the faults stopped"
        )
        return (
            f"not within {settings.budget:.0f} s (goal <= 60 s); still wrong then: "
            f"{self.faulty_problems}; exact {calm}"
        )


def scenario_config(settings: Settings) -> dict[str, Any]:
    """App settings the scenario needs on top of the fakes' (timeouts the faults exceed)."""
    return {"PROVIDER_TIMEOUT": PROVIDER_TIMEOUT, "SYNC_LEASE_SECONDS": settings.lease_seconds}


class Chaos:
    """One run of the scenario against an app, its fakes and a worker child."""

    def __init__(
        self,
        app: Flask,
        client: FlaskClient,
        fakes: dict[str, Any],
        worker: WorkerChild,
        settings: Settings,
    ) -> None:
        self.app = app
        self.client = client
        self.fakes = fakes
        self.worker = worker
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.figures = Figures()
        self.world = World(app)
        self.ids: dict[str, int] = {}
        self.live: dict[str, ShiftInput] = {}  # external id -> the shift as last written
        self.serial = 0

    # -- the run

    def run(self) -> Figures:
        """Run the whole scenario and return its figures (see the module docstring)."""
        self.ids = connect_both(self.app, self.client, self.fakes)
        self.start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
        for fake in self.fakes.values():
            fake.reset_stats()
        self._faults_on()
        self.worker.start()
        items = [self._new_shift(n * 4) for n in range(self.settings.shifts)]
        self._window(items[0].starts_at, items[-1].ends_at, items)
        self._kill_mid_batch()
        total = self.settings.changes
        for number in range(1, total + 1):
            self._random_change()
            if number == total // 4:
                self._user_edits_and_deletions()
            if number == total // 2:
                self._kill_mid_batch()
            if number in (total // 16, total // 8):
                self._user_deletes_calendar("google" if number == total // 16 else "microsoft")
            time.sleep(self.rng.uniform(0, 2 * self.settings.pace))
        last_change = time.monotonic()
        self._converge(last_change)
        self._idle()
        return self.figures

    # -- faults and workers

    def _faults_on(self) -> None:
        for offset, fake in enumerate(self.fakes.values()):
            fake.faults.seed(self.settings.seed + offset)
            for name, rate in FAULT_RATES.items():
                setattr(fake.faults, name, rate)
            fake.faults.retry_after = 1
            fake.faults.slow_seconds = fake.faults.hang_seconds = FAULT_SECONDS
            fake.faults.drop_mode = self.rng.choice(["close", "reset"])

    def _members(self) -> int:
        return sum(fake.stats.snapshot().get("batch_members", 0) for fake in self.fakes.values())

    def _kill_mid_batch(self) -> None:
        """Let the worker write a little, SIGKILL it holding a lease, start a new one."""
        for _attempt in range(20):
            threshold = self._members() + self.rng.randrange(5, 40)
            deadline = time.monotonic() + 60
            while self._members() < threshold or not self._leases():
                assert time.monotonic() < deadline, self.worker.log_path.read_text()[-3000:]
                time.sleep(0.002)
            self.worker.kill()
            killed = time.monotonic()
            held = self._leases()
            if held:
                break
            self.worker.start()  # its syncs had just finished: once more
        else:
            raise AssertionError("the worker never died holding a lease")
        self.worker.start()
        deadline = killed + self.settings.lease_seconds + 60
        while any(self._leases().get(cid) == owner for cid, owner in held.items()):
            assert time.monotonic() < deadline, "no worker took the dead one's connections over"
            time.sleep(0.05)
        self.figures.resumes.append(time.monotonic() - killed)

    def _leases(self) -> dict[int, str]:
        """Connection id -> lease owner, for the leases held now."""
        with get_database(self.app).sessionmaker() as session:
            rows = session.execute(
                select(CalendarConnection.id, CalendarConnection.lease_owner).where(
                    CalendarConnection.lease_owner.is_not(None)
                )
            ).all()
        return {row.id: str(row.lease_owner) for row in rows}

    # -- changes, as the API makes them: commit, then notify

    def _new_shift(self, hours_from_start: float, user: str = ALICE) -> ShiftInput:
        self.serial += 1
        begin = self.start + timedelta(hours=hours_from_start)
        return ShiftInput(f"c{self.serial}", user, begin, begin + timedelta(hours=3))

    def _write(self, items: Sequence[ShiftInput] = (), deleted: Sequence[str] = ()) -> None:
        now = utcnow()
        touched: set[int] = set()
        with get_database(self.app).session() as session:
            schedule = shifts.get_schedule(session, "payments")
            if items:
                touched |= shifts.upsert_shifts(session, schedule, items, now).touched_user_ids
            for external_id in deleted:
                touched |= shifts.delete_shift(session, schedule, external_id, now).touched_user_ids
        for item in items:
            self.live[item.external_id] = item
        for external_id in deleted:
            self.live.pop(external_id, None)
        with self.app.app_context():
            shifts_changed(touched)

    def _window(self, start: datetime, end: datetime, items: list[ShiftInput]) -> None:
        now = utcnow()
        with get_database(self.app).session() as session:
            schedule = shifts.get_schedule(session, "payments")
            touched = shifts.import_window(session, schedule, start, end, items, now)
        for external_id, item in list(self.live.items()):
            if item.starts_at < end and item.ends_at > start:
                del self.live[external_id]
        self.live.update({item.external_id: item for item in items})
        with self.app.app_context():
            shifts_changed(touched.touched_user_ids)

    def _random_change(self) -> None:
        kind = self.rng.choices(CHANGE_KINDS, CHANGE_WEIGHTS)[0]
        self.figures.changes[kind] += 1
        span = self.settings.shifts * 4
        if kind == "create" or not self.live:
            self._write([self._new_shift(self.rng.randrange(0, span * 4) / 4)])
            return
        key = self.rng.choice(sorted(self.live))
        shift = self.live[key]
        if kind == "move":
            delta = timedelta(minutes=self.rng.choice([-90, -30, 30, 60, 120]))
            self._write([replace(shift, starts_at=shift.starts_at + delta,
                                  ends_at=shift.ends_at + delta)])  # fmt: skip
        elif kind == "reassign":
            self._write([replace(shift, user_email=BOB if shift.user_email == ALICE else ALICE)])
        elif kind == "delete":
            self._write(deleted=[key])
        elif kind == "notes":
            self._write([replace(shift, notes=f"swap #{self.rng.randrange(1000)}")])
        else:
            # A day of the schedule replaced: some shifts kept, some moved, one new.
            start = shift.starts_at.replace(hour=0, minute=0)
            end = start + timedelta(days=1)
            day = [s for s in self.live.values() if s.starts_at < end and s.ends_at > start]
            kept = [s for s in day if self.rng.random() < 0.6]
            items = [replace(s, notes="re-planned") if self.rng.random() < 0.3 else s
                     for s in kept]  # fmt: skip
            fresh = self._new_shift((start - self.start).total_seconds() / 3600 + 13)
            self._window(start, end, [*items, fresh])

    # -- the user, in their calendar apps

    def _user_edits_and_deletions(self) -> None:
        """The user retitles three of our events and deletes three, in each calendar."""
        for provider, connection_id in self.ids.items():
            row = connection(self.app, connection_id)
            fake = self.fakes[provider]
            events = fake.events(ALICE, row.calendar_id)
            if len(events) < 6:
                continue
            for event in self.rng.sample(events, 6)[:3]:
                if provider == "google":
                    fake.edit_event(ALICE, row.calendar_id, event["id"], {"summary": "Dentist"})
                else:
                    fake.edit_event(ALICE, event["id"], {"subject": "Dentist"})
            for event in self.rng.sample(events, 3):
                with suppress(KeyError):  # a sync deleted it a moment ago
                    if provider == "google":
                        fake.remove_event(ALICE, row.calendar_id, event["id"])
                    else:
                        fake.remove_event(ALICE, event["id"])
        self._day_passes(nudge=False)

    def _day_passes(self, *, nudge: bool = True) -> None:
        """Make the daily full check due (and, with `nudge`, queue it as the sweep would)."""
        with get_database(self.app).session() as session:
            session.execute(
                update(CalendarConnection).values(last_full_check_at=utcnow() - timedelta(days=2))
            )
        if nudge:
            request_sync(self.app, self.ids.values())

    def _user_deletes_calendar(self, provider: str) -> None:
        row = connection(self.app, self.ids[provider])
        if row.calendar_id is not None:
            with suppress(KeyError):  # already gone
                self.fakes[provider].remove_calendar(ALICE, row.calendar_id)

    # -- the end

    def _exact(self) -> dict[str, Any]:
        """Problems per provider (empty when both calendars are exact)."""
        alice = self.world.user_id("alice")
        now = utcnow()
        expected = desired_events(self.app, alice, now)
        problems: dict[str, Any] = {}
        for provider, connection_id in self.ids.items():
            row = connection(self.app, connection_id)
            if row.calendar_id is None:
                problems[provider] = "no calendar"
                continue
            found: dict[str, Any] = {
                kind: len(seen) if len(seen) > 4 else seen
                for kind, seen in mismatch(expected, remote_events(self.fakes, row)).items()
            }
            orphans = self._orphans(provider, row.calendar_id)
            if orphans:
                found["orphans elsewhere"] = orphans
            unsettled = self._unsettled(connection_id)
            if unsettled:
                # The calendar looks right but the engine does not know it yet: it will
                # still write (a lost insert resolved, an unknown event rewritten).
                found["records not settled"] = unsettled
            if found:
                # What the connection says of itself, for the failure message.
                found["connection"] = {
                    "status": row.status,
                    "last_error": row.last_error,
                    "failures": row.failure_count,
                    "due": str(row.sync_due_at),
                    "dirty": str(row.dirty_since),
                    "lease": row.lease_owner,
                }
                problems[provider] = found
        return problems

    def _unsettled(self, connection_id: int) -> int:
        """The connection's records that are not `synced` with a known content hash."""
        with get_database(self.app).sessionmaker() as session:
            return len(
                session.scalars(
                    select(SyncRecord.id).where(
                        SyncRecord.connection_id == connection_id,
                        or_(SyncRecord.state != "synced", SyncRecord.content_hash.is_(None)),
                    )
                ).all()
            )

    def _orphans(self, provider: str, calendar_id: str) -> int:
        """Our tagged events in any of Alice's calendars but the connection's own."""
        fake = self.fakes[provider]
        others = [c["id"] for c in fake.calendars(ALICE) if c["id"] != calendar_id]
        return sum(
            seen.uid is not None
            for other in others
            for seen in (google_events(fake, other) if provider == "google"
                         else graph_events(fake, other))
        )  # fmt: skip

    def _wait_exact(self, since: float, budget: float) -> tuple[float | None, dict[str, Any]]:
        """Seconds from `since` until both calendars were exact and stayed so for `settle`.

        None (and what is still wrong) when that did not happen within `budget`.
        """
        deadline = since + budget
        exact_since: float | None = None
        problems: dict[str, Any] = {}
        while time.monotonic() < deadline:
            problems = self._exact()
            if problems:
                exact_since = None
            elif exact_since is None:
                exact_since = time.monotonic()
            elif time.monotonic() - exact_since >= self.settings.settle:
                return exact_since - since, {}
            time.sleep(0.25)
        return None, problems

    def _converge(self, last_change: float) -> None:
        """Faults still on: wait for exactness; then without faults, as a calm hour would."""
        self.figures.convergence, self.figures.faulty_problems = self._wait_exact(
            last_change, self.settings.budget
        )
        for provider, fake in self.fakes.items():
            self.figures.injected.update(fake.faults.injected)
            stats = fake.stats.snapshot()
            self.figures.round_trips[provider] += stats.get("api_round_trips", 0)
            self.figures.round_trips[provider] += stats.get("graph_round_trips", 0)
            self.figures.calls += fake.faults.decided
            fake.faults.reset()
        calm = time.monotonic()
        if self.figures.convergence is None:
            # Calls that timed out land late, behind our back (an event of a shift deleted
            # meanwhile, an older text): the daily full check is what finds them. Let them
            # land, then let a day pass.
            for fake in self.fakes.values():
                fake.wait_idle(30)
            self._day_passes()
            self.figures.calm_convergence, self.figures.problems = self._wait_exact(
                calm, self.settings.calm_budget
            )

    def _rechecks_due(self) -> list[int]:
        """Connections with a run under way or a full check due within a recheck's delay."""
        now = utcnow()
        rows = [connection(self.app, connection_id) for connection_id in self.ids.values()]
        return [
            row.id
            for row in rows
            if row.lease_owner is not None
            or full_check_due(row, now)
            or pending_recheck(row, now) is not None
        ]

    def _await_rechecks(self) -> None:
        """Let the late-write rechecks still due run: they are work, not idling.

        A pass after the faults may still give up on (or send again) an insert whose first
        attempt could land late, and then asks for a listing `LATE_WRITE_RECHECK` later.
        One that never stops coming is a problem of its own.
        """
        started = time.monotonic()
        deadline = started + LATE_WRITE_RECHECK.total_seconds() + 30
        while (due := self._rechecks_due()) and time.monotonic() < deadline:
            time.sleep(0.25)
        self.figures.recheck_wait = time.monotonic() - started
        if due:
            self.figures.problems["rechecks still due"] = due

    def _idle(self, seconds: float = 5) -> None:
        """Faults off, nothing changing: what the running worker sends meanwhile."""
        self._await_rechecks()
        for fake in self.fakes.values():
            fake.wait_idle(30)
            fake.reset_stats()
        time.sleep(seconds)
        for fake in self.fakes.values():
            stats = fake.stats.snapshot()
            self.figures.idle_runs += stats.get("api_round_trips", 0)
            self.figures.idle_runs += stats.get("graph_round_trips", 0)
            self.figures.idle_writes += sum(
                n for op, n in stats.items()
                if op.startswith("events.") and op.split(".")[1] in
                ("insert", "update", "patch", "delete", "create")
            )  # fmt: skip
        if after := self._exact():
            self.figures.problems["after the idle watch"] = after
        with get_database(self.app).sessionmaker() as session:
            self.figures.states = set(session.scalars(select(SyncRecord.state)))
