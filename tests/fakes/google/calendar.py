"""Google Calendar API v3 part of the fake: calendars, calendarList, events.

``CalendarMixin`` is mixed into ``FakeGoogle``.
"""

from __future__ import annotations

import base64
import http
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fakes.faults import Fault
from tests.fakes.google.model import (
    _CAL_READ_SCOPES,
    _CAL_WRITE_SCOPES,
    _EVENT_ID_ALPHABET,
    _EVENT_READ_SCOPES,
    _EVENT_WRITE_SCOPES,
    _LIST_SCOPES,
    _READ_OPS,
    _SERVER_EVENT_FIELDS,
    API_PREFIX,
    SCOPE_APP_CREATED,
    ApiCall,
    ApiError,
    _Auth,
    _b64url,
    _Calendar,
    _Event,
    _parse_rfc3339,
    _random_id,
    _rfc3339_ms,
    _When,
)
from tests.fakes.server import (
    HTTPError,
    Request,
    Response,
    json_response,
)


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    # Google patch semantics: nested objects merge, arrays and scalars replace,
    # an explicit null clears the field.
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _parse_fields(spec: str) -> dict[str, Any]:
    """Parse a partial-response ``fields`` selector (``a,b(c,d),e/f``) into a tree."""
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        tree: dict[str, Any] = {}
        while pos < len(spec):
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = [part.strip() for part in spec[start:pos].split("/") if part.strip()]
            sub: Any = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list()
                pos += 1  # the closing ")"
            if path:
                node = tree
                for name in path[:-1]:
                    child = node.get(name)
                    if not isinstance(child, dict):
                        child = node[name] = {}
                    node = child
                node[path[-1]] = sub
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            if pos < len(spec) and spec[pos] == ")":
                return tree
        return tree

    return parse_list()


def _apply_fields(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [_apply_fields(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: _apply_fields(value[key], sub) for key, sub in tree.items() if key in value}
    return value


class CalendarMixin:
    """Calendar API routes and semantics (see the package docstring)."""

    def _api_fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.kind == "rate_limit":
            return ApiError(
                429,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                domain="usageLimits",
                headers=headers,
            ).response()
        if fault.kind == "quota":
            return ApiError(
                403,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                domain="usageLimits",
                headers=headers,
            ).response()
        message = "Backend Error" if status >= 500 else http.HTTPStatus(status).phrase
        reason = "backendError" if status >= 500 else "injectedError"
        return ApiError(status, reason, message, headers=headers).response()

    def _api_call(self, request: Request, *, in_batch: bool) -> Response:
        op = "unknown"
        email = None
        try:
            op, handler, args = self._route(request)
            with self._lock:
                auth = self._authenticate(request)
                email = auth.email
                response = handler(request, auth, *args)
        except ApiError as exc:
            response = exc.response()
        except HTTPError as exc:
            response = exc.response
        self.stats.incr(op)
        with self._lock:
            self.calls.append(
                ApiCall(op, request.method, request.path, response.status, in_batch, email)
            )
        fields = request.param("fields")
        if fields and response.status == 200 and response.body:
            body = _apply_fields(json.loads(response.body), _parse_fields(fields))
            response = json_response(body, 200, response.headers)
        return response

    def _route(self, request: Request) -> tuple[str, Callable[..., Response], tuple[str, ...]]:
        raw = request.raw_path[len(API_PREFIX) :].strip("/")
        parts = [urllib.parse.unquote(p) for p in raw.split("/")] if raw else []
        method = request.method
        table: dict[tuple[int, str], tuple[str, Callable[..., Response]]] = {}
        if parts[:1] == ["calendars"]:
            table = {
                (1, "POST"): ("calendars.insert", self._calendars_insert),
                (2, "GET"): ("calendars.get", self._calendars_get),
                (2, "DELETE"): ("calendars.delete", self._calendars_delete),
                (2, "PATCH"): ("calendars.patch", self._calendars_patch),
                (2, "PUT"): ("calendars.update", self._calendars_update),
            }
            if len(parts) >= 3 and parts[2] == "events":
                table = {
                    (3, "GET"): ("events.list", self._events_list),
                    (3, "POST"): ("events.insert", self._events_insert),
                    (4, "GET"): ("events.get", self._events_get),
                    (4, "PUT"): ("events.update", self._events_update),
                    (4, "PATCH"): ("events.patch", self._events_patch),
                    (4, "DELETE"): ("events.delete", self._events_delete),
                }
            entry = table.get((len(parts), method))
            if entry is not None:
                args = tuple(p for i, p in enumerate(parts) if i in (1, 3))
                return entry[0], entry[1], args
        if parts[:3] == ["users", "me", "calendarList"]:
            if len(parts) == 3 and method == "GET":
                return "calendarList.list", self._calendar_list, ()
            if len(parts) == 4 and method == "GET":
                return "calendarList.get", self._calendar_list_get, (parts[3],)
        raise ApiError(404, "notFound", f"Not Found: {method} {request.path}")

    def _check_scope(self, auth: _Auth, op: str, cal: _Calendar | None) -> None:
        scopes = auth.scopes
        read = op in _READ_OPS
        if op.startswith("events."):
            allowed = _EVENT_READ_SCOPES if read else _EVENT_WRITE_SCOPES
        elif op.startswith("calendarList."):
            allowed = _LIST_SCOPES
        else:
            allowed = _CAL_READ_SCOPES if read else _CAL_WRITE_SCOPES
        if scopes & allowed:
            return
        if SCOPE_APP_CREATED in scopes and (
            # Not calendarList.list: its documented scopes are calendar, calendar.readonly
            # and the calendar.calendarlist ones, so an app.created token can't list even
            # the calendars it made (calendarList.get on a known id is allowed).
            op == "calendars.insert"
            or (cal is not None and cal.created_by_client == auth.client_id)
        ):
            return
        raise ApiError(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        )

    def _calendar(self, auth: _Auth, calendar_id: str, op: str) -> _Calendar:
        cal_id = auth.email if calendar_id == "primary" else calendar_id
        cal = self._calendars.get(cal_id)
        if cal is None or cal.owner != auth.email:
            # Scope errors win over existence, as with Google: an app.created token
            # learns nothing about calendars it may not touch.
            self._check_scope(auth, op, None)
            raise ApiError(404, "notFound", "Not Found")
        self._check_scope(auth, op, cal)
        return cal

    def _next_etag(self) -> str:
        self._mod += 1
        return f'"{self._mod}"'

    def _calendars_insert(self, request: Request, auth: _Auth) -> Response:
        self._check_scope(auth, "calendars.insert", None)
        body = request.json()
        if not isinstance(body, dict) or not body.get("summary"):
            raise ApiError(400, "required", "Missing title.")
        time_zone = body.get("timeZone") or self._users[auth.email].time_zone
        self._check_time_zone(time_zone, "timeZone")
        cal = _Calendar(
            id=f"c_{_random_id(40)}@group.calendar.google.com",
            owner=auth.email,
            summary=str(body["summary"]),
            time_zone=time_zone,
            created_by_client=auth.client_id,
            primary=False,
            etag=self._next_etag(),
            description=body.get("description"),
            location=body.get("location"),
        )
        self._calendars[cal.id] = cal
        return json_response(cal.resource())

    def _calendars_get(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return json_response(self._calendar(auth, calendar_id, "calendars.get").resource())

    def _calendars_delete(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "calendars.delete")
        if cal.primary:
            raise ApiError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar.")
        del self._calendars[cal.id]
        return Response(204, b"", {})

    def _calendars_patch(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return self._calendars_write(request, auth, calendar_id, "calendars.patch")

    def _calendars_update(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return self._calendars_write(request, auth, calendar_id, "calendars.update")

    def _calendars_write(
        self, request: Request, auth: _Auth, calendar_id: str, op: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, op)
        body = request.json()
        if op == "calendars.update" and not body.get("summary"):
            raise ApiError(400, "required", "Missing title.")
        if body.get("summary"):
            cal.summary = str(body["summary"])
        if body.get("timeZone"):
            self._check_time_zone(body["timeZone"], "timeZone")
            cal.time_zone = body["timeZone"]
        for attr in ("description", "location"):
            if attr in body or op == "calendars.update":
                setattr(cal, attr, body.get(attr))
        cal.etag = self._next_etag()
        return json_response(cal.resource())

    def _calendar_list(self, request: Request, auth: _Auth) -> Response:
        self._check_scope(auth, "calendarList.list", None)
        items = [
            self._list_entry(cal) for cal in self._calendars.values() if cal.owner == auth.email
        ]
        items.sort(key=lambda item: not item.get("primary", False))
        return json_response(
            {"kind": "calendar#calendarList", "etag": self._next_etag(), "items": items}
        )

    def _calendar_list_get(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "calendarList.get")
        return json_response(self._list_entry(cal))

    @staticmethod
    def _list_entry(cal: _Calendar) -> dict[str, Any]:
        entry = cal.resource() | {"kind": "calendar#calendarListEntry", "accessRole": "owner"}
        if cal.primary:
            entry["primary"] = True
        return entry

    @staticmethod
    def _check_time_zone(name: str, param: str) -> None:
        try:
            ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ApiError(400, "invalid", f"Invalid time zone definition for {param}.") from exc

    def _render_event(self, cal: _Calendar, event: _Event) -> dict[str, Any]:
        out = json.loads(json.dumps(event.data))
        out["start"] = event.start.render(cal.tz)
        out["end"] = event.end.render(cal.tz)
        return out

    def _parse_when(self, value: Any, which: str) -> _When:
        if not isinstance(value, dict) or not (value.get("date") or value.get("dateTime")):
            raise ApiError(400, "required", f"Missing {which} time.")
        tz_name = value.get("timeZone") or None
        if tz_name is not None:
            self._check_time_zone(tz_name, f"{which} time")
        if value.get("date"):
            try:
                day = date.fromisoformat(str(value["date"]))
            except ValueError as exc:
                raise ApiError(400, "invalid", f"Invalid {which} time.") from exc
            return _When(date=day.isoformat(), time_zone=tz_name)
        try:
            moment = datetime.fromisoformat(str(value["dateTime"]))
        except ValueError as exc:
            raise ApiError(400, "invalid", f"Invalid {which} time.") from exc
        if moment.tzinfo is None:
            if tz_name is None:
                raise ApiError(400, "required", f"Missing time zone definition for {which} time.")
            moment = moment.replace(tzinfo=ZoneInfo(tz_name))
        return _When(instant=moment.replace(microsecond=0).astimezone(UTC), time_zone=tz_name)

    def _check_range(self, start: _When, end: _When, cal: _Calendar) -> None:
        if (start.date is None) != (end.date is None):
            raise ApiError(
                400, "invalid", "Start and end times must either both be date or both be dateTime."
            )
        tz = cal.tz
        if end.sort_key(tz) < start.sort_key(tz) or (
            start.date is not None and end.sort_key(tz) == start.sort_key(tz)
        ):
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")

    def _touch(self, cal: _Calendar, event: _Event, now: str) -> None:
        event.mod = self._mod + 1
        event.data["etag"] = self._next_etag()
        event.data["updated"] = now
        cal.etag = event.data["etag"]

    def _event(self, cal: _Calendar, event_id: str) -> _Event:
        event = cal.events.get(event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        return event

    def _check_if_match(self, request: Request, event: _Event) -> None:
        wanted = request.header("If-Match")
        if wanted and wanted != "*" and wanted != event.data["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed", location="If-Match")

    def _events_insert(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "events.insert")
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        event_id = body.get("id")
        if event_id is not None:
            event_id = str(event_id)
            if not (5 <= len(event_id) <= 1024) or any(
                ch not in _EVENT_ID_ALPHABET for ch in event_id
            ):
                raise ApiError(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
        else:
            event_id = _random_id()
        start = self._parse_when(body.get("start"), "start")
        end = self._parse_when(body.get("end"), "end")
        self._check_range(start, end, cal)
        now = _rfc3339_ms(self.clock())
        data = {k: v for k, v in body.items() if k not in _SERVER_EVENT_FIELDS | {"start", "end"}}
        eid = _b64url(f"{event_id} {cal.id}".encode())
        data.update(
            kind="calendar#event",
            id=event_id,
            status=body.get("status") or "confirmed",
            htmlLink=f"https://www.google.com/calendar/event?eid={eid}",
            created=now,
            creator={"email": auth.email, "self": True},
            organizer=self._organizer(cal),
            iCalUID=body.get("iCalUID") or f"{event_id}@google.com",
            sequence=0,
            reminders=body.get("reminders") or {"useDefault": True},
            eventType=body.get("eventType") or "default",
        )
        self._seq += 1
        event = _Event(cal.id, data, start, end, seq=self._seq, mod=0)
        self._touch(cal, event, now)
        cal.events[event_id] = event
        return json_response(self._render_event(cal, event))

    @staticmethod
    def _organizer(cal: _Calendar) -> dict[str, Any]:
        organizer: dict[str, Any] = {"email": cal.id, "self": True}
        if not cal.primary:
            organizer["displayName"] = cal.summary
        return organizer

    def _events_get(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.get")
        return json_response(self._render_event(cal, self._event(cal, event_id)))

    def _events_update(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.update")
        event = self._event(cal, event_id)
        self._check_if_match(request, event)
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        start = self._parse_when(body.get("start"), "start")
        end = self._parse_when(body.get("end"), "end")
        self._check_range(start, end, cal)
        kept = {k: event.data[k] for k in _SERVER_EVENT_FIELDS if k in event.data}
        data = {k: v for k, v in body.items() if k not in _SERVER_EVENT_FIELDS | {"start", "end"}}
        data.update(kept)
        # A full update describes the whole event: no status means confirmed,
        # which is how a cancelled event gets restored.
        data["status"] = body.get("status") or "confirmed"
        data["iCalUID"] = event.data["iCalUID"]
        data.setdefault("reminders", {"useDefault": True})
        data.setdefault("eventType", "default")
        self._apply_write(cal, event, data, start, end)
        return json_response(self._render_event(cal, event))

    def _events_patch(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.patch")
        event = self._event(cal, event_id)
        self._check_if_match(request, event)
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        # start/end are replaced as a whole: merging a new dateTime into an old
        # all-day {"date": ...} would produce an invalid mix.
        start = self._parse_when(body["start"], "start") if "start" in body else event.start
        end = self._parse_when(body["end"], "end") if "end" in body else event.end
        self._check_range(start, end, cal)
        data = json.loads(json.dumps(event.data))
        patch = {
            k: v
            for k, v in body.items()
            if k not in _SERVER_EVENT_FIELDS | {"start", "end", "iCalUID"}
        }
        _merge_patch(data, patch)
        data.setdefault("status", "confirmed")
        self._apply_write(cal, event, data, start, end)
        return json_response(self._render_event(cal, event))

    def _apply_write(
        self, cal: _Calendar, event: _Event, data: dict[str, Any], start: _When, end: _When
    ) -> None:
        moved = (start, end) != (event.start, event.end)
        if moved or data.get("status") != event.data.get("status"):
            data["sequence"] = int(event.data.get("sequence", 0)) + 1
        event.data, event.start, event.end = data, start, end
        self._touch(cal, event, _rfc3339_ms(self.clock()))

    def _events_delete(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.delete")
        event = self._event(cal, event_id)
        if event.data.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        self._check_if_match(request, event)
        event.data["status"] = "cancelled"
        event.data["sequence"] = int(event.data.get("sequence", 0)) + 1
        self._touch(cal, event, _rfc3339_ms(self.clock()))
        return Response(204, b"", {})

    def _events_list(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "events.list")
        q = request.query
        sync_token = request.param("syncToken")
        since = 0
        if sync_token:
            clash = {
                "iCalUID",
                "orderBy",
                "privateExtendedProperty",
                "q",
                "sharedExtendedProperty",
                "timeMin",
                "timeMax",
                "updatedMin",
            } & set(q)
            if clash:
                raise ApiError(
                    400, "invalid", f"Sync token cannot be used with {', '.join(sorted(clash))}."
                )
            since = self._decode_token(sync_token, "s")
            if since < self._sync_floor:
                raise ApiError(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                )
        max_results = self._int_param(request, "maxResults", 250, 1)
        max_results = min(max_results, 2500)
        show_deleted = request.param("showDeleted") == "true" or bool(sync_token)
        updated_min = request.param("updatedMin")
        updated_floor = _parse_rfc3339(updated_min, "updatedMin") if updated_min else None
        if updated_floor is not None:
            # Google: with updatedMin, deletions since then are always included.
            show_deleted = True
        time_min = request.param("timeMin")
        time_max = request.param("timeMax")
        lo = _parse_rfc3339(time_min, "timeMin") if time_min else None
        hi = _parse_rfc3339(time_max, "timeMax") if time_max else None
        filters: list[tuple[str, str, str]] = []
        for kind, param in (
            ("private", "privateExtendedProperty"),
            ("shared", "sharedExtendedProperty"),
        ):
            for item in q.get(param, []):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ApiError(400, "invalid", f"Invalid {param} value.")
                filters.append((kind, key, value))
        ical_uid = request.param("iCalUID")
        text = (request.param("q") or "").lower()
        order_by = request.param("orderBy")
        if order_by == "startTime" and request.param("singleEvents") != "true":
            raise ApiError(
                400,
                "badRequest",
                "The requested ordering is not available for the particular query.",
            )
        tz = cal.tz

        def keep(event: _Event) -> bool:
            data = event.data
            if data.get("status") == "cancelled" and not show_deleted:
                return False
            if sync_token and event.mod <= since:
                return False
            if (
                updated_floor is not None
                and datetime.fromisoformat(data["updated"]) < updated_floor
            ):
                return False
            if lo is not None and event.end.sort_key(tz) <= lo:
                return False
            if hi is not None and event.start.sort_key(tz) >= hi:
                return False
            props = data.get("extendedProperties") or {}
            for kind, key, value in filters:
                if (props.get(kind) or {}).get(key) != value:
                    return False
            if ical_uid and data.get("iCalUID") != ical_uid:
                return False
            fields = ("summary", "description", "location")
            return not text or any(text in str(data.get(f) or "").lower() for f in fields)

        events = [e for e in cal.events.values() if keep(e)]
        page_token = request.param("pageToken")
        snapshot = self._decode_token(page_token, "m") if page_token else self._mod
        if order_by in ("startTime", "updated"):
            if order_by == "startTime":
                events.sort(key=lambda e: (e.start.sort_key(tz), e.seq))
            else:
                events.sort(key=lambda e: (e.data["updated"], e.seq))
            offset = self._decode_token(page_token, "o") if page_token else 0
            page, rest = events[offset : offset + max_results], events[offset + max_results :]
            next_token = (
                self._encode_token({"o": offset + max_results, "m": snapshot}) if rest else None
            )
        else:
            # Keyset paging by insertion order stays stable while events are
            # being written between pages (offsets would skip or repeat).
            events.sort(key=lambda e: e.seq)
            after = self._decode_token(page_token, "a") if page_token else 0
            events = [e for e in events if e.seq > after]
            page, rest = events[:max_results], events[max_results:]
            next_token = (
                self._encode_token({"a": page[-1].seq, "m": snapshot}) if rest and page else None
            )
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": cal.etag,
            "summary": cal.summary,
            "updated": _rfc3339_ms(self.clock()),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": [self._render_event(cal, e) for e in page],
        }
        if cal.description:
            body["description"] = cal.description
        if next_token:
            body["nextPageToken"] = next_token
        else:
            body["nextSyncToken"] = self._encode_token({"s": snapshot})
        return json_response(body)

    @staticmethod
    def _encode_token(payload: dict[str, int]) -> str:
        return _b64url(json.dumps(payload, separators=(",", ":")).encode())

    @staticmethod
    def _decode_token(token: str, key: str) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            return int(json.loads(base64.urlsafe_b64decode(padded))[key])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "invalid", "Invalid page or sync token.") from exc

    @staticmethod
    def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
        raw = request.param(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid", f"Invalid value for {name}.") from exc
        if value < minimum:
            raise ApiError(400, "invalid", f"Invalid value for {name}.")
        return value
