"""The feed endpoint, `GET`/`HEAD /feeds/<token>.ics`, served in front of Flask.

Feeds are most of the traffic, and conditional requests most of the feeds. Flask's request
cycle (app and request contexts, the session cookie, CSRF, the rate limiter, the page
hooks) exists for the pages and costs more than a whole 304. Nothing under `/feeds/`
needs any of it: no cookie, no form, no limit. So `FeedEndpoint` wraps `app.wsgi_app`,
answers the feed path itself (werkzeug's request object in, `start_response` out), and
passes every other request on to Flask untouched. The logic lives in `feeds.service`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from oncal_feed.db import Database, get_database
from oncal_feed.errors import ValidationError
from oncal_feed.errors_http import error_body, wants_page
from oncal_feed.feeds.service import FeedAnswer, FeedNotFound, FeedQuery, FeedService
from oncal_feed.feeds.tokens import FEED_PATH, NOT_FOUND_MESSAGE
from oncal_feed.feeds.user_cache import user_cache_for
from oncal_feed.metrics import FEED_RENDER_SECONDS, FEED_REQUESTS
from oncal_feed.web.security import security_headers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FeedEndpoint", "feed_service", "init_feeds"]

log = logging.getLogger(__name__)

PREFIX, SUFFIX = FEED_PATH.split("{token}")
ALLOWED_METHODS = "GET, HEAD"
NOT_MODIFIED = f"304 {HTTP_STATUS_CODES[304]}"


def init_feeds(app: Flask) -> None:
    """Build the app's feed service and put the feed endpoint in front of the app.

    Call it after `Database(...).init_app(app)`.
    """
    database = get_database(app)
    users = user_cache_for(database, app.config["FEED_USER_CACHE_ENTRIES"])
    service = FeedService.from_config(app.config, users)
    app.extensions["oncal_feeds"] = service
    app.wsgi_app = FeedEndpoint(  # type: ignore[method-assign]
        app.wsgi_app,
        service,
        database,
        extra_headers=security_headers(app.config["BASE_URL"]),
        log_tracebacks=app.debug or app.testing,
    )


def feed_service(app: Flask | None = None) -> FeedService:
    """Return the app's feed service (the current app when none is given)."""
    service = (app or current_app).extensions["oncal_feeds"]
    assert isinstance(service, FeedService)
    return service


class FeedEndpoint:
    """WSGI middleware: answers feed URLs, hands every other request to `next_app`."""

    def __init__(
        self,
        next_app: WSGIApplication,
        service: FeedService,
        database: Database,
        *,
        extra_headers: list[tuple[str, str]],
        log_tracebacks: bool = False,
    ) -> None:
        self.next_app = next_app
        self.service = service
        self.database = database
        self.extra_headers = extra_headers
        self.log_tracebacks = log_tracebacks

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve `/feeds/<token>.ics`; pass anything else on."""
        token = _token(environ)
        if token is None:
            return self.next_app(environ, start_response)
        started = time.perf_counter()
        request = Request(environ)
        answer = self.respond(request, token)
        status = answer.status
        if status == 404 and wants_page(request.accept_mimetypes, request.path):
            # A dead link opened in a browser: Flask renders the page (`web.dead_feed`).
            FEED_REQUESTS.labels("404").inc()
            return self.next_app(environ, start_response)
        FEED_REQUESTS.labels(str(status)).inc()
        if status == 200:
            FEED_RENDER_SECONDS.observe(time.perf_counter() - started)
        # Straight to start_response: a werkzeug Response would copy these headers three
        # times over, which costs a fifth of a 304.
        headers = list(answer.headers.items())
        if status == 304:
            # Only validators and caching headers (RFC 9110 §15.4.5): the client keeps
            # the rest from the 200 it stored, and every header costs the server.
            start_response(NOT_MODIFIED, headers)
            return []
        headers += self.extra_headers
        headers.append(("Content-Length", str(len(answer.body))))
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [answer.body]

    def respond(self, request: Request, token: str) -> FeedAnswer:
        """Answer one request for the feed at `token`, errors included."""
        if request.method not in ("GET", "HEAD"):
            problem = f"must be one of {ALLOWED_METHODS}"
            answer = _error(405, "method_not_allowed", "Feeds are read-only.",
                            [{"field": "method", "problem": problem}])  # fmt: skip
            answer.headers["Allow"] = ALLOWED_METHODS
            return answer
        try:
            return self.service.answer(self.database, _query(request, token))
        except FeedNotFound:
            return _error(404, "not_found", NOT_FOUND_MESSAGE)
        except ValidationError as exc:
            return _error(
                400,
                "bad_request",
                "The feed address has invalid query parameters.",
                [e.as_dict() for e in exc.errors],
            )
        except Exception as exc:  # a database outage must still get a JSON answer
            # The type only: messages of library exceptions may quote the token.
            log.error("feed failed: %s", type(exc).__name__, exc_info=self.log_tracebacks)
            return _error(500, "internal_error", "Something went wrong on our side.")


def _token(environ: WSGIEnvironment) -> str | None:
    """Return the token of a feed path, or None for any other path.

    Only the canonical spelling is a feed: the server decodes `/feeds%2F<token>.ics`
    and `/fe%65ds/<token>.ics` into the same PATH_INFO, and serving those would invite
    clients (and their logs) to spell feed URLs in ways nobody redacts. So the path as
    sent (`RAW_URI`, which gunicorn and werkzeug set) must be the decoded path itself;
    for anything else this returns "", which no token is: the dead link's 404.
    """
    path = str(environ.get("PATH_INFO", ""))
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    token = path[len(PREFIX) : -len(SUFFIX)]
    if not token or "/" in token:
        return None
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is not None:
        raw_path = raw.split("?", 1)[0]
        if "://" in raw_path:  # the absolute form, GET http://host/feeds/... HTTP/1.1
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        if raw_path != environ.get("SCRIPT_NAME", "") + path:
            return ""
    return token


def _query(request: Request, token: str) -> FeedQuery:
    listed = None
    if "HTTP_IF_NONE_MATCH" in request.environ:
        tags = request.if_none_match
        listed = frozenset({"*"} if tags.star_tag else tags.as_set(include_weak=True))
    return FeedQuery(
        token=token,
        args=request.args.to_dict(flat=False),
        if_none_match=listed,
        if_modified_since=request.if_modified_since,
        accepts_gzip=request.accept_encodings["gzip"] > 0,
        user_agent=request.environ.get("HTTP_USER_AGENT", ""),
    )


def _error(
    status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None
) -> FeedAnswer:
    body = json.dumps(error_body(code, message, errors), separators=(",", ":")) + "\n"
    return FeedAnswer(status, body.encode(), {"Content-Type": "application/json"})
