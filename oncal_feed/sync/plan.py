"""The push-sync planner: a pure diff of desired events against the status store.

No Flask, SQLAlchemy or HTTP here. The engine hands in plain values — the events a
calendar should show (by shift id), the `Record`s of what it last wrote, and, on a full
check, the tagged events the remote calendar really holds — and gets back small frozen
actions, each of which it applies and records on its own (as vdirsyncer does).

What the records mean:

* `synced`   — the remote event `remote_id` holds the content whose hash is `content_hash`.
* `creating` — an insert was sent (or was about to be) with the idempotency key kept on the
  record (Google: the client-chosen event id, also in `remote_id`; Graph: `transaction_id`),
  and its outcome is unknown.
* `deleting` — a delete of `remote_id` was sent (or about to be); outcome unknown.

Rules the plan follows:

* A shift that should be shown and has no record is created; a changed one is updated.
* A record whose shift is gone (deleted, reassigned to someone else) is deleted remotely.
* A record whose shift merely lies outside the window (`kept`) is left alone: shifts that
  age out of the window stay in the calendar.
* With a remote listing (a *full check*), the listing is the truth: events the user
  deleted are created again, our tagged events without a record (orphans) and second
  events for one shift (duplicates) are deleted, and uncertain records are resolved
  from what is really there.
* A listed event whose id is one we recorded is that record's event, whatever its tag
  says (a listing may come back without the tag): ids first, tags second.
* An event no recorded write answered for (an insert whose answer was lost) is known when
  it reads back as what the shift renders to (`RemoteEvent.shows`), else rewritten.
* The calendar is ours: an event someone else edited (its etag is not our last write's)
  is rewritten at the full check, as a deleted one is re-created; any change of the
  shift rewrites (or re-creates) its event at once.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from oncal_feed.providers.base import RemoteEvent
from oncal_feed.rendering.event import EventSpec

__all__ = [
    "Action",
    "Adopt",
    "Create",
    "Delete",
    "Forget",
    "Prune",
    "Record",
    "RecordState",
    "Recover",
    "Update",
    "google_event_id",
    "plan",
    "unattributed",
]

RecordState = Literal["creating", "synced", "deleting"]


def google_event_id(uid: str, generation: int) -> str:
    """Return the Google event id we use for shift `uid` at id `generation`.

    Google lets the client choose an event id (5 to 1024 characters of base32hex: `a` to `v`
    and `0` to `9`), so a retried insert meets a 409 instead of making a duplicate. The id is
    the base32hex form of a SHA-256 of the UID and the generation: 52 characters, stable
    across processes and machines, and different for every generation.
    """
    digest = hashlib.sha256(f"{uid}\x1f{generation}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True)
class Record:
    """One row of the status store, as plain values."""

    shift_id: int
    uid: str
    state: RecordState
    remote_id: str | None
    content_hash: str | None
    transaction_id: str | None = None
    # The remote's version tag at our last write: a full check that lists another one
    # knows someone edited the event.
    remote_etag: str | None = None

    @property
    def pending_key(self) -> str | None:
        """The idempotency key of a `creating` record's insert (Graph's, else Google's id)."""
        return self.transaction_id or self.remote_id


@dataclass(frozen=True)
class Create:
    """Insert `spec` with idempotency key `event_key` (record `creating` first)."""

    shift_id: int
    spec: EventSpec
    event_key: str


@dataclass(frozen=True)
class Update:
    """Replace the content of the shift's remote event `remote_id` with `spec`."""

    shift_id: int
    remote_id: str
    spec: EventSpec
    # The etag the event should still carry (sent as If-Match); None: write unconditionally.
    etag: str | None = None


@dataclass(frozen=True)
class Delete:
    """Delete the shift's remote event `remote_id` (record `deleting` first), then its record."""

    shift_id: int
    remote_id: str
    etag: str | None = None  # as for `Update`
    # The delete of an insert whose outcome is unknown: "nothing to delete" may mean "not
    # landed yet", so the calendar is checked again soon after.
    uncertain: bool = False


@dataclass(frozen=True)
class Prune:
    """Delete a tagged remote event no record points at: an orphan or a duplicate."""

    uid: str
    remote_id: str


@dataclass(frozen=True)
class Adopt:
    """Point the shift's record at the existing remote event `remote_id` (database only).

    `content_hash` is what the event is believed to hold (None: unknown), and `etag` its
    version as listed when that is known to be our write's. When the shift should look
    different, the plan follows with an `Update`.
    """

    shift_id: int
    uid: str
    remote_id: str
    content_hash: str | None
    etag: str | None = None


@dataclass(frozen=True)
class Recover:
    """Resolve a `creating` record whose insert may or may not have happened.

    Without a listing the planner cannot tell, so the engine finds out (by retrying the
    insert with the same key where ids are client-chosen, else by looking the event up by
    its tag). `spec` is what the shift should show, or None when it should not be written:
    then `keep` says whether an event that did get created stays (the shift only left the
    window) or is deleted (the shift is gone).
    """

    shift_id: int
    uid: str
    spec: EventSpec | None
    event_key: str
    content_hash: str | None
    keep: bool = False


@dataclass(frozen=True)
class Forget:
    """Drop the shift's record: nothing remote is (or should be) left for it."""

    shift_id: int


Action = Create | Update | Delete | Prune | Adopt | Recover | Forget


def plan(
    desired: Mapping[int, EventSpec],
    records: Iterable[Record],
    *,
    new_key: Callable[[str], str],
    kept: AbstractSet[int] = frozenset(),
    remote: Iterable[RemoteEvent] | None = None,
    adoptable: Mapping[str, int] | None = None,
) -> Iterator[Action]:
    """Yield the actions that make the remote calendar show exactly `desired`.

    `desired` maps shift ids to the events the calendar should show (the window's live
    shifts). `records` is the status store. `kept` holds the shift ids of records whose
    shift still belongs here but lies outside the window. `remote`, when given, lists
    the tagged events the calendar really holds (a full check). `new_key(uid)` makes the
    idempotency key of a fresh insert. `adoptable` maps the UIDs of the user's shifts
    outside the window that have no record to their ids: a listed event of one of those
    is adopted (it stays, like any aged-out event), not pruned as an orphan. Shifts are
    visited in id order, orphans last, so
    the same inputs always give the same plan; nothing is yielded when nothing differs.
    """
    records = list(records)
    by_shift = {record.shift_id: record for record in records}
    listing: dict[str, list[RemoteEvent]] | None = None
    if remote is not None:
        recorded = _recorded_uids(records)
        listing = defaultdict(list)
        for event in remote:
            uid = recorded.get(event.remote_id, event.uid)
            if uid is not None and not event.cancelled:
                listing[uid].append(event)
        for events in listing.values():
            events.sort(key=lambda e: e.remote_id)

    seen_uids: set[str] = set()
    for shift_id in sorted(desired.keys() | by_shift.keys()):
        spec = desired.get(shift_id)
        record = by_shift.get(shift_id)
        if spec is not None:
            uid = spec.uid
        else:
            assert record is not None  # the id came from one of the two
            uid = record.uid
        seen_uids.add(uid)
        if listing is None:
            yield from _incremental(shift_id, spec, record, shift_id in kept, new_key)
        else:
            found = listing.get(uid, [])
            yield from _checked(shift_id, uid, spec, record, shift_id in kept, found, new_key)
    if listing is not None:
        adoptable = adoptable or {}
        for uid in sorted(listing.keys() - seen_uids):
            events = listing[uid]
            if uid in adoptable:
                yield Adopt(adoptable[uid], uid, events[0].remote_id, None)
                events = events[1:]
            for event in events:
                yield Prune(uid, event.remote_id)


def _recorded_uids(records: Iterable[Record]) -> dict[str, str]:
    """Remote id -> shift UID of every record that names a remote event."""
    return {record.remote_id: record.uid for record in records if record.remote_id is not None}


def unattributed(remote: Iterable[RemoteEvent], records: Iterable[Record]) -> list[RemoteEvent]:
    """The live listed events that carry neither our tag nor an id we recorded.

    A listing of *our tagged events* (Graph filters on the tag) that holds such an event
    contradicts itself: the tag was lost on the way, so absent events cannot be told
    from untagged ones. The engine then plans from the records alone instead of creating
    what looks missing.
    """
    recorded = _recorded_uids(records)
    return [
        event
        for event in remote
        if not event.cancelled and event.uid is None and event.remote_id not in recorded
    ]


def _incremental(
    shift_id: int,
    spec: EventSpec | None,
    record: Record | None,
    kept: bool,
    new_key: Callable[[str], str],
) -> Iterator[Action]:
    """Trust the records: diff content hashes, resolve uncertain ones."""
    if record is None:
        assert spec is not None
        yield Create(shift_id, spec, new_key(spec.uid))
        return
    if record.pending_key is None:
        # A record that lost its keys: nothing remote can be found through it.
        yield Create(shift_id, spec, new_key(spec.uid)) if spec is not None else Forget(shift_id)
        return
    if record.state == "creating" or record.remote_id is None:
        if spec is None and not kept and record.remote_id is not None:
            # A client-chosen id: whether or not the insert happened, deleting that id is
            # enough (a 404 counts as done, and the calendar is checked again later).
            yield Delete(shift_id, record.remote_id, uncertain=True)
            return
        yield _recover(record, spec, keep=kept)
        return
    if spec is not None:
        # A `deleting` record may or may not still have its event; an update settles it
        # either way (Google restores a cancelled event, a 404 leads to a fresh insert).
        if record.state == "deleting" or record.content_hash != spec.content_hash:
            yield Update(shift_id, record.remote_id, spec, record.remote_etag)
        return
    if kept and record.state == "synced":
        return
    yield Delete(shift_id, record.remote_id, record.remote_etag)


def _edited(record: Record, found: Sequence[RemoteEvent]) -> bool:
    """Whether the listed event of a synced record no longer carries our write's etag."""
    if record.remote_etag is None:
        return False
    listed = next((e for e in found if e.remote_id == record.remote_id), None)
    return listed is not None and listed.etag is not None and listed.etag != record.remote_etag


def _recover(record: Record, spec: EventSpec | None, *, keep: bool) -> Recover:
    key = record.pending_key
    assert key is not None, "a creating record always carries its idempotency key"
    return Recover(record.shift_id, record.uid, spec, key, record.content_hash, keep)


def _checked(
    shift_id: int,
    uid: str,
    spec: EventSpec | None,
    record: Record | None,
    kept: bool,
    found: Sequence[RemoteEvent],
    new_key: Callable[[str], str],
) -> Iterator[Action]:
    """Trust the listing: `found` are the live events tagged with this shift's UID."""
    ids = [event.remote_id for event in found]
    current = record.remote_id if record is not None and record.remote_id in ids else None
    if spec is None and not kept:
        # The shift is gone: every event of it goes.
        for remote_id in ids:
            if remote_id == current:
                yield Delete(shift_id, remote_id, _listed_etag(found, remote_id))
            else:
                yield Prune(uid, remote_id)
        if current is None and record is not None:
            yield Forget(shift_id)
        return

    if (current is None and ids) or (
        current is not None and record is not None and record.state != "synced"
    ):
        # An event of ours that no recorded write answered for: an insert whose answer
        # was lost, or (the first found, for determinism) one the records never named.
        # It is known when it reads back as what the shift renders to (its content tag,
        # title and times: `RemoteEvent.shows`), and adopted with its etag; else its
        # content counts as unknown and is written again.
        current = current or ids[0]
        listed = next(e for e in found if e.remote_id == current)
        if spec is not None and listed.shows(spec):
            believed = spec.content_hash
            yield Adopt(shift_id, uid, current, believed, listed.etag)
        else:
            believed = None
            yield Adopt(shift_id, uid, current, believed)
    else:
        believed = record.content_hash if record is not None else None
        if record is not None and _edited(record, found):
            # Someone else changed our event since our last write: render it again.
            believed = None
    for remote_id in ids:
        if remote_id != current:
            yield Prune(uid, remote_id)

    if current is None:
        if spec is None:
            # Outside the window and no longer in the calendar (the user removed it).
            if record is not None:
                yield Forget(shift_id)
            return
        pending = record.pending_key if record is not None and record.state == "creating" else None
        yield Create(shift_id, spec, pending or new_key(uid))
        return
    if spec is not None and believed != spec.content_hash:
        yield Update(shift_id, current, spec, _listed_etag(found, current))


def _listed_etag(found: Sequence[RemoteEvent], remote_id: str) -> str | None:
    """The etag the full check's listing shows for `remote_id` (fresher than our record's)."""
    return next((e.etag for e in found if e.remote_id == remote_id), None)
