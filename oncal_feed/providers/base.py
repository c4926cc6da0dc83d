"""The interface every calendar provider implements, and its error tree.

Adapters translate remote failures into these errors; the sync engine decides what each
means (retry, re-authorise, record). Messages are plain words and never contain tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol, TypeVar

from oncal_feed.errors import OncalError
from oncal_feed.rendering.event import EventSpec

__all__ = [
    "CALENDAR_NAME",
    "AuthorizationLost",
    "CalendarProvider",
    "Operation",
    "OperationResult",
    "PermanentError",
    "PreconditionFailed",
    "ProviderError",
    "RateLimited",
    "RemoteConflict",
    "RemoteEvent",
    "RemoteNotFound",
    "TransientError",
    "apply_one_by_one",
    "parse_retry_after",
    "read_twice",
]

# The name of the calendar the app creates for itself in the user's account.
CALENDAR_NAME = "On-call shifts"

# A read that failed for a passing reason is sent once more after this pause, or after a
# Retry-After up to READ_RETRY_CAP; a longer one is the sync engine's to wait out.
READ_RETRY_PAUSE = 0.5
READ_RETRY_CAP = 2.0

_T = TypeVar("_T")


class ProviderError(OncalError):
    """A remote calendar call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthorizationLost(ProviderError):
    """The grant is gone (revoked, expired, `invalid_grant`): the user must reconnect."""


class RateLimited(ProviderError):
    """429 or 403 rateLimitExceeded; retry no sooner than `retry_after` seconds."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class TransientError(ProviderError):
    """5xx, timeout or dropped connection: the outcome of a write is unknown; retry."""


class RemoteNotFound(ProviderError):
    """404 / 410: the calendar or event is not there (for deletes, that's success)."""


class RemoteConflict(ProviderError):
    """409: an event with the id we chose exists already (perhaps cancelled)."""


class PreconditionFailed(ProviderError):
    """412: the event's etag is no longer the one the write named in If-Match.

    Someone (the user, or a late write of ours) changed the event since we last saw it;
    the write did not happen. The engine refetches and decides.
    """


class PermanentError(ProviderError):
    """Any other 4xx: retrying the same request won't help."""


@dataclass(frozen=True)
class RemoteEvent:
    """One event as the remote calendar holds it, reduced to what sync needs."""

    remote_id: str
    uid: str | None  # our tag (the shift UID), None for events we didn't write
    etag: str | None = None
    cancelled: bool = False
    # What a read of the event found (None where it was not read or is absent): the
    # content tag of the write that made it (that write's `EventSpec.content_hash`), and
    # the title and times it shows now.
    written: str | None = None
    summary: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def shows(self, spec: EventSpec) -> bool:
        """Whether the event, read back, is provably what `spec` renders to.

        For an event whose write went unanswered (so no etag of it was recorded): it is
        live, its content tag says which of our writes made it, and its title and times,
        read now, that nobody retitled or moved it since.
        """
        return (
            not self.cancelled
            and self.written == spec.content_hash
            and self.summary == spec.summary
            and self.starts_at == spec.starts_at
            and self.ends_at == spec.ends_at
        )


def read_back(remote_id: str, spec: EventSpec, etag: str, cancelled: bool = False) -> RemoteEvent:
    """The `RemoteEvent` of a calendar that keeps each event as the `EventSpec` written."""
    return RemoteEvent(
        remote_id, spec.uid, etag, cancelled,
        written=spec.content_hash, summary=spec.summary,
        starts_at=spec.starts_at, ends_at=spec.ends_at,
    )  # fmt: skip


@dataclass(frozen=True)
class Operation:
    """One write for `apply()`: insert (with `event_key`), update or delete (with `remote_id`)."""

    kind: Literal["insert", "update", "delete"]
    spec: EventSpec | None = None
    remote_id: str | None = None
    # Google: the client-chosen event id; Graph: the transactionId. Makes retries safe.
    event_key: str | None = None
    # Updates and deletes: the etag the event must still carry (sent as If-Match), so a
    # write based on an old view of the event fails with 412 instead of overwriting.
    etag: str | None = None


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one `Operation`: an event, or the error it met."""

    event: RemoteEvent | None = None
    error: ProviderError | None = None


class CalendarProvider(Protocol):
    """A remote calendar API, seen through the few calls one-way sync needs."""

    kind: str
    max_batch: int
    # Whether inserts carry an event id the client chose (Google): then a retried insert
    # is a 409, never a duplicate. Otherwise (Graph) ids are the server's, and lost
    # inserts are found again by their tag.
    client_chosen_ids: bool

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create a calendar of our own and return its id."""
        ...

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the calendar is still there (users can delete it)."""
        ...

    def delete_calendar(self, calendar_id: str) -> None:
        """Delete a calendar we created; already gone counts as done."""
        ...

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create an event; raises `RemoteConflict` when `event_key` is taken (Google)."""
        ...

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Replace an event's content; restores a cancelled event (Google).

        With `etag`, only if the event still carries it (`PreconditionFailed` otherwise).
        """
        ...

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Delete an event; 404 and 410 count as done. `etag` as for `update_event`."""
        ...

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event by id (Google: cancelled ones too); None when it is gone."""
        ...

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find our live event for a shift UID by its tag, if any."""
        ...

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List every live event we tagged in the calendar."""
        ...

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Run up to `max_batch` operations, in one round trip where the API allows."""
        ...


def apply_one_by_one(
    provider: CalendarProvider, calendar_id: str, operations: Sequence[Operation]
) -> list[OperationResult]:
    """Run operations one call each, capturing each one's error: the no-batch `apply`."""
    results: list[OperationResult] = []
    for op in operations:
        try:
            if op.kind == "insert":
                assert op.spec is not None and op.event_key is not None
                event = provider.insert_event(calendar_id, op.spec, op.event_key)
                results.append(OperationResult(event=event))
            elif op.kind == "update":
                assert op.spec is not None and op.remote_id is not None
                event = provider.update_event(calendar_id, op.remote_id, op.spec, etag=op.etag)
                results.append(OperationResult(event=event))
            else:
                assert op.remote_id is not None
                provider.delete_event(calendar_id, op.remote_id, etag=op.etag)
                results.append(OperationResult())
        except ProviderError as exc:
            results.append(OperationResult(error=exc))
    return results


def read_twice(read: Callable[[], _T], *, sleep: Callable[[float], None] = time.sleep) -> _T:
    """Run an idempotent read (a page of a listing, a lookup); after a passing failure
    (5xx, timeout, dropped connection, short throttle) pause and send it once more.

    Writes are never retried here: their retries need the engine's intent records. A read
    has none, and one failed page out of five would otherwise cost the whole listing.
    """
    try:
        return read()
    except (TransientError, RateLimited) as exc:
        pause = READ_RETRY_PAUSE
        if isinstance(exc, RateLimited) and exc.retry_after:
            pause = max(pause, exc.retry_after)
        if pause > READ_RETRY_CAP:
            raise
        sleep(pause)
        return read()


def parse_retry_after(value: str | None) -> float | None:
    """Read a Retry-After header: seconds, or an HTTP date (turned into seconds from now)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
