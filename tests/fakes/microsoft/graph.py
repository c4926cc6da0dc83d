"""Microsoft Graph v1.0 calendar API part of the fake: me, calendars, events, calendarView.

``GraphMixin`` is mixed into ``FakeMicrosoft``; query options live in ``odata``.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakes.faults import Fault, run_with_fault
from tests.fakes.microsoft.model import (
    _CALENDAR_PROPS,
    _ID_RE,
    _ODATA_JSON,
    _READ_ONLY_EVENT_PROPS,
    _SELECTABLE_EVENT_PROPS,
    _WRITABLE_EVENT_PROPS,
    GRAPH_APP_ID,
    GRAPH_HOST,
    GraphCall,
    _Calendar,
    _Event,
    _graph_error,
    _GraphRequest,
    _Token,
    _User,
)
from tests.fakes.microsoft.odata import _LITERAL, _ext_key, _filter_error, _quote_literal
from tests.fakes.microsoft.values import (
    _graph_time,
    _html_to_text,
    _parse_iso,
    _parse_when,
    _preview,
    _resolve_zone,
    _text_to_html,
    _wall_time,
)
from tests.fakes.server import (
    HTTPError,
    Request,
    Response,
    empty_response,
    json_response,
)


class GraphMixin:
    """Graph routes and the event and calendar semantics (see the package docstring)."""

    @staticmethod
    def _new_id(prefix: str = "AAMkAGE") -> str:
        return prefix + base64.urlsafe_b64encode(secrets.token_bytes(105)).decode("ascii")

    @staticmethod
    def _change_key() -> str:
        return "DwAAABYAAAA" + base64.b64encode(secrets.token_bytes(18)).decode("ascii")

    def _handle_graph(self, request: Request) -> Response:
        sub_path = request.path[len("/v1.0") :] or "/"
        headers = {key.lower(): str(value) for key, value in request.headers.items()}
        if sub_path.rstrip("/") == "/$batch":
            self.stats.incr("batch", "graph_round_trips")
            return run_with_fault(
                self.faults.decide("batch_envelope"),
                lambda: self._batch(request, headers),
                self._graph_fault_response,
                self.faults.drop_mode,
            )
        self.stats.incr("graph", "graph_round_trips")
        call = _GraphRequest(request.method, sub_path, request.query, headers, request.body)
        return run_with_fault(
            self.faults.decide("graph"),
            lambda: self._graph_call(call),
            self._graph_fault_response,
            self.faults.drop_mode,
        )

    def _graph_fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.kind == "rate_limit":
            headers.setdefault("Retry-After", str(int(self.faults.retry_after)))
            return _graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                headers,
            )
        if fault.kind == "quota":
            return _graph_error(
                403,
                "ErrorQuotaExceeded",
                "The process failed to get the correct properties.",
                headers,
            )
        codes = {
            500: ("UnknownError", "An internal server error occurred."),
            502: ("BadGateway", "Bad gateway."),
            503: ("ServiceNotAvailable", "The service is temporarily unavailable."),
            504: ("GatewayTimeout", "The gateway did not receive a response in time."),
        }
        code, message = codes.get(status, ("UnknownError", f"Injected HTTP {status}."))
        return _graph_error(status, code, message, headers)

    def _graph_call(self, call: _GraphRequest) -> Response:
        op = "unknown"
        email: str | None = None
        try:
            with self._lock:
                token = self._authenticate(call)
                email = token.email
                user = self._users[token.email]
                op, handler = self._graph_route(call, user)
                if op != "me.get":
                    # /me is granted to any token (User.Read is in every app's defaults).
                    self._check_scope(token, call.method)
                response = handler()
        except HTTPError as exc:
            response = exc.response
        self.stats.incr("graph_ops", op)
        with self._lock:
            self.calls.append(
                GraphCall(op, call.method, call.path, response.status, call.in_batch, email)
            )
        response.headers.setdefault("request-id", str(uuid.uuid4()))
        response.headers.setdefault(
            "client-request-id", call.headers.get("client-request-id") or str(uuid.uuid4())
        )
        return response

    def _authenticate(self, call: _GraphRequest) -> _Token:
        header = call.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        challenge = {
            "WWW-Authenticate": (
                f'Bearer realm="", authorization_uri="{self._authority_host}/common/'
                f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            )
        }
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPError(
                _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
            )
        token = self._tokens.get(value.strip())
        if token is None or token.kind != "access":
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "IDX14100: JWT is not well formed, or the token is not known.",
                    challenge,
                )
            )
        if token.epoch != self._users[token.email].grant_epoch:
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                    challenge,
                )
            )
        if self.clock() >= token.expires_at:
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                    challenge,
                )
            )
        return token

    def _check_scope(self, token: _Token, method: str) -> None:
        scopes = set(token.scopes)
        allowed = (
            {"Calendars.ReadWrite"}
            if method != "GET"
            else {
                "Calendars.ReadWrite",
                "Calendars.Read",
            }
        )
        if scopes & allowed:
            return
        raise HTTPError(
            _graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        )

    def _graph_route(self, call: _GraphRequest, user: _User) -> tuple[str, Callable[[], Response]]:
        segments = [urllib.parse.unquote(s) for s in call.path.split("/") if s]
        if len(segments) >= 2 and segments[0].lower() == "users":
            target = segments[1].lower()
            if target not in (user.oid, user.email):
                raise HTTPError(
                    _graph_error(
                        403,
                        "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.",
                    )
                )
            segments = ["me", *segments[2:]]
        if not segments or segments[0] != "me":
            first = segments[0] if segments else ""
            raise HTTPError(
                _graph_error(400, "BadRequest", f"Resource not found for the segment '{first}'.")
            )
        rest = segments[1:]
        method = call.method
        default = user.default_calendar_id

        def pick(
            table: dict[str, tuple[str, Callable[[], Response]]],
        ) -> tuple[str, Callable[[], Response]]:
            if method not in table:
                raise HTTPError(
                    _graph_error(
                        405,
                        "Request_BadRequest",
                        "Specified HTTP method is not allowed for the request target.",
                    )
                )
            return table[method]

        match rest:
            case []:
                return pick({"GET": ("me.get", lambda: self._me(user))})
            case ["calendars"]:
                return pick(
                    {
                        "GET": ("calendars.list", lambda: self._calendars_list(call, user)),
                        "POST": ("calendars.create", lambda: self._calendars_create(call, user)),
                    }
                )
            case ["calendar"]:
                return pick(
                    {"GET": ("calendars.get", lambda: self._calendar_get(call, user, default))}
                )
            case ["calendars", cid]:
                return pick(
                    {
                        "GET": ("calendars.get", lambda: self._calendar_get(call, user, cid)),
                        "PATCH": (
                            "calendars.update",
                            lambda: self._calendar_update(call, user, cid),
                        ),
                        "DELETE": (
                            "calendars.delete",
                            lambda: self._calendar_delete(call, user, cid),
                        ),
                    }
                )
            case ["calendars", cid, "events"]:
                return pick(self._events_table(call, user, cid))
            case ["calendar", "events"] | ["events"]:
                return pick(self._events_table(call, user, default))
            case ["calendars", cid, "events", eid]:
                return pick(self._event_table(call, user, eid, cid))
            case ["calendar", "events", eid]:
                return pick(self._event_table(call, user, eid, default))
            case ["events", eid]:
                return pick(self._event_table(call, user, eid, None))
            case ["calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, None))}
                )
            case ["calendar", "calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, default))}
                )
            case ["calendars", cid, "calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, cid))}
                )
        raise HTTPError(
            _graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment '{rest[-1] if rest else 'me'}'.",
            )
        )

    def _events_table(
        self, call: _GraphRequest, user: _User, calendar_id: str
    ) -> dict[str, tuple[str, Callable[[], Response]]]:
        return {
            "GET": ("events.list", lambda: self._events_list(call, user, calendar_id)),
            "POST": ("events.create", lambda: self._events_create(call, user, calendar_id)),
        }

    def _event_table(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> dict[str, tuple[str, Callable[[], Response]]]:
        return {
            "GET": ("events.get", lambda: self._event_get(call, user, event_id, calendar_id)),
            "PATCH": (
                "events.update",
                lambda: self._event_update(call, user, event_id, calendar_id),
            ),
            "DELETE": (
                "events.delete",
                lambda: self._event_delete(call, user, event_id, calendar_id),
            ),
        }

    def _context(self, user: _User, suffix: str) -> str:
        return f"{self.graph_endpoint}/$metadata#users('{user.oid}')/{suffix}"

    def _render_me(self, user: _User) -> dict[str, Any]:
        given, _, surname = user.display_name.partition(" ")
        return {
            "@odata.context": f"{self.graph_endpoint}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": given,
            "jobTitle": None,
            "mail": user.email,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": user.email,
            "id": user.oid,
        }

    def _render_calendar(self, user: _User, cal: _Calendar) -> dict[str, Any]:
        return {
            "@odata.etag": f'W/"{cal.change_key}"',
            "id": cal.id,
            "name": cal.name,
            "color": cal.color,
            "hexColor": "",
            "isDefaultCalendar": cal.is_default,
            "changeKey": cal.change_key,
            "canShare": True,
            "canViewPrivateItems": True,
            "canEdit": True,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"],
            "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": True,
            "isRemovable": not cal.is_default,
            "owner": {"name": user.display_name, "address": user.email},
        }

    def _render_event(
        self,
        user: _User,
        event: _Event,
        *,
        zone: ZoneInfo | None = None,
        zone_name: str = "UTC",
        text_body: bool = False,
        ext_ids: list[tuple[str, ...]] | None = None,
        all_ext: bool = False,
    ) -> dict[str, Any]:
        props = event.props
        rendered: dict[str, Any] = {
            "@odata.etag": f'W/"{event.change_key}"',
            "id": event.id,
            "createdDateTime": _graph_time(event.created),
            "lastModifiedDateTime": _graph_time(event.modified),
            "changeKey": event.change_key,
            "categories": list(props.get("categories", [])),
            "originalStartTimeZone": props.get("originalStartTimeZone", event.start_zone),
            "originalEndTimeZone": props.get("originalEndTimeZone", event.end_zone),
            "iCalUId": event.ical_uid,
            "reminderMinutesBeforeStart": props.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": props.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": props.get("subject", ""),
            "bodyPreview": _preview(event.body_text),
            "importance": props.get("importance", "normal"),
            "sensitivity": props.get("sensitivity", "normal"),
            "isAllDay": props.get("isAllDay", False),
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": props.get("responseRequested", True),
            "seriesMasterId": None,
            "showAs": props.get("showAs", "busy"),
            "type": "seriesMaster" if props.get("recurrence") else "singleInstance",
            "webLink": (
                "https://outlook.office365.com/owa/?itemid="
                f"{urllib.parse.quote(event.id, safe='')}&exvsurl=1&path=/calendar/item"
            ),
            "onlineMeetingUrl": None,
            "isOnlineMeeting": props.get("isOnlineMeeting", False),
            "onlineMeetingProvider": props.get("onlineMeetingProvider", "unknown"),
            "allowNewTimeProposals": props.get("allowNewTimeProposals", True),
            "occurrenceId": None,
            "isDraft": False,
            "hideAttendees": props.get("hideAttendees", False),
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": (
                {"contentType": "text", "content": event.body_text}
                if text_body
                else {"contentType": "html", "content": event.body_html}
            ),
            "start": {"dateTime": _wall_time(event.start, zone), "timeZone": zone_name},
            "end": {"dateTime": _wall_time(event.end, zone), "timeZone": zone_name},
            "location": props.get(
                "location",
                {
                    "displayName": "",
                    "locationType": "default",
                    "uniqueIdType": "unknown",
                    "address": {},
                    "coordinates": {},
                },
            ),
            "locations": list(props.get("locations", [])),
            "recurrence": props.get("recurrence"),
            "attendees": list(props.get("attendees", [])),
            "organizer": {"emailAddress": {"name": user.display_name, "address": user.email}},
            "onlineMeeting": None,
        }
        if event.transaction_id is not None:
            rendered["transactionId"] = event.transaction_id
        if all_ext:
            chosen = list(event.ext.values())
        else:
            chosen = [event.ext[key] for key in ext_ids or [] if key in event.ext]
        if chosen:
            rendered["singleValueExtendedProperties"] = [
                {"id": prop_id, "value": value} for prop_id, value in chosen
            ]
        # Callers may mutate what they get; stored lists and dicts must not follow.
        return copy.deepcopy(rendered)

    def _prefer(self, call: _GraphRequest) -> tuple[ZoneInfo | None, str, bool, bool, list[str]]:
        prefer = call.headers.get("prefer", "")
        applied: list[str] = []
        zone: ZoneInfo | None = None
        zone_name = "UTC"
        match = re.search(r'outlook\.timezone\s*=\s*"([^"]+)"', prefer, re.IGNORECASE)
        if match:
            zone = _resolve_zone(match.group(1))
            zone_name = match.group(1)
            applied.append(f'outlook.timezone="{zone_name}"')
        text = bool(re.search(r'outlook\.body-content-type\s*=\s*"?text"?', prefer, re.IGNORECASE))
        if text:
            applied.append('outlook.body-content-type="text"')
        minimal = bool(re.search(r"return\s*=\s*minimal", prefer, re.IGNORECASE))
        return zone, zone_name, text, minimal, applied

    def _event_json(
        self,
        call: _GraphRequest,
        user: _User,
        event: _Event,
        ext_ids: list[tuple[str, ...]] | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        zone, zone_name, text, _minimal, applied = self._prefer(call)
        rendered = self._render_event(
            user, event, zone=zone, zone_name=zone_name, text_body=text, ext_ids=ext_ids
        )
        return rendered, applied

    def _ok(
        self,
        body: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
        applied: list[str] | None = None,
    ) -> Response:
        all_headers = {
            "Content-Type": _ODATA_JSON,
            "OData-Version": "4.0",
            "Cache-Control": "private",
        }
        if applied:
            all_headers["Preference-Applied"] = ", ".join(applied)
        if "@odata.etag" in body:
            all_headers["ETag"] = str(body["@odata.etag"])
        all_headers.update(headers or {})
        return json_response(body, status, all_headers)

    def _me(self, user: _User) -> Response:
        return self._ok(self._render_me(user))

    def _calendar(self, user: _User, calendar_id: str) -> _Calendar:
        cal = user.calendars.get(calendar_id)
        if cal is None:
            if not _ID_RE.match(calendar_id):
                raise HTTPError(_graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed."))
            raise HTTPError(
                _graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            )
        return cal

    def _calendars_list(self, call: _GraphRequest, user: _User) -> Response:
        names = self._select(call, _CALENDAR_PROPS, "calendar")
        cals = list(user.calendars.values())
        raw = call.param("$filter")
        if raw is not None:
            match = re.fullmatch(r"\s*name\s+(eq|ne)\s+" + _LITERAL + r"\s*", raw)
            if match is None:
                raise _filter_error(raw)
            wanted = _quote_literal(match.group(2)).lower()
            equal = match.group(1) == "eq"
            cals = [c for c in cals if (c.name.lower() == wanted) == equal]
        items = [self._apply_select(self._render_calendar(user, c), names) for c in cals]
        return self._page(call, items, self._context(user, "calendars"))

    def _calendar_name(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise HTTPError(_graph_error(400, "BadRequest", "A JSON object is expected."))
        unknown = [key for key in body if key not in _CALENDAR_PROPS and not key.startswith("@")]
        if unknown:
            raise HTTPError(
                _graph_error(
                    400,
                    "RequestBodyRead",
                    f"The property '{unknown[0]}' does not exist on type "
                    "'microsoft.graph.calendar'. Make sure to only use property names that "
                    "are defined by the type.",
                )
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HTTPError(
                _graph_error(400, "ErrorInvalidRequest", "The calendar name cannot be empty.")
            )
        return name

    def _check_unique_name(self, user: _User, name: str, except_id: str | None = None) -> None:
        for cal in user.calendars.values():
            if cal.id != except_id and cal.name.lower() == name.lower():
                raise HTTPError(
                    _graph_error(
                        409, "ErrorFolderExists", "A folder with the specified name already exists."
                    )
                )

    def _calendars_create(self, call: _GraphRequest, user: _User) -> Response:
        body = call.json()
        name = self._calendar_name(body)
        self._check_unique_name(user, name)
        cal = _Calendar(self._new_id("AAMkAGI"), name, self._change_key())
        if isinstance(body.get("color"), str):
            cal.color = body["color"]
        user.calendars[cal.id] = cal
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._render_calendar(user, cal))
        return self._ok(rendered, 201)

    def _calendar_get(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        names = self._select(call, _CALENDAR_PROPS, "calendar")
        cal = self._calendar(user, calendar_id)
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._apply_select(self._render_calendar(user, cal), names))
        return self._ok(rendered)

    def _check_if_match(self, call: _GraphRequest, change_key: str) -> None:
        wanted = call.headers.get("if-match")
        if wanted is None or wanted.strip() == "*":
            return
        tags = [t.strip() for t in wanted.split(",")]
        normalised = {t.removeprefix("W/").strip('"') for t in tags}
        if change_key not in normalised:
            raise HTTPError(
                _graph_error(
                    412,
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change "
                    "key passed in the request does not match the current change key for the "
                    "item.",
                )
            )

    def _calendar_update(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        self._check_if_match(call, cal.change_key)
        body = call.json()
        if "name" in body:
            name = self._calendar_name(body)
            self._check_unique_name(user, name, except_id=cal.id)
            cal.name = name
        if isinstance(body.get("color"), str):
            cal.color = body["color"]
        cal.change_key = self._change_key()
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._render_calendar(user, cal))
        return self._ok(rendered)

    def _calendar_delete(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        self._check_if_match(call, cal.change_key)
        if cal.is_default:
            raise HTTPError(
                _graph_error(
                    400, "ErrorCannotDeleteObject", "The default calendar cannot be deleted."
                )
            )
        del user.calendars[cal.id]
        for event_id in [e.id for e in user.events.values() if e.calendar_id == cal.id]:
            del user.events[event_id]
        return empty_response(204)

    def _find_event(self, user: _User, event_id: str, calendar_id: str | None) -> _Event:
        if calendar_id is not None:
            self._calendar(user, calendar_id)
        event = user.events.get(event_id)
        if event is None or (calendar_id is not None and event.calendar_id != calendar_id):
            if not _ID_RE.match(event_id):
                raise HTTPError(_graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed."))
            raise HTTPError(
                _graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            )
        return event

    def _touch(self, event: _Event) -> None:
        event.change_key = self._change_key()
        now = datetime.fromtimestamp(self.clock(), UTC)
        # Keep lastModifiedDateTime strictly increasing even within one clock tick.
        event.modified = max(now, event.modified + timedelta(microseconds=1))

    def _validate_event_body(self, body: Any, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(_graph_error(400, "BadRequest", "A JSON object is expected."))
        for key, value in body.items():
            check = _WRITABLE_EVENT_PROPS.get(key)
            if check is None:
                if key in _READ_ONLY_EVENT_PROPS or key.startswith("@odata."):
                    continue
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBodyRead",
                        f"The property '{key}' does not exist on type 'microsoft.graph.event'. "
                        "Make sure to only use property names that are defined by the type or "
                        "mark the type as open type.",
                    )
                )
            if not check(value):
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBodyRead",
                        f"Cannot convert the literal '{value}' to the expected type of "
                        f"property '{key}' on 'microsoft.graph.event'.",
                    )
                )
        if "body" in body and str(body["body"].get("contentType", "text")).lower() not in (
            "text",
            "html",
        ):
            raise HTTPError(
                _graph_error(
                    400,
                    "RequestBodyRead",
                    f"Cannot convert the literal '{body['body'].get('contentType')}' to the "
                    "expected type 'microsoft.graph.bodyType'.",
                )
            )
        if creating and ("start" not in body or "end" not in body):
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "Your request can't be completed. Start and End must be specified.",
                )
            )
        return body

    def _apply_event_changes(
        self, user: _User, event: _Event, body: dict[str, Any], *, creating: bool
    ) -> None:
        body = self._validate_event_body(body, creating)
        start, end = event.start, event.end
        start_zone, end_zone = event.start_zone, event.end_zone
        if "start" in body:
            start, start_zone = _parse_when(body["start"], "start")
        if "end" in body:
            end, end_zone = _parse_when(body["end"], "end")
        if end < start:
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorCalendarEndDateIsEarlierThanStartDate",
                    "The end date occurs before the start date.",
                )
            )
        ext_updates: dict[tuple[str, ...], tuple[str, str | None]] = {}
        for item in body.get("singleValueExtendedProperties", []):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise HTTPError(
                    _graph_error(
                        400, "RequestBodyRead", "singleValueExtendedProperties items need an 'id'."
                    )
                )
            value = item.get("value")
            if value is not None and not isinstance(value, str):
                raise HTTPError(
                    _graph_error(400, "RequestBodyRead", "Extended property values are strings.")
                )
            ext_updates[_ext_key(item["id"])] = (item["id"], value)
        if (
            "transactionId" in body
            and not creating
            and body["transactionId"] != event.transaction_id
        ):
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "The transactionId of an event cannot be changed after creation.",
                )
            )
        # Validation is complete: from here on nothing can fail half-way.
        event.start, event.end = start, end
        event.start_zone, event.end_zone = start_zone, end_zone
        if "body" in body:
            content = body["body"].get("content") or ""
            if str(body["body"].get("contentType", "text")).lower() == "html":
                event.body_html = (
                    content
                    if "<html" in content.lower()
                    else f"<html><body>{content}</body></html>"
                )
                event.body_text = _html_to_text(content)
            else:
                event.body_text = str(content)
                event.body_html = _text_to_html(str(content))
        for key, (prop_id, value) in ext_updates.items():
            if value is None:
                event.ext.pop(key, None)
            else:
                previous = event.ext.get(key)
                event.ext[key] = (previous[0] if previous else prop_id, value)
        for key, value in body.items():
            if key in ("start", "end", "body", "singleValueExtendedProperties"):
                continue
            if key == "transactionId":
                if creating:
                    event.transaction_id = value
                continue
            if key in _WRITABLE_EVENT_PROPS:
                event.props[key] = value
        if "start" in body and "originalStartTimeZone" not in body:
            event.props.pop("originalStartTimeZone", None)
        if "end" in body and "originalEndTimeZone" not in body:
            event.props.pop("originalEndTimeZone", None)

    def _create_event(self, user: _User, cal: _Calendar, body: Any) -> _Event:
        now = datetime.fromtimestamp(self.clock(), UTC)
        event = _Event(
            id=self._new_id(),
            calendar_id=cal.id,
            change_key=self._change_key(),
            created=now,
            modified=now,
            ical_uid="040000008200E00074C5B7101A82E00800000000"
            + secrets.token_hex(8).upper()
            + "0000000000000000100000000"
            + secrets.token_hex(16).upper(),
            start=now,
            end=now,
            start_zone="UTC",
            end_zone="UTC",
        )
        self._apply_event_changes(user, event, body, creating=True)
        user.events[event.id] = event
        if event.transaction_id:
            user.transactions[event.transaction_id] = event.id
        return event

    def _events_create(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        body = call.json()
        tx = body.get("transactionId") if isinstance(body, dict) else None
        existing_id = user.transactions.get(tx) if isinstance(tx, str) and tx else None
        event = user.events.get(existing_id) if existing_id else None
        if event is None:
            event = self._create_event(user, cal, body)
        rendered, applied = self._event_json(call, user, event)
        body_out = {"@odata.context": self._context(user, f"calendars('{cal.id}')/events/$entity")}
        body_out.update(rendered)
        location = f"{GRAPH_HOST}/v1.0/Users('{user.oid}')/Events('{event.id}')"
        return self._ok(body_out, 201, {"Location": location}, applied)

    def _event_get(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        names = self._select(call, _SELECTABLE_EVENT_PROPS, "event")
        ext_ids = self._expand_ids(call)
        event = self._find_event(user, event_id, calendar_id)
        rendered, applied = self._event_json(call, user, event, ext_ids)
        body = {"@odata.context": self._context(user, "events/$entity")}
        body.update(self._apply_select(rendered, names))
        return self._ok(body, applied=applied)

    def _event_update(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        event = self._find_event(user, event_id, calendar_id)
        self._check_if_match(call, event.change_key)
        body = call.json()
        self._apply_event_changes(user, event, body, creating=False)
        self._touch(event)
        _zone, _name, _text, minimal, applied = self._prefer(call)
        if minimal:
            return Response(204, b"", {"Preference-Applied": "return=minimal"})
        rendered, applied = self._event_json(call, user, event)
        out = {"@odata.context": self._context(user, "events/$entity")}
        out.update(rendered)
        return self._ok(out, applied=applied)

    def _event_delete(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        event = self._find_event(user, event_id, calendar_id)
        self._check_if_match(call, event.change_key)
        del user.events[event.id]
        if event.transaction_id and user.transactions.get(event.transaction_id) == event.id:
            del user.transactions[event.transaction_id]
        return empty_response(204)

    def _events_list(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        events = [e for e in user.events.values() if e.calendar_id == cal.id]
        return self._event_collection(
            call, user, events, self._context(user, f"calendars('{cal.id}')/events")
        )

    def _event_collection(
        self, call: _GraphRequest, user: _User, events: list[_Event], context: str
    ) -> Response:
        names = self._select(call, _SELECTABLE_EVENT_PROPS, "event")
        ext_ids = self._expand_ids(call)
        test = self._event_filter(call.param("$filter"))
        chosen = self._order(call, [e for e in events if test(e)])
        items = []
        for event in chosen:
            rendered, _applied = self._event_json(call, user, event, ext_ids)
            items.append(self._apply_select(rendered, names))
        return self._page(call, items, context)

    def _calendar_view(self, call: _GraphRequest, user: _User, calendar_id: str | None) -> Response:
        raw_start = call.param("startDateTime") or call.param("startdatetime")
        raw_end = call.param("endDateTime") or call.param("enddatetime")
        if not raw_start or not raw_end:
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string "
                    "parameters StartDateTime and EndDateTime.",
                )
            )
        try:
            window_start, window_end = _parse_iso(raw_start), _parse_iso(raw_end)
        except ValueError as exc:
            raise HTTPError(
                _graph_error(400, "ErrorInvalidParameter", "Invalid StartDateTime/EndDateTime.")
            ) from exc
        if window_start.tzinfo is None:
            window_start = window_start.replace(tzinfo=UTC)
        if window_end.tzinfo is None:
            window_end = window_end.replace(tzinfo=UTC)
        if calendar_id is not None:
            self._calendar(user, calendar_id)
        events = [
            e
            for e in user.events.values()
            if (calendar_id is None or e.calendar_id == calendar_id)
            and e.start < window_end
            and e.end > window_start
        ]
        events.sort(key=lambda e: e.start)
        return self._event_collection(call, user, events, self._context(user, "calendarView"))
