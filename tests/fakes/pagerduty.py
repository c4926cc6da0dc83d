"""A fake PagerDuty REST API v2 (`GET /oncalls` and `GET /users/{id}`) on 127.0.0.1.

Written from PagerDuty's public API reference ("List all of the on-calls"):

* Authentication: `Authorization: Token token=<key>`; anything else is 401 with
  `{"error": {"message": "Unauthorized", "code": 2006}}` (PagerDuty's error object).
  `Accept: application/vnd.pagerduty+json;version=2` is what clients send; the fake
  records it.
* Query: `since`, `until` (ISO 8601; the span may be at most 90 days, else 400
  `Invalid Input Provided` with code 2001), `schedule_ids[]`, `escalation_policy_ids[]`,
  `user_ids[]`, `include[]=users` (embed full user objects with `email`), `time_zone`,
  classic paging with `limit` (default 25, at most 100), `offset` and the answer's
  `more`, `limit`, `offset`, `total` (null unless `total=true`).
* Each entry: `escalation_policy` and `schedule` references (`schedule` null for a user
  who is always on call on a level), `escalation_level`, `user` (a `user_reference`, or a
  full `user` with `include[]=users`), `start` and `end` (ISO 8601; null for
  permanent on-calls). Entries overlapping [since, until) are listed with their own
  start and end, ordered by escalation level and start.
* Rate limit: `fail_next(count, 429)` answers 429 with `Retry-After` and
  `{"error": {"message": "Rate Limit Exceeded", "code": 2020}}`.

`add_user(...)` and `add_oncall(...)` set up the account; `requests` records every
request's path and query for assertions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.faults import Faults, run_with_fault
from tests.fakes.server import FakeHTTPServer, Request, Response, json_response

__all__ = ["FakePagerDuty"]

MAX_SPAN = timedelta(days=90)


@dataclass
class _User:
    id: str
    name: str
    email: str


@dataclass
class _OnCall:
    schedule_id: str | None
    schedule_name: str
    policy_id: str
    level: int
    user_id: str
    start: datetime | None
    end: datetime | None


def _error(status: int, message: str, code: int, errors: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"error": {"message": message, "code": code}}
    if errors:
        body["error"]["errors"] = errors
    return json_response(body, status)


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FakePagerDuty(FakeHTTPServer):
    """PagerDuty's on-calls endpoint with one account, one API key."""

    def __init__(self, api_key: str = "pd-test-key-0123456789") -> None:
        super().__init__()
        self.api_key = api_key
        self.faults = Faults(targets=("api",))
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._oncalls: list[_OnCall] = []
        self.requests: list[Request] = []

    @property
    def api_base(self) -> str:
        """What PAGERDUTY_API_BASE is set to for this fake."""
        return self.url

    def add_user(self, user_id: str, name: str, email: str) -> None:
        """Create a PagerDuty user."""
        with self._lock:
            self._users[user_id] = _User(user_id, name, email)

    def add_oncall(
        self,
        user_id: str,
        start: datetime | None,
        end: datetime | None,
        *,
        schedule_id: str | None = "PI7DH85",
        schedule_name: str = "Payments Primary",
        level: int = 1,
        policy_id: str = "P8MB3QZ",
    ) -> None:
        """Put a user on call (what schedules, overrides and rules would compute to)."""
        with self._lock:
            self._oncalls.append(
                _OnCall(schedule_id, schedule_name, policy_id, level, user_id, start, end)
            )

    def clear_oncalls(self) -> None:
        """Remove every on-call entry (e.g. before a changed schedule is set up)."""
        with self._lock:
            self._oncalls.clear()

    def fail_next(self, count: int = 1, status: int = 503, **kwargs: Any) -> None:
        """Shortcut for `faults.fail_next`."""
        self.faults.fail_next(count, status, **kwargs)

    def handle(self, request: Request) -> Response:
        """Route one request."""
        with self._lock:
            self.requests.append(request)
        value = request.header("Authorization") or ""
        if value != f"Token token={self.api_key}":
            return _error(401, "Unauthorized", 2006)
        fault = self.faults.decide("api")
        if request.method == "GET" and request.path == "/oncalls":
            return run_with_fault(fault, lambda: self._oncalls_list(request), self._fault_response)
        return _error(404, "Not Found", 2100)

    def _fault_response(self, fault: Any) -> Response:
        if fault.kind == "rate_limit":
            response = _error(429, "Rate Limit Exceeded", 2020)
            response.headers["Retry-After"] = str(int(fault.retry_after or 1))
            return response
        return _error(fault.status or 500, "Internal Server Error", 2000)

    def _oncalls_list(self, request: Request) -> Response:
        try:
            since = datetime.fromisoformat(request.param("since") or "")
            until = datetime.fromisoformat(request.param("until") or "")
            limit = int(request.param("limit") or 25)
            offset = int(request.param("offset") or 0)
        except ValueError:
            return _error(400, "Invalid Input Provided", 2001, ["Invalid since, until or paging"])
        if until <= since or until - since > MAX_SPAN:
            return _error(
                400, "Invalid Input Provided", 2001, ["Until must be within 90 days of since"]
            )
        if not 1 <= limit <= 100 or offset < 0:
            return _error(400, "Invalid Input Provided", 2001, ["Limit must be 1 to 100"])
        schedules = set(request.query.get("schedule_ids[]", []))
        users = set(request.query.get("user_ids[]", []))
        embed = "users" in request.query.get("include[]", [])
        with self._lock:
            found = [
                entry
                for entry in self._oncalls
                if (not schedules or entry.schedule_id in schedules)
                and (not users or entry.user_id in users)
                and (entry.start is None or entry.start < until)
                and (entry.end is None or entry.end > since)
            ]
            found.sort(key=lambda e: (e.level, e.start or since))
            page = [self._render(entry, embed) for entry in found[offset : offset + limit]]
        body = {
            "oncalls": page,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(found),
            "total": len(found) if request.param("total") == "true" else None,
        }
        return json_response(body)

    def _render(self, entry: _OnCall, embed: bool) -> dict[str, Any]:
        user = self._users[entry.user_id]
        base = self.url
        if embed:
            rendered_user: dict[str, Any] = {
                "id": user.id, "type": "user", "summary": user.name, "name": user.name,
                "email": user.email, "time_zone": "Europe/Berlin",
                "self": f"{base}/users/{user.id}",
                "html_url": f"https://acme.pagerduty.com/users/{user.id}",
            }  # fmt: skip
        else:
            rendered_user = {
                "id": user.id, "type": "user_reference", "summary": user.name,
                "self": f"{base}/users/{user.id}",
                "html_url": f"https://acme.pagerduty.com/users/{user.id}",
            }  # fmt: skip
        schedule = None
        if entry.schedule_id is not None:
            schedule = {
                "id": entry.schedule_id, "type": "schedule_reference",
                "summary": entry.schedule_name,
                "self": f"{base}/schedules/{entry.schedule_id}",
                "html_url": f"https://acme.pagerduty.com/schedules/{entry.schedule_id}",
            }  # fmt: skip
        return {
            "escalation_policy": {
                "id": entry.policy_id,
                "type": "escalation_policy_reference",
                "summary": "Payments",
                "self": f"{base}/escalation_policies/{entry.policy_id}",
                "html_url": f"https://acme.pagerduty.com/escalation_policies/{entry.policy_id}",
            },
            "escalation_level": entry.level,
            "schedule": schedule,
            "user": rendered_user,
            "start": _stamp(entry.start),
            "end": _stamp(entry.end),
        }
