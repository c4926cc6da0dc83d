"""The Microsoft Graph (Outlook calendar) adapter behind `CalendarProvider`.

Plain `requests` with timeouts against `GRAPH_ENDPOINT` (v1.0). Differences from Google
that shape this module:

- Graph chooses event ids. Retries are made safe with `transactionId` (our `event_key`):
  a create whose transactionId matches an event that still exists returns that event
  instead of a second one, so `insert_event` never raises `RemoteConflict` here.
- Every event we write carries a single-value extended property with the shift UID
  (`UID_PROPERTY_ID`), which `find_event` / `list_events` filter on.
- Graph has no cancelled state: deleting removes the event (later calls get 404), and a
  cancelled shift is deleted, never written, so `update_event` with a cancelled spec
  deletes the event.
- The `$batch` envelope answers 200 even when members fail or are throttled: each
  member's status is read on its own. A batch holds at most 20 requests.
- requests does not re-send a request after a dropped connection (httplib2 does), so a
  dropped create surfaces as `TransientError`; retrying it with the same transactionId
  is safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

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
from oncal_feed.rendering.graph import CONTENT_PROPERTY_ID, UID_PROPERTY_ID, graph_event

__all__ = ["GraphCalendarProvider", "map_graph_status"]

# Graph's throttling answers besides 429 (and 503 with Retry-After).
_THROTTLE_CODES = frozenset({"ErrorQuotaExceeded", "TooManyRequests", "ActivityLimitReached"})
_TAG_EXPAND = (
    "singleValueExtendedProperties("
    f"$filter=id eq '{UID_PROPERTY_ID}' or id eq '{CONTENT_PROPERTY_ID}')"
)
# What `_remote_event` reads besides the tags: the title and times `RemoteEvent.shows` checks.
_EVENT_SELECT = "id,subject,start,end"

TokenSource = Callable[..., str]


def _quote_literal(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _tag_filter(value_clause: str) -> str:
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq {_quote_literal(UID_PROPERTY_ID)} "
        f"and {value_clause})"
    )


def map_graph_status(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """Translate a failed Graph answer (status, decoded body, headers) into our error tree."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    code = message = ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or "")
    text = f"Microsoft Graph answered {status}" + (f" ({code})" if code else "")
    if message:
        text += f": {message[:200]}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 401:
        return AuthorizationLost(text, status)
    if status == 429 or (status == 403 and code in _THROTTLE_CODES):
        return RateLimited(text, status, retry_after)
    if status == 503 and retry_after is not None:
        return RateLimited(text, status, retry_after)
    if status >= 500:
        return TransientError(text, status)
    if status in (404, 410):
        return RemoteNotFound(text, status)
    if status == 409:
        return RemoteConflict(text, status)
    if status == 412:
        return PreconditionFailed(text, status)
    return PermanentError(text, status)


def _instant(value: Any) -> datetime | None:
    """A Graph `dateTimeTimeZone` in UTC (as Graph answers by default) as an aware datetime.

    Graph writes seven fractional digits, more than `fromisoformat` reads, and they are
    zeros for what we write; any other zone is left unread (None).
    """
    if not isinstance(value, Mapping) or value.get("timeZone") != "UTC":
        return None
    text = value.get("dateTime")
    try:
        parsed = datetime.fromisoformat(text.split(".")[0]) if isinstance(text, str) else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed is not None and parsed.tzinfo is None else None


def _remote_event(item: Mapping[str, Any]) -> RemoteEvent:
    tags = {
        str(prop.get("id", "")).lower(): prop.get("value")
        for prop in item.get("singleValueExtendedProperties") or []
    }
    return RemoteEvent(
        remote_id=str(item["id"]),
        uid=tags.get(UID_PROPERTY_ID.lower()),
        etag=item.get("@odata.etag") or item.get("changeKey"),
        written=tags.get(CONTENT_PROPERTY_ID.lower()),
        summary=item.get("subject"),
        starts_at=_instant(item.get("start")),
        ends_at=_instant(item.get("end")),
    )


class GraphCalendarProvider:
    """`CalendarProvider` for Outlook calendars through Microsoft Graph."""

    kind = "microsoft"
    max_batch = 20
    client_chosen_ids = False
    # Calendar names are unique per mailbox: creating one that exists answers 409, and
    # `create_calendar` adopts it. So a calendar left by an interrupted creation is found
    # again by the next one (`oncal_feed.calendar_creation`).
    adopts_calendar_by_name = True

    def __init__(
        self,
        token: TokenSource,
        *,
        graph_endpoint: str,
        timeout: float = 30.0,
        # Outlook takes up to 1,000 per page; 250, as on Google, keeps a full check of a
        # few hundred events to two pages.
        page_size: int = 250,
        session: requests.Session | None = None,
    ) -> None:
        """`token(force_refresh=False)` returns an access token (refreshing as needed)."""
        self._token = token
        self._base = graph_endpoint.rstrip("/")
        self._timeout = timeout
        self._page_size = page_size
        self._http = session or requests.Session()
        # Graph lives on the public internet or, in tests, on loopback: no proxies from
        # the environment, which could also see bearer tokens.
        self._http.trust_env = False

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> GraphCalendarProvider:
        """Use as a context manager that closes the connections."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the connections."""
        self.close()

    # plumbing -------------------------------------------------------------------

    def _send(self, method: str, url: str, *, token: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        try:
            return self._http.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
        except requests.Timeout:
            raise TransientError("Microsoft Graph did not answer in time") from None
        except requests.RequestException as exc:
            raise TransientError(
                f"Microsoft Graph could not be reached ({type(exc).__name__})"
            ) from None

    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        """Send one request; on 401 refresh the token once and try again."""
        url = path_or_url if "://" in path_or_url else self._base + path_or_url
        response = self._send(method, url, token=self._token(), **kwargs)
        if response.status_code == 401:
            response = self._send(method, url, token=self._token(force_refresh=True), **kwargs)
        if response.status_code >= 400:
            raise map_graph_status(response.status_code, _json(response), response.headers)
        return _json(response)

    def _read(self, path_or_url: str, params: Mapping[str, str] | None = None) -> Any:
        """GET, sent once more after a passing failure (see `read_twice`)."""
        return read_twice(lambda: self._request("GET", path_or_url, params=params))

    @staticmethod
    def _calendar_path(calendar_id: str) -> str:
        # "primary" is our name for the mailbox's default calendar (as with Google).
        if calendar_id == "primary":
            return "/me/calendar"
        return f"/me/calendars/{quote(calendar_id, safe='')}"

    def _event_path(self, calendar_id: str, remote_id: str) -> str:
        return f"{self._calendar_path(calendar_id)}/events/{quote(remote_id, safe='')}"

    # calendars -----------------------------------------------------------------

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create a calendar of ours (Graph calendars have no zone; events carry UTC)."""
        try:
            created = self._request("POST", "/me/calendars", json={"name": name})
        except RemoteConflict:
            # A calendar of that name exists (left by an earlier connection, or the user
            # made one): names are unique per mailbox, so adopt it instead of failing.
            found = self._request(
                "GET",
                "/me/calendars",
                params={"$filter": f"name eq {_quote_literal(name)}", "$select": "id,name"},
            )
            matches = found.get("value") or []
            if not matches:
                raise
            return str(matches[0]["id"])
        return str(created["id"])

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the calendar is still there."""
        try:
            self._read(self._calendar_path(calendar_id), {"$select": "id"})
        except RemoteNotFound:
            return False
        return True

    def delete_calendar(self, calendar_id: str) -> None:
        """Delete a calendar we created, with its events; already gone is fine."""
        with contextlib.suppress(RemoteNotFound):
            self._request("DELETE", self._calendar_path(calendar_id))

    # events --------------------------------------------------------------------

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create the event; a repeated `event_key` (transactionId) returns the first one."""
        body = graph_event(spec) | {"transactionId": event_key}
        created = self._request("POST", f"{self._calendar_path(calendar_id)}/events", json=body)
        return RemoteEvent(str(created["id"]), spec.uid, created.get("@odata.etag"))

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Patch the event's content; a cancelled spec deletes it (Graph has no cancelled).

        With `etag` (the event's `@odata.etag`), only if the event still carries it:
        Graph answers 412 otherwise.
        """
        if spec.cancelled:
            self.delete_event(calendar_id, remote_id, etag=etag)
            return RemoteEvent(remote_id, spec.uid, None, cancelled=True)
        updated = self._request(
            "PATCH",
            self._event_path(calendar_id, remote_id),
            json=graph_event(spec),
            headers=_if_match(etag),
        )
        return RemoteEvent(str(updated["id"]), spec.uid, updated.get("@odata.etag"))

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Delete the event; 404 and 410 count as done. If-Match: `etag`."""
        with contextlib.suppress(RemoteNotFound):
            self._request(
                "DELETE", self._event_path(calendar_id, remote_id), headers=_if_match(etag)
            )

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event's id, etag and tag; None when it is gone (Graph deletes for good)."""
        try:
            item = self._read(
                self._event_path(calendar_id, remote_id),
                {"$expand": _TAG_EXPAND, "$select": _EVENT_SELECT},
            )
        except RemoteNotFound:
            return None
        return _remote_event(item)

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find our event for a shift UID by its extended property."""
        page = self._read(
            f"{self._calendar_path(calendar_id)}/events",
            {
                "$filter": _tag_filter(f"ep/value eq {_quote_literal(uid)}"),
                "$expand": _TAG_EXPAND,
                "$select": _EVENT_SELECT,
                "$top": "10",
            },
        )
        items = page.get("value") or []
        return next((_remote_event(item) for item in items), None)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List every event carrying our tag, following `@odata.nextLink`."""
        url: str | None = f"{self._calendar_path(calendar_id)}/events"
        params: dict[str, str] | None = {
            "$filter": _tag_filter("ep/value ne null"),
            "$expand": _TAG_EXPAND,
            "$select": _EVENT_SELECT,
            "$top": str(self._page_size),
        }
        while url is not None:
            page = self._read(url, params)
            for item in page.get("value") or []:
                yield _remote_event(item)
            # The next link carries every query option already.
            url, params = page.get("@odata.nextLink"), None

    # batches -------------------------------------------------------------------

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Run the operations as `$batch` requests of up to 20, reading each member's status."""
        results: list[OperationResult] = []
        for start in range(0, len(operations), self.max_batch):
            results += self._apply_batch(calendar_id, operations[start : start + self.max_batch])
        return results

    def _member(self, index: int, calendar_id: str, op: Operation) -> dict[str, Any]:
        member: dict[str, Any] = {"id": str(index)}
        json_headers = {"Content-Type": "application/json"}
        if op.kind == "insert":
            assert op.spec is not None and op.event_key is not None
            body = graph_event(op.spec) | {"transactionId": op.event_key}
            member.update(
                method="POST",
                url=f"{self._calendar_path(calendar_id)}/events",
                body=body,
                headers=json_headers,
            )
        elif op.kind == "update" and op.spec is not None and not op.spec.cancelled:
            assert op.remote_id is not None
            member.update(
                method="PATCH",
                url=self._event_path(calendar_id, op.remote_id),
                body=graph_event(op.spec),
                headers=json_headers | _if_match(op.etag),
            )
        else:
            assert op.remote_id is not None
            member.update(method="DELETE", url=self._event_path(calendar_id, op.remote_id))
            if op.etag is not None:
                member["headers"] = _if_match(op.etag)
        return member

    def _apply_batch(
        self, calendar_id: str, operations: Sequence[Operation]
    ) -> list[OperationResult]:
        payload = {
            "requests": [self._member(i, calendar_id, op) for i, op in enumerate(operations)]
        }
        try:
            answer = self._request("POST", "/$batch", json=payload)
        except ProviderError as exc:
            return [OperationResult(error=exc) for _ in operations]
        by_id = {str(item.get("id")): item for item in answer.get("responses") or []}
        results = []
        for index, op in enumerate(operations):
            item = by_id.get(str(index))
            if item is None:
                error = TransientError("Graph's batch answer left this call out")
                results.append(OperationResult(error=error))
                continue
            results.append(self._member_result(op, item))
        return results

    def _member_result(self, op: Operation, item: Mapping[str, Any]) -> OperationResult:
        status = int(item.get("status") or 0)
        body = item.get("body")
        if status >= 400 or status == 0:
            error = map_graph_status(status or 500, body, item.get("headers") or {})
            if not (isinstance(error, RemoteNotFound) and _deletes(op)):
                return OperationResult(error=error)
        if op.kind == "delete":
            return OperationResult()
        assert op.spec is not None
        if op.spec.cancelled:
            assert op.remote_id is not None
            return OperationResult(event=RemoteEvent(op.remote_id, op.spec.uid, cancelled=True))
        body = body if isinstance(body, Mapping) else {}
        return OperationResult(
            event=RemoteEvent(
                str(body.get("id") or op.remote_id), op.spec.uid, body.get("@odata.etag")
            )
        )


def _if_match(etag: str | None) -> dict[str, str]:
    """The If-Match header for a write conditional on `etag` (none without one)."""
    return {"If-Match": etag} if etag is not None else {}


def _deletes(op: Operation) -> bool:
    """Whether the operation deletes on Graph (a delete, or an update to cancelled)."""
    return op.kind == "delete" or (op.spec is not None and op.spec.cancelled)


def _json(response: requests.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {}
