"""The planner, pure: examples, and properties checked against a model of a remote calendar.

The model (`Remote` + `Store`) executes actions with the semantics the engine gives them
(Google: client-chosen ids, deletes leave a cancelled event whose id stays taken, a 409
on insert is answered by an update that restores; Graph: server ids, deletes are final),
and can be crashed between an intent and its answer. Hypothesis drives worlds of shifts
through changes, crashes and tampering by the user, and checks that the plan always
brings the calendar to exactly the desired events, and that a second plan is empty.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncal_feed.providers.base import RemoteEvent, read_back
from oncal_feed.rendering.event import EventSpec
from oncal_feed.sync.plan import (
    Action,
    Adopt,
    Create,
    Delete,
    Forget,
    Prune,
    Record,
    Recover,
    Update,
    google_event_id,
    plan,
    unattributed,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def spec(uid: str, version: int = 0) -> EventSpec:
    """An event whose shown content depends on `version`."""
    start = T0 + timedelta(days=version)
    return EventSpec(
        uid=uid, summary=f"On-call v{version}", description="", starts_at=start,
        ends_at=start + timedelta(hours=8), cancelled=False, sequence=version + 1,
        created=T0, last_modified=T0, transparent=True, url="https://x.test/settings",
    )  # fmt: skip


def google_key(uid: str) -> str:
    """Keys as the engine makes them for Google at generation 1."""
    return google_event_id(uid, 1)


# ---------------------------------------------------------------- examples


def test_google_event_id_is_valid_stable_and_per_generation() -> None:
    """base32hex (a-v, 0-9), 52 characters, same input same id, new generation new id."""
    first = google_event_id("abc@oncal-feed", 1)
    assert len(first) == 52
    assert set(first) <= set(string.digits + "abcdefghijklmnopqrstuv")
    assert google_event_id("abc@oncal-feed", 1) == first
    assert google_event_id("abc@oncal-feed", 2) != first
    assert google_event_id("abd@oncal-feed", 1) != first


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=10**6))
def test_google_event_id_always_fits_googles_rules(uid: str, generation: int) -> None:
    """Any UID and generation give an id Google accepts (5-1024 chars of base32hex)."""
    event_id = google_event_id(uid, generation)
    assert 5 <= len(event_id) <= 1024
    assert set(event_id) <= set(string.digits + "abcdefghijklmnopqrstuv")


def test_new_shift_is_created_and_unchanged_one_gives_nothing() -> None:
    """The basic diff."""
    desired = {1: spec("a"), 2: spec("b")}
    records = [Record(1, "a", "synced", "ra", spec("a").content_hash)]
    actions = list(plan(desired, records, new_key=google_key))
    assert actions == [Create(2, spec("b"), google_key("b"))]


def test_changed_shift_is_updated_and_gone_one_deleted() -> None:
    """Hash differs → Update; record without desired shift → Delete."""
    records = [
        Record(1, "a", "synced", "ra", spec("a").content_hash),
        Record(2, "b", "synced", "rb", spec("b").content_hash),
    ]
    actions = list(plan({1: spec("a", 1)}, records, new_key=google_key))
    assert actions == [Update(1, "ra", spec("a", 1)), Delete(2, "rb")]


def test_kept_records_are_left_alone() -> None:
    """A shift that only left the window stays (and its record too)."""
    records = [Record(1, "a", "synced", "ra", "h")]
    assert list(plan({}, records, new_key=google_key, kept={1})) == []


def test_uncertain_create_is_recovered() -> None:
    """A `creating` record yields Recover with its pending key."""
    records = [Record(1, "a", "creating", None, "h", transaction_id="tx1")]
    (action,) = plan({1: spec("a")}, records, new_key=google_key)
    assert action == Recover(1, "a", spec("a"), "tx1", "h", False)


def test_uncertain_google_create_of_a_gone_shift_is_just_deleted() -> None:
    """With a client-chosen id, deleting that id settles it either way (marked uncertain:
    the calendar is checked again soon, in case the insert lands after the delete)."""
    records = [Record(1, "a", "creating", "ga", "h")]
    assert list(plan({}, records, new_key=google_key)) == [Delete(1, "ga", uncertain=True)]


def test_full_check_recreates_prunes_and_adopts() -> None:
    """Listing: missing → Create; orphan and duplicate → Prune; found → Adopt and rewrite."""
    desired = {1: spec("a"), 2: spec("b"), 3: spec("c")}
    records = [
        Record(1, "a", "synced", "ra", spec("a").content_hash),
        Record(2, "b", "synced", "rb", spec("b").content_hash),
        Record(3, "c", "creating", None, spec("c").content_hash, transaction_id="tc"),
    ]
    remote = [
        RemoteEvent("rb", "b"),
        RemoteEvent("rb2", "b"),
        RemoteEvent("rc", "c"),
        RemoteEvent("x", "orphan"),
        RemoteEvent("mine-not", None),
    ]
    actions = list(plan(desired, records, new_key=google_key, remote=remote))
    assert actions == [
        Create(1, spec("a"), google_key("a")),
        Prune("b", "rb2"),
        Adopt(3, "c", "rc", None),
        Update(3, "rc", spec("c")),
        Prune("orphan", "x"),
    ]


def test_full_check_rewrites_an_uncertain_insert_it_cannot_read_back() -> None:
    """An insert whose answer was lost, found without its content tag (or retitled, or
    moved since): its content is unknown, so it is rewritten on the listed etag."""
    desired = {2: spec("b")}
    records = [Record(2, "b", "creating", "rb", spec("b").content_hash)]
    shown = read_back("rb", spec("b"), '"user-edit"')
    for listed in (
        RemoteEvent("rb", "b", etag='"user-edit"'),
        replace(shown, summary="Dentist"),
        replace(shown, starts_at=T0 - timedelta(hours=1)),
        replace(shown, written=spec("b", 1).content_hash),
    ):
        actions = list(plan(desired, records, new_key=google_key, remote=[listed]))
        assert actions == [Adopt(2, "b", "rb", None), Update(2, "rb", spec("b"), '"user-edit"')]


def test_full_check_knows_an_uncertain_insert_that_reads_back_as_the_shift() -> None:
    """Its content tag, title and times are the shift's: adopted with its hash and etag,
    nothing written (Google's id, or Graph's event found by its tag alone)."""
    desired = {2: spec("b")}
    listed = read_back("rb", spec("b"), '"e1"')
    known = Adopt(2, "b", "rb", spec("b").content_hash, '"e1"')
    google = [Record(2, "b", "creating", "rb", spec("b").content_hash)]
    assert list(plan(desired, google, new_key=google_key, remote=[listed])) == [known]
    graph = [Record(2, "b", "creating", None, spec("b").content_hash, transaction_id="t")]
    assert list(plan(desired, graph, new_key=google_key, remote=[listed])) == [known]


def test_full_check_matches_recorded_ids_before_tags() -> None:
    """A listed event with a recorded id is that record's, even when its tag is missing."""
    desired = {1: spec("a"), 2: spec("b")}
    records = [
        Record(1, "a", "synced", "ra", spec("a").content_hash),
        Record(2, "b", "synced", "rb", spec("b").content_hash),
    ]
    remote = [RemoteEvent("ra", None), RemoteEvent("rb", None)]
    assert list(plan(desired, records, new_key=google_key, remote=remote)) == []
    assert unattributed(remote, records) == []
    # Only "b" is listed: "a" alone is created again.
    remote = [RemoteEvent("rb", None)]
    actions = list(plan(desired, records, new_key=google_key, remote=remote))
    assert actions == [Create(1, spec("a"), google_key("a"))]


def test_untagged_events_without_a_recorded_id_make_a_listing_inconsistent() -> None:
    """Neither tag nor recorded id: the listing lost its tags; cancelled events don't count."""
    records = [Record(1, "a", "synced", "ra", spec("a").content_hash)]
    stray = RemoteEvent("x", None)
    remote = [RemoteEvent("ra", None), stray, RemoteEvent("y", None, cancelled=True)]
    assert unattributed(remote, records) == [stray]
    assert unattributed([RemoteEvent("z", "b")], records) == []


def test_full_check_adopts_events_of_aged_out_shifts_without_records() -> None:
    """An unrecorded event of the user's shift outside the window is kept, not pruned."""
    remote = [RemoteEvent("r1", "old"), RemoteEvent("r2", "old")]
    actions = list(plan({}, [], new_key=google_key, remote=remote, adoptable={"old": 7}))
    assert actions == [Adopt(7, "old", "r1", None), Prune("old", "r2")]


# ---------------------------------------------------------------- the model


@dataclass
class RemoteEv:
    """One event in the model calendar."""

    uid: str | None
    content: str
    live: bool = True


@dataclass
class Model:
    """A remote calendar plus the status store, executing actions like the engine does."""

    client_ids: bool
    events: dict[str, RemoteEv] = field(default_factory=dict)
    records: dict[int, Record] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    generation: int = 1
    crashed: bool = False

    def new_key(self, uid: str) -> str:
        """Google: deterministic; Graph: a fresh transaction id."""
        if self.client_ids:
            return google_event_id(uid, self.generation)
        return f"tx{next(self.ids)}"

    def listing(self) -> list[RemoteEvent]:
        """What `list_events` returns: live, tagged events."""
        return [
            RemoteEvent(rid, ev.uid)
            for rid, ev in self.events.items()
            if ev.live and ev.uid is not None
        ]

    def find(self, uid: str) -> str | None:
        """`find_event`: some live event with the tag."""
        return min(
            (rid for rid, ev in self.events.items() if ev.live and ev.uid == uid), default=None
        )

    # -- remote calls

    def _insert(self, key: str, s: EventSpec) -> str:
        if self.client_ids:
            if key in self.events:
                # 409 → update: restores a cancelled event with our content.
                self.events[key] = RemoteEv(s.uid, s.content_hash)
                return key
            self.events[key] = RemoteEv(s.uid, s.content_hash)
            return key
        rid = f"g{next(self.ids)}"
        self.events[rid] = RemoteEv(s.uid, s.content_hash)
        return rid

    def _update(self, rid: str, s: EventSpec) -> str:
        if rid in self.events:
            self.events[rid] = RemoteEv(s.uid, s.content_hash)
            return rid
        return self._insert(self.new_key(s.uid), s)

    def _delete(self, rid: str) -> None:
        if self.client_ids:
            if rid in self.events:
                self.events[rid].live = False
        else:
            self.events.pop(rid, None)

    # -- executing a plan, maybe crashing at action `crash_at`

    def run(self, actions: list[Action], crash_at: int | None = None, landed: bool = False) -> None:
        """Apply actions in order; at `crash_at`, commit the intent, maybe do the call, stop."""
        for index, action in enumerate(actions):
            crash = index == crash_at
            self._one(action, crash, landed)
            if crash:
                self.crashed = True
                return

    def _one(self, action: Action, crash: bool, landed: bool) -> None:
        records = self.records
        if isinstance(action, Create):
            s = action.spec
            key = action.event_key
            records[action.shift_id] = Record(
                action.shift_id, s.uid, "creating", key if self.client_ids else None,
                s.content_hash, None if self.client_ids else key,
            )  # fmt: skip
            if crash and not landed:
                return
            rid = self._insert(key, s)
            if not crash:
                records[action.shift_id] = Record(
                    action.shift_id, s.uid, "synced", rid, s.content_hash
                )
        elif isinstance(action, Update):
            if crash and not landed:
                return
            rid = self._update(action.remote_id, action.spec)
            if not crash:
                s = action.spec
                records[action.shift_id] = Record(
                    action.shift_id, s.uid, "synced", rid, s.content_hash
                )
        elif isinstance(action, Delete):
            old = records[action.shift_id]
            records[action.shift_id] = Record(
                old.shift_id, old.uid, "deleting", old.remote_id, old.content_hash
            )
            if crash and not landed:
                return
            self._delete(action.remote_id)
            if not crash:
                del records[action.shift_id]
        elif isinstance(action, Prune):
            if crash and not landed:
                return
            self._delete(action.remote_id)
        elif isinstance(action, Adopt):
            records[action.shift_id] = Record(
                action.shift_id, action.uid, "synced", action.remote_id, action.content_hash
            )
        elif isinstance(action, Forget):
            records.pop(action.shift_id, None)
        elif isinstance(action, Recover):
            self._recover(action, crash, landed)

    def _recover(self, action: Recover, crash: bool, landed: bool) -> None:
        if action.spec is not None and self.client_ids:
            self._one(Create(action.shift_id, action.spec, action.event_key), crash, landed)
            return
        found = self.find(action.uid)
        if found is None:
            if action.spec is None:
                self.records.pop(action.shift_id, None)
            else:
                self._one(Create(action.shift_id, action.spec, action.event_key), crash, landed)
            return
        if action.spec is None and not action.keep:
            self.records.pop(action.shift_id, None)
            self._one(Prune(action.uid, found), crash, landed)
            return
        self.records[action.shift_id] = Record(
            action.shift_id, action.uid, "synced", found, action.content_hash
        )
        if action.spec is not None and action.spec.content_hash != action.content_hash:
            self._one(Update(action.shift_id, found, action.spec), crash, landed)


@dataclass
class Shift:
    """A shift of the model world."""

    uid: str
    version: int = 0
    mine: bool = True  # not deleted and not reassigned
    in_window: bool = True


def desired_of(shifts: dict[int, Shift]) -> dict[int, EventSpec]:
    """What the calendar should show."""
    return {sid: spec(s.uid, s.version) for sid, s in shifts.items() if s.mine and s.in_window}


def kept_of(shifts: dict[int, Shift], model: Model) -> set[int]:
    """Recorded shifts that are still mine but outside the window."""
    return {sid for sid in model.records if shifts[sid].mine and not shifts[sid].in_window}


def adoptable_of(shifts: dict[int, Shift], model: Model) -> dict[str, int]:
    """Unrecorded shifts of mine outside the window, by UID."""
    return {
        s.uid: sid
        for sid, s in shifts.items()
        if s.mine and not s.in_window and sid not in model.records
    }


def make_plan(shifts: dict[int, Shift], model: Model, *, full: bool) -> list[Action]:
    """Plan as the engine would, from the model's records (and listing on a full check)."""
    return list(
        plan(
            desired_of(shifts),
            model.records.values(),
            new_key=model.new_key,
            kept=kept_of(shifts, model),
            remote=model.listing() if full else None,
            adoptable=adoptable_of(shifts, model) if full else None,
        )
    )


def assert_exact(shifts: dict[int, Shift], model: Model) -> None:
    """Each desired shift once with its content; gone shifts and orphans absent."""
    live = [(ev.uid, ev.content) for ev in model.events.values() if ev.live and ev.uid]
    desired = desired_of(shifts)
    uids = [uid for uid, _ in live]
    for s in desired.values():
        assert (s.uid, s.content_hash) in live, f"missing or stale {s.uid}"
        assert uids.count(s.uid) == 1, f"duplicate {s.uid}"
    allowed = {s.uid for s in desired.values()} | {
        s.uid for s in shifts.values() if s.mine and not s.in_window
    }
    assert set(uids) <= allowed, f"orphans {set(uids) - allowed}"
    for sid, record in model.records.items():
        assert record.state == "synced"
        assert record.remote_id in model.events
        assert model.events[record.remote_id].live
        if sid in desired:
            assert record.content_hash == desired[sid].content_hash


# ---------------------------------------------------------------- properties

UIDS = [f"u{n}" for n in range(8)]

step = st.one_of(
    st.tuples(st.just("change"), st.integers(0, 7)),
    st.tuples(st.just("toggle_mine"), st.integers(0, 7)),
    st.tuples(st.just("toggle_window"), st.integers(0, 7)),
    st.tuples(st.just("sync"), st.none() | st.integers(0, 12), st.booleans(), st.booleans()),
)
tamper = st.one_of(
    st.tuples(st.just("user_delete"), st.integers(0, 7)),
    st.tuples(st.just("duplicate"), st.integers(0, 7)),
    st.tuples(st.just("orphan"), st.integers(0, 99)),
    st.tuples(st.just("untagged"), st.integers(0, 99)),
    st.tuples(st.just("lose_record"), st.integers(0, 7)),
)


def play(client_ids: bool, steps: list[tuple], tampering: list[tuple] = ()) -> tuple[dict, Model]:
    """Run the steps; return the world and model (possibly left mid-crash)."""
    shifts = {n: Shift(uid) for n, uid in enumerate(UIDS)}
    model = Model(client_ids)
    for item in steps:
        kind, n = item[0], item[1]
        if kind == "change":
            shifts[n].version += 1
        elif kind == "toggle_mine":
            shifts[n].mine = not shifts[n].mine
        elif kind == "toggle_window":
            shifts[n].in_window = not shifts[n].in_window
        else:
            _, crash_at, landed, full = item
            model.run(make_plan(shifts, model, full=full), crash_at, landed)
    for kind, n in tampering:
        uid = UIDS[n % len(UIDS)]
        if kind == "user_delete":
            for ev in model.events.values():
                if ev.uid == uid:
                    ev.live = False
        elif kind == "duplicate":
            model.events[f"dup{len(model.events)}"] = RemoteEv(uid, "stale")
        elif kind == "orphan":
            model.events[f"orph{n}"] = RemoteEv(f"gone{n}", "x")
        elif kind == "untagged":
            model.events[f"user{n}"] = RemoteEv(None, "the user's own event")
        else:
            model.records.pop(n, None)
    return shifts, model


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(step, max_size=25))
def test_one_clean_incremental_sync_converges_after_crashes(client_ids: bool, steps) -> None:
    """Whatever changes and crashes came before, one uninterrupted sync makes it exact."""
    shifts, model = play(client_ids, steps)
    model.run(make_plan(shifts, model, full=False))
    assert_exact(shifts, model)
    assert make_plan(shifts, model, full=False) == []
    assert make_plan(shifts, model, full=True) == []


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(step, max_size=25), st.lists(tamper, max_size=8))
def test_one_full_check_repairs_any_tampering(client_ids: bool, steps, tampering) -> None:
    """User deletions, duplicates, orphans and lost records: a full check fixes them all."""
    shifts, model = play(client_ids, steps, tampering)
    model.run(make_plan(shifts, model, full=True))
    assert_exact(shifts, model)
    assert make_plan(shifts, model, full=True) == []
    assert make_plan(shifts, model, full=False) == []
    untagged = [rid for rid in model.events if rid.startswith("user")]
    assert all(model.events[rid].live for rid in untagged), "never touch the user's own events"


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.lists(step, max_size=20), st.lists(tamper, max_size=6), st.booleans())
def test_plans_are_deterministic_and_touch_each_shift_sensibly(
    client_ids: bool, steps, tampering, full: bool
) -> None:
    """Same inputs, same plan; at most one remote write per shift besides prunes."""
    shifts, model = play(client_ids, steps, tampering)
    first = make_plan(shifts, model, full=full)
    if not client_ids:
        # Graph keys are fresh per call; compare with them masked.
        first = [_mask(a) for a in first]
        again = [_mask(a) for a in make_plan(shifts, model, full=full)]
    else:
        again = make_plan(shifts, model, full=full)
    assert first == again
    writes = [
        getattr(a, "shift_id", None)
        for a in first
        if isinstance(a, Create | Update | Delete | Recover)
    ]
    assert len(writes) == len(set(writes))


def _mask(action: Action) -> Action:
    if isinstance(action, Create) and action.event_key.startswith("tx"):
        return Create(action.shift_id, action.spec, "tx")
    return action


@pytest.mark.parametrize("client_ids", [True, False])
def test_no_change_plans_nothing_even_on_full_check(client_ids: bool) -> None:
    """After a sync, both kinds of plan are empty."""
    shifts = {n: Shift(uid) for n, uid in enumerate(UIDS)}
    model = Model(client_ids)
    model.run(make_plan(shifts, model, full=False))
    assert make_plan(shifts, model, full=False) == []
    assert make_plan(shifts, model, full=True) == []
