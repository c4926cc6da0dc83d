"""Google's multipart/mixed batch endpoint (``POST /batch/calendar/v3``) in the fake.

``BatchMixin`` is mixed into ``FakeGoogle``.
"""

from __future__ import annotations

import email.message
import email.parser
import functools
import http
import secrets
import urllib.error
import urllib.parse
import urllib.request

from tests.fakes.faults import run_with_fault
from tests.fakes.google.model import API_PREFIX, ApiError
from tests.fakes.server import (
    HTTPError,
    Request,
    Response,
    parse_target,
)

BATCH_PATHS = ("/batch/calendar/v3", "/batch")


class BatchMixin:
    """A batch of Calendar API calls, a fault decision per part."""

    def _batch(self, request: Request) -> Response:
        if request.method != "POST":
            return ApiError(405, "methodNotAllowed", "Batch requests must be POSTed.").response()
        parts = self._parse_batch(request)
        if len(parts) > self.max_batch_size:
            return ApiError(
                400,
                "badRequest",
                f"Too many requests in batch: {len(parts)} (limit {self.max_batch_size}).",
            ).response()
        self.stats.incr("batch_members", n=len(parts))
        results: list[tuple[str | None, Response]] = []
        for content_id, sub in parts:
            if not sub.path.startswith(API_PREFIX + "/"):
                results.append((content_id, self._not_found(sub)))
                continue
            # A drop fault on a member drops the whole batch connection; members
            # already processed stay committed, which is the interesting case.
            response = run_with_fault(
                self.faults.decide("batch"),
                functools.partial(self._api_call, sub, in_batch=True),
                self._api_fault_response,
                self.faults.drop_mode,
            )
            results.append((content_id, response))
        return self._batch_response(results)

    def _parse_batch(self, request: Request) -> list[tuple[str | None, Request]]:
        content_type = request.header("Content-Type") or ""
        if not content_type.lower().startswith("multipart/"):
            raise HTTPError(
                ApiError(400, "badRequest", "Batch body must be multipart/mixed.").response()
            )
        text = request.body.decode("utf-8")
        outer = email.parser.Parser().parsestr(f"Content-Type: {content_type}\r\n\r\n{text}")
        if not outer.is_multipart():
            raise HTTPError(ApiError(400, "badRequest", "Malformed batch body.").response())
        parts: list[tuple[str | None, Request]] = []
        for part in outer.get_payload():
            assert isinstance(part, email.message.Message)
            payload = part.get_payload()
            if not isinstance(payload, str):
                raise HTTPError(ApiError(400, "badRequest", "Nested multipart.").response())
            request_line, _, rest = payload.lstrip("\r\n").partition("\n")
            pieces = request_line.strip().split(" ")
            if len(pieces) < 2:
                raise HTTPError(ApiError(400, "badRequest", "Malformed batch part.").response())
            inner = email.parser.Parser().parsestr(rest)
            body = inner.get_payload()
            body_bytes = body.encode("utf-8") if isinstance(body, str) else b""
            if inner.get("Authorization") is None and request.header("Authorization"):
                inner["Authorization"] = request.header("Authorization") or ""
            target = pieces[1]
            if target.startswith(("http://", "https://")):
                split = urllib.parse.urlsplit(target)
                target = split.path + (f"?{split.query}" if split.query else "")
            content_id = part.get("Content-ID")
            parts.append(
                (
                    str(content_id) if content_id else None,
                    parse_target(pieces[0], target, inner, body_bytes),
                )
            )
        return parts

    @staticmethod
    def _batch_response(results: list[tuple[str | None, Response]]) -> Response:
        boundary = "batch_" + secrets.token_hex(12)
        chunks = []
        for content_id, response in results:
            body = response.body.decode("utf-8")
            lines = [f"--{boundary}", "Content-Type: application/http"]
            if content_id:
                lines.append(f"Content-ID: <response-{content_id.strip().strip('<>')}>")
            reason = http.HTTPStatus(response.status).phrase
            lines += ["", f"HTTP/1.1 {response.status} {reason}"]
            # googleapiclient splits the embedded response at the first CRLFCRLF,
            # so there must always be a header line, even for a bodiless 204.
            headers = dict(response.headers)
            headers["Content-Length"] = str(len(response.body))
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines += ["", body]
            chunks.append("\r\n".join(lines))
        text = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
        return Response(
            200, text.encode("utf-8"), {"Content-Type": f"multipart/mixed; boundary={boundary}"}
        )
