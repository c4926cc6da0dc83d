"""The Google Calendar v3 adapter behind `CalendarProvider`.

Built on googleapiclient with static discovery, `client_options={"api_endpoint": ...}`
from configuration (so tests can point it at the fake server), and httplib2 with a
timeout, wrapped in google-auth's `AuthorizedHttp` (which refreshes the access token on
a 401 or near expiry and reports it through the credentials' refresh hook).

Facts that shape this module:

- Events are inserted with a client-chosen id (`event_key`, base32hex), so a retried
  insert can't create a duplicate: it gets 409 instead (`RemoteConflict`).
- httplib2 silently re-sends a request once when a kept-alive connection closes without
  an answer. An insert that Google committed before the connection dropped therefore
  comes back as 409 on the replay, not as a connection error. Callers must treat
  `RemoteConflict` on insert as "the event may already be ours" (update it), never as
  a reason to pick a new id and insert again.
- Deleting makes an event `cancelled`; its id stays taken, and `update_event` (a PUT
  with `status: confirmed`) brings it back.
- `service.new_batch_http_request()` ignores `client_options`, so batches are built as
  `BatchHttpRequest(batch_uri=...)` from configuration. A batch holds at most 50 calls,
  and every member has its own status.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from oncal_feed.providers.base import (
    AuthorizationLost,
    Operation,
    OperationResult,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
    parse_retry_after,
    read_twice,
)
from oncal_feed.rendering.event import EventSpec
from oncal_feed.rendering.google import CONTENT_PROPERTY, UID_PROPERTY, google_event

__all__ = [
    "GoogleCalendarProvider",
    "InsufficientPermissions",
    "map_google_error",
]

_T = TypeVar("_T")
_RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
# What `_remote_event` reads: ids, tags, and the title and times `RemoteEvent.shows` checks.
_EVENT_FIELDS = "id,etag,status,summary,start,end,extendedProperties/private"
_LIST_FIELDS = f"items({_EVENT_FIELDS}),nextPageToken"


class InsufficientPermissions(PermanentError):
    """403 insufficientPermissions: the grant doesn't reach this calendar.

    With `calendar.app.created`, Google answers this (not 404) for a calendar the app
    didn't create *or that no longer exists*: scope checks come before existence.
    """


def _error_detail(exc: HttpError) -> tuple[str, str]:
    """Return Google's first error `reason` and its message, from the JSON error body."""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        first = (error.get("errors") or [{}])[0]
        return str(first.get("reason") or error.get("status") or ""), str(
            error.get("message") or ""
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return "", ""


def map_google_error(exc: BaseException) -> ProviderError:
    """Translate a googleapiclient, google-auth or transport failure into our error tree.

    Messages are built from the status and Google's reason; request URLs, headers and
    bodies (which could hold credentials) are never copied.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, HttpError):
        status = int(exc.resp.status)
        reason, message = _error_detail(exc)
        text = f"Google Calendar answered {status}" + (f" ({reason})" if reason else "")
        if message:
            text += f": {message[:200]}"
        if status == 401:
            return AuthorizationLost(text, status)
        if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
            return RateLimited(text, status, parse_retry_after(exc.resp.get("retry-after")))
        if status >= 500:
            return TransientError(text, status)
        if status in (404, 410):
            return RemoteNotFound(text, status)
        if status == 409:
            return RemoteConflict(text, status)
        if status == 412:
            return PreconditionFailed(text, status)
        if status == 403 and reason == "insufficientPermissions":
            return InsufficientPermissions(text, status)
        return PermanentError(text, status)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return refresh_error(exc)
    if isinstance(exc, google.auth.exceptions.TransportError):
        return TransientError("Google's token service could not be reached")
    if isinstance(exc, socket.timeout | TimeoutError):
        return TransientError("Google Calendar did not answer in time")
    if isinstance(exc, OSError | httplib2.HttpLib2Error):
        return TransientError(f"Google Calendar could not be reached ({type(exc).__name__})")
    raise exc


def _instant(value: Any) -> datetime | None:
    """An event's `start`/`end` as an aware datetime (None for all-day or unreadable)."""
    text = value.get("dateTime") if isinstance(value, dict) else None
    try:
        parsed = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _remote_event(item: dict[str, Any]) -> RemoteEvent:
    private = (item.get("extendedProperties") or {}).get("private") or {}
    return RemoteEvent(
        remote_id=str(item["id"]),
        uid=private.get(UID_PROPERTY),
        etag=item.get("etag"),
        cancelled=item.get("status") == "cancelled",
        written=private.get(CONTENT_PROPERTY),
        summary=item.get("summary"),
        starts_at=_instant(item.get("start")),
        ends_at=_instant(item.get("end")),
    )


class GoogleCalendarProvider:
    """`CalendarProvider` for Google Calendar, for one user's credentials."""

    kind = "google"
    max_batch = 50
    client_chosen_ids = True

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_endpoint: str,
        batch_uri: str,
        timeout: float = 30.0,
        page_size: int = 250,
    ) -> None:
        # build() with `credentials=` would make its own httplib2.Http with a 60 s
        # timeout; passing an AuthorizedHttp lets us choose the timeout.
        self._http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=timeout)
        )
        self._service = build(
            "calendar",
            "v3",
            http=self._http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": api_endpoint},
        )
        # calendars.insert has no client-chosen id: a replayed insert is a second calendar
        # we would never hear of. So it goes through an Http that never re-sends.
        self._once_http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=_SendOnceHttp(timeout=timeout)
        )
        self._batch_uri = batch_uri
        self._page_size = page_size

    def close(self) -> None:
        """Close the HTTP connections."""
        self._service.close()
        self._once_http.close()

    def __enter__(self) -> GoogleCalendarProvider:
        """Use as a context manager that closes the connections."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the connections."""
        self.close()

    def _execute(self, request: HttpRequest, http: Any = None) -> Any:
        # No retries of the library's: writes are retried by the sync engine (which keeps
        # intent records), reads by `_read` (which honours Retry-After).
        try:
            return request.execute(http=http, num_retries=0)
        except Exception as exc:
            # Library exceptions quote URLs and bodies; ours carry status and reason only.
            # Anything map_google_error doesn't know is re-raised unchanged.
            raise map_google_error(exc) from None

    def _read(self, request: HttpRequest) -> Any:
        """Execute a read, sent once more after a passing failure (see `read_twice`)."""
        return read_twice(lambda: self._execute(request))

    def _call(self, make: Callable[[], _T]) -> _T:
        try:
            return make()
        except Exception as exc:
            raise map_google_error(exc) from None

    # calendars -----------------------------------------------------------------

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create a secondary calendar (allowed by `calendar.app.created`)."""
        body = {
            "summary": name,
            "timeZone": time_zone,
            "description": "On-call shifts, kept up to date by oncal-feed.",
        }
        created = self._execute(self._service.calendars().insert(body=body), self._once_http)
        return str(created["id"])

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the calendar is still there.

        Reads one event rather than `calendars.get`, because the `calendar.events` scope
        (primary-calendar mode) may list events but not read calendar metadata. Under
        `calendar.app.created` a deleted calendar answers 403, not 404.
        """
        request = self._service.events().list(calendarId=calendar_id, maxResults=1, fields="kind")
        try:
            self._read(request)
        except (RemoteNotFound, InsufficientPermissions):
            return False
        return True

    def delete_calendar(self, calendar_id: str) -> None:
        """Delete a calendar we created; already gone is fine (404, or 403 under app.created)."""
        with contextlib.suppress(RemoteNotFound, InsufficientPermissions):
            self._execute(self._service.calendars().delete(calendarId=calendar_id))

    # events --------------------------------------------------------------------

    def _insert_request(self, calendar_id: str, spec: EventSpec, event_key: str) -> HttpRequest:
        body = google_event(spec) | {"id": event_key}
        return self._service.events().insert(calendarId=calendar_id, body=body)

    def _update_request(
        self, calendar_id: str, remote_id: str, spec: EventSpec, etag: str | None
    ) -> HttpRequest:
        # A PUT describes the whole event, so `status: confirmed` restores a cancelled one.
        request = self._service.events().update(
            calendarId=calendar_id, eventId=remote_id, body=google_event(spec)
        )
        return _if_match(request, etag)

    def _delete_request(self, calendar_id: str, remote_id: str, etag: str | None) -> HttpRequest:
        request = self._service.events().delete(calendarId=calendar_id, eventId=remote_id)
        return _if_match(request, etag)

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create the event with id `event_key`; `RemoteConflict` if the id is taken."""
        return _remote_event(self._execute(self._insert_request(calendar_id, spec, event_key)))

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Replace the event's content (and restore it if it was cancelled).

        With `etag`, only if the event still carries it: Google answers 412 otherwise.
        """
        request = self._update_request(calendar_id, remote_id, spec, etag)
        return _remote_event(self._execute(request))

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Cancel the event; 404 and 410 (already deleted) count as done. If-Match: `etag`."""
        with contextlib.suppress(RemoteNotFound):
            self._execute(self._delete_request(calendar_id, remote_id, etag))

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event (a cancelled one too: Google keeps it under its id)."""
        request = self._service.events().get(
            calendarId=calendar_id, eventId=remote_id, fields=_EVENT_FIELDS
        )
        try:
            return _remote_event(self._read(request))
        except RemoteNotFound:
            return None

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find our live event for a shift UID by its private extended property."""
        request = self._service.events().list(
            calendarId=calendar_id,
            privateExtendedProperty=f"{UID_PROPERTY}={uid}",
            maxResults=10,
            fields=_LIST_FIELDS,
        )
        items = self._read(request).get("items") or []
        return next((_remote_event(item) for item in items), None)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List every live event carrying our tag, page by page.

        Google filters extended properties by value only, not by presence, so this lists
        all live events and keeps the tagged ones.
        """
        events = self._service.events()
        request: HttpRequest | None = events.list(
            calendarId=calendar_id, maxResults=self._page_size, fields=_LIST_FIELDS
        )
        while request is not None:
            page = self._read(request)
            for item in page.get("items") or []:
                event = _remote_event(item)
                if event.uid is not None and not event.cancelled:
                    yield event
            request = self._call(partial(events.list_next, request, page))

    # batches -------------------------------------------------------------------

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Run the operations as Google batches of up to 50; each member has its own result."""
        results: list[OperationResult] = []
        for start in range(0, len(operations), self.max_batch):
            results += self._apply_batch(calendar_id, operations[start : start + self.max_batch])
        return results

    def _apply_batch(
        self, calendar_id: str, operations: Sequence[Operation]
    ) -> list[OperationResult]:
        answers: dict[str, OperationResult] = {}

        def record(request_id: str, response: Any, exception: Exception | None) -> None:
            op = operations[int(request_id)]
            if exception is None:
                event = _remote_event(response) if op.kind != "delete" else None
                answers[request_id] = OperationResult(event=event)
                return
            try:
                error = map_google_error(exception)
            except Exception:
                # One member's unknown failure must not hide the other members' results.
                error = TransientError(f"unexpected {type(exception).__name__} in a batch")
            if op.kind == "delete" and isinstance(error, RemoteNotFound):
                answers[request_id] = OperationResult()
            else:
                answers[request_id] = OperationResult(error=error)

        batch = BatchHttpRequest(callback=record, batch_uri=self._batch_uri)
        for index, op in enumerate(operations):
            batch.add(self._member(calendar_id, op), request_id=str(index))
        try:
            batch.execute()
        except Exception as exc:
            # The envelope failed (or the connection dropped): every member shares that
            # error (for a dropped connection: transient, outcome unknown).
            envelope = map_google_error(exc)
            return [
                answers.get(str(i), OperationResult(error=envelope)) for i in range(len(operations))
            ]
        missing = TransientError("Google's batch answer left this call out")
        return [answers.get(str(i), OperationResult(error=missing)) for i in range(len(operations))]

    def _member(self, calendar_id: str, op: Operation) -> HttpRequest:
        if op.kind == "insert":
            assert op.spec is not None and op.event_key is not None
            return self._insert_request(calendar_id, op.spec, op.event_key)
        if op.kind == "update":
            assert op.spec is not None and op.remote_id is not None
            return self._update_request(calendar_id, op.remote_id, op.spec, op.etag)
        assert op.remote_id is not None
        return self._delete_request(calendar_id, op.remote_id, op.etag)


class _SendOnceHttp(httplib2.Http):
    """An `httplib2.Http` that sends each request at most once.

    httplib2 re-sends a request, once, when the server closes the connection without an
    answer (it takes that for a stale kept-alive connection, whatever the method). For a
    call without an idempotency key the first send may have been carried out, so here
    the second send fails instead (an `OSError`, mapped to `TransientError`: outcome
    unknown), and the caller's records say what may have happened.
    """

    def _conn_request(  # type: ignore[no-untyped-def]
        self, conn, request_uri, method, body, headers
    ):
        send = conn.request
        sent = False

        def send_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            if sent:
                raise ConnectionAbortedError("the connection closed unanswered; not re-sent")
            sent = True
            return send(*args, **kwargs)

        conn.request = send_once
        try:
            # A private method of httplib2 (hence no stubs), and the one place where its
            # re-send can be stopped; tests/test_calendar_creation.py drives this path.
            return super()._conn_request(conn, request_uri, method, body, headers)  # type: ignore[misc]
        finally:
            # Kept-alive connections are pooled: give this one back its own method.
            del conn.request


def _if_match(request: HttpRequest, etag: str | None) -> HttpRequest:
    """Make the request conditional on the event's etag (Calendar v3 answers 412 if it moved)."""
    if etag is not None:
        request.headers["If-Match"] = etag
    return request


def refresh_error(exc: google.auth.exceptions.RefreshError) -> ProviderError:
    """Map google-auth's refresh failure to our error tree, without its text."""
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Mapping) else {}
    error = str(data.get("error") or "")
    if error in ("invalid_grant", "unauthorized_client") or (
        not data and "invalid_grant" in str(exc.args[0] if exc.args else "")
    ):
        return AuthorizationLost(
            "Google no longer accepts this connection (access was revoked or has expired); "
            "reconnect the calendar."
        )
    if error == "invalid_client":
        return PermanentError("Google rejected the server's OAuth client (check its settings)")
    if getattr(exc, "retryable", False):
        return TransientError("Google's token service failed; will retry")
    return PermanentError(f"Google refused to refresh access ({error or 'unknown error'})")
