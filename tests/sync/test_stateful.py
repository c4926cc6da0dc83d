"""A stateful property test of `sync_connection` itself, through real providers.

Hypothesis drives a user's shifts (create, move, edit, delete, a schedule renamed), the
user deleting events in the calendar, and syncs through a flaky wrapper that fails
before or after writes took effect. After every step the engine is left to settle
(syncs through the reliable provider until one succeeds) and the remote calendar must
then show exactly what the user's shifts render to: each shift once, with its current
content, and nothing else.

Run against the in-memory provider (Google's id semantics) and a Graph-like one
(server-chosen ids, deletes final). Each example gets a user, a calendar and a
connection of its own in the test's database.
"""

from __future__ import annotations

import itertools

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from oncal_feed import accounts
from oncal_feed.db import get_database
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.rendering.event import RenderOptions, shift_event
from oncal_feed.shifts import shift_facts, shifts_for_user
from oncal_feed.sync.schedule import sync_window
from oncal_feed.validation import UserInput
from tests.sync.support import BASE_URL, NOW, FlakyProvider, GraphLikeProvider, World

KEYS = ("a", "b", "c", "d", "e")
# Few examples of few steps: each step syncs a few times; the whole test stays in the
# tens of seconds on a loaded CI machine.
SETTINGS = settings(
    max_examples=8,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_users = itertools.count()


class SyncMachine(RuleBasedStateMachine):
    """One user's shifts and connection; the provider is made by `make_provider`."""

    def __init__(self, world: World, kind: str) -> None:
        super().__init__()
        self.world = world
        self.name = f"prop{next(_users)}"
        with world.database.session() as session:
            accounts.create_user(
                session, UserInput(f"{self.name}@example.com", self.name, "Europe/Berlin"), NOW
            )
        self.base = MemoryProvider() if kind == "memory" else GraphLikeProvider()
        self.connection_id = world.connect(self.base, user=self.name, kind="google")
        self.calendar_id = world.connection(self.connection_id).calendar_id
        self.live: set[str] = set()  # external ids of the user's live shifts
        self.seeds = itertools.count()

    def _external_id(self, key: str) -> str:
        return f"{self.name}-{key}"

    # ------------------------------------------------------------ what changes

    @rule(
        key=st.sampled_from(KEYS),
        day=st.integers(min_value=-3, max_value=20),
        hours=st.integers(min_value=1, max_value=30),
        notes=st.sampled_from(["", "pager", "handover at 9"]),
    )
    def put_shift(self, key: str, day: int, hours: int, notes: str) -> None:
        """Create a shift, or move or edit it."""
        self.world.put_shift(self._external_id(key), day, user=self.name, hours=hours, notes=notes)
        self.live.add(key)

    @rule(key=st.sampled_from(KEYS))
    def delete_shift(self, key: str) -> None:
        """Delete a live shift (a tombstone)."""
        if key in self.live:
            self.world.delete_shift(self._external_id(key))
            self.live.discard(key)

    @rule(name=st.sampled_from(["Payments", "Payments on-call", "Pay"]))
    def rename_schedule(self, name: str) -> None:
        """Rename the schedule: every event's title changes."""
        self.world.rename_schedule(name)

    @rule(key=st.sampled_from(KEYS))
    def user_deletes_the_event(self, key: str) -> None:
        """The user deletes one of our events in their calendar app."""
        if key not in self.live:
            return
        uid = self.world.uid(self._external_id(key))
        assert self.calendar_id is not None
        found = self.base.find_event(self.calendar_id, uid)
        if found is not None:
            self.base.delete_event(self.calendar_id, found.remote_id)

    @rule(rate=st.sampled_from([0.2, 0.5, 0.9]), full_check=st.booleans())
    def flaky_sync(self, rate: float, full_check: bool) -> None:
        """Sync through a provider whose calls fail, some after they took effect."""
        flaky = FlakyProvider(self.base, rate, seed=next(self.seeds))
        report = self.world.sync(self.connection_id, flaky, full_check=full_check)
        # "partial": some writes landed before a failure; the rest is retried promptly.
        assert report.outcome in ("ok", "partial", "failed")

    @rule(key=st.sampled_from(KEYS), day=st.integers(min_value=0, max_value=10))
    def change_between_flaky_syncs(self, key: str, day: int) -> None:
        """A change lands between two failing syncs, before anything settled."""
        self.flaky_sync(0.5, False)
        self.put_shift(key, day, 8, "")
        self.flaky_sync(0.5, True)

    # ------------------------------------------------------------ what must hold

    @invariant()
    def settled_calendar_shows_the_shifts(self) -> None:
        """Once a sync succeeds, the calendar holds each shift's current event once."""
        for _ in range(3):
            report = self.world.sync(self.connection_id, self.base, full_check=True)
            if report.outcome == "ok":
                break
        assert report.outcome == "ok", report.error
        assert self.calendar_id is not None
        remote = sorted((s.uid, s.content_hash) for s in self.base.live_specs(self.calendar_id))
        assert remote == self.expected()

    def expected(self) -> list[tuple[str, str]]:
        """UID and content hash of what the user's shifts render to in the window."""
        start, end = sync_window(NOW, 90)
        with get_database(self.world.app).sessionmaker() as session:
            user_id = self.world.user_id(self.name)
            # A connection's options as made: free time, all schedules, no reminder.
            options = RenderOptions(BASE_URL)
            specs = [
                shift_event(shift_facts(shift), options)
                for shift in shifts_for_user(session, user_id, start, end)
            ]
        return sorted((spec.uid, spec.content_hash) for spec in specs)


@pytest.mark.parametrize("kind", ["memory", "graph-like"])
def test_sync_settles_to_what_the_shifts_render_to(app: Flask, world: World, kind: str) -> None:
    """Whatever happened before, a successful sync leaves the calendar matching the shifts."""
    run_state_machine_as_test(lambda: SyncMachine(world, kind), settings=SETTINGS)
