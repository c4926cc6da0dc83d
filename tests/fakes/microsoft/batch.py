"""Graph JSON batching (``POST /v1.0/$batch``) part of the fake.

``BatchMixin`` is mixed into ``FakeMicrosoft``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from tests.fakes.faults import run_with_fault
from tests.fakes.microsoft.model import _ODATA_JSON, _graph_error, _GraphRequest
from tests.fakes.server import (
    HTTPError,
    Request,
    Response,
    json_response,
)

MAX_BATCH = 20


class BatchMixin:
    """``$batch``: up to 20 members, ``dependsOn``, a fault decision per member."""

    def _batch(self, request: Request, headers: dict[str, str]) -> Response:
        if request.method != "POST":
            return _graph_error(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        envelope = _GraphRequest("POST", "/$batch", request.query, headers, request.body)
        with self._lock:
            # The envelope itself is authenticated before any member runs.
            try:
                self._authenticate(envelope)
            except HTTPError as exc:
                return exc.response
        payload = envelope.json()
        members = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(members, list) or not members:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        if len(members) > MAX_BATCH:
            return _graph_error(
                400, "BadRequest", f"Maximum number of requests in a batch is {MAX_BATCH}."
            )
        seen: set[str] = set()
        for member in members:
            if not isinstance(member, dict) or not all(
                isinstance(member.get(k), str) and member.get(k) for k in ("id", "method", "url")
            ):
                return _graph_error(400, "BadRequest", "Invalid batch payload format.")
            member_id = member["id"].lower()
            if member_id in seen:
                return _graph_error(
                    400, "BadRequest", f"Batch request contains duplicate id '{member['id']}'."
                )
            seen.add(member_id)
            member_headers = {
                str(k).lower(): str(v) for k, v in (member.get("headers") or {}).items()
            }
            if member["method"].upper() in ("POST", "PATCH", "PUT") and (
                "body" not in member or "content-type" not in member_headers
            ):
                return _graph_error(
                    400,
                    "BadRequest",
                    f"Write request id : {member['id']} does not contain Content-Type header "
                    "or body.",
                )
        for member in members:
            for dependency in member.get("dependsOn") or []:
                if str(dependency).lower() not in seen:
                    return _graph_error(
                        400, "BadRequest", f"Request id '{dependency}' in dependsOn was not found."
                    )
        self.stats.incr("batch_members", n=len(members))
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for member in members:
            member_id = member["id"]
            failed = [
                d for d in member.get("dependsOn") or [] if statuses.get(str(d).lower(), 0) >= 400
            ]
            if failed:
                response = _graph_error(
                    424, "FailedDependency", "Dependent request failed or was not executed."
                )
            else:
                call = self._member_call(member, headers)
                if call is None:
                    response = _graph_error(
                        400, "BadRequest", "Batch member urls must be relative, e.g. '/me'."
                    )
                else:
                    # A drop on a member drops the whole connection; members already
                    # processed stay committed (the interesting case for crash tests).
                    response = run_with_fault(
                        self.faults.decide("batch"),
                        lambda call=call: self._graph_call(call),
                        self._graph_fault_response,
                        self.faults.drop_mode,
                    )
            statuses[member_id.lower()] = response.status
            responses.append(self._member_response(member_id, response))
        return json_response(
            {"responses": responses}, 200, {"Content-Type": _ODATA_JSON, "OData-Version": "4.0"}
        )

    def _member_call(self, member: dict[str, Any], headers: dict[str, str]) -> _GraphRequest | None:
        url = member["url"]
        if "://" in url:
            return None
        if not url.startswith("/"):
            url = "/" + url
        split = urllib.parse.urlsplit(url)
        member_headers = {str(k).lower(): str(v) for k, v in (member.get("headers") or {}).items()}
        merged = {"authorization": headers.get("authorization", ""), **member_headers}
        body = member.get("body")
        if body is None:
            raw = b""
        elif isinstance(body, str) and "json" not in member_headers.get("content-type", ""):
            raw = base64.b64decode(body)
        else:
            raw = json.dumps(body).encode("utf-8")
        return _GraphRequest(
            member["method"].upper(),
            urllib.parse.unquote(split.path),
            urllib.parse.parse_qs(split.query, keep_blank_values=True),
            merged,
            raw,
            in_batch=True,
        )

    @staticmethod
    def _member_response(member_id: str, response: Response) -> dict[str, Any]:
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        out: dict[str, Any] = {"id": member_id, "status": response.status, "headers": headers}
        if response.body:
            try:
                out["body"] = json.loads(response.body)
            except ValueError:
                out["body"] = base64.b64encode(response.body).decode("ascii")
        return out
