"""The interface every calendar provider implements, and its error tree.

Adapters translate remote failures into these errors; the sync engine decides what each
means (retry, re-authorise, record). Messages are plain words and never contain tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

from oncal_feed.errors import OncalError
from oncal_feed.rendering.event import EventSpec

__all__ = [
    "CALENDAR_NAME",
    "AuthorizationLost",
    "CalendarProvider",
    "Operation",
    "OperationResult",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "RemoteConflict",
    "RemoteEvent",
    "RemoteNotFound",
    "TransientError",
    "apply_one_by_one",
    "parse_retry_after",
]

# The name of the calendar the app creates for itself in the user's account.
CALENDAR_NAME = "On-call shifts"


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


class PermanentError(ProviderError):
    """Any other 4xx: retrying the same request won't help."""


@dataclass(frozen=True)
class RemoteEvent:
    """One event as the remote calendar holds it, reduced to what sync needs."""

    remote_id: str
    uid: str | None  # our tag (the shift UID), None for events we didn't write
    etag: str | None = None
    cancelled: bool = False


@dataclass(frozen=True)
class Operation:
    """One write for `apply()`: insert (with `event_key`), update or delete (with `remote_id`)."""

    kind: Literal["insert", "update", "delete"]
    spec: EventSpec | None = None
    remote_id: str | None = None
    # Google: the client-chosen event id; Graph: the transactionId. Makes retries safe.
    event_key: str | None = None


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

    def update_event(self, calendar_id: str, remote_id: str, spec: EventSpec) -> RemoteEvent:
        """Replace an event's content; restores a cancelled event (Google)."""
        ...

    def delete_event(self, calendar_id: str, remote_id: str) -> None:
        """Delete an event; 404 and 410 count as done."""
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
                event = provider.update_event(calendar_id, op.remote_id, op.spec)
                results.append(OperationResult(event=event))
            else:
                assert op.remote_id is not None
                provider.delete_event(calendar_id, op.remote_id)
                results.append(OperationResult())
        except ProviderError as exc:
            results.append(OperationResult(error=exc))
    return results


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
