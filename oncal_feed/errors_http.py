"""Turn exceptions into HTTP answers: JSON for API and feed clients, pages for browsers,
never a stack trace.

A browser (its Accept header prefers text/html to JSON) that opens an unknown page, a
dead feed link or something it may not see gets an HTML page in the product's look
(`wants_page`); everything under /api/, and every client that doesn't ask for HTML, gets
the JSON below.

Every error body has one shape: `{"error": code, "message": text, "errors": [...]}` where
`errors` lists `{"field", "problem"}` pairs naming what the client should fix: a body
field (`starts_at`, `[3].user_email`), a path or query parameter (`key`, `from`), the
whole `body`, or a header (`Authorization`, `Content-Type`).

Any input problem is 422, including a body that is not JSON at all: a client has one
status to check and `errors` to read.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from oncal_feed.errors import Conflict, NotFound, Unauthorized, ValidationError

__all__ = [
    "MAX_LISTED_ERRORS",
    "error_body",
    "error_page",
    "error_response",
    "register_error_handlers",
    "wants_page",
]

log = logging.getLogger(__name__)

# A body of 100,000 bad items would otherwise answer with 100,000 problems (26 MB): the
# first ones say what is wrong, and `more_errors` how many more there are.
MAX_LISTED_ERRORS = 100

# The parameter that identifies each kind of thing in our URLs.
_ID_FIELDS = {"user": "id", "schedule": "key", "shift": "external_id"}

# What a client must change for each HTTP-level error werkzeug raises.
_HTTP_FIELDS = {
    400: ("body", "could not be read"),
    404: ("path", "no such endpoint"),
    413: ("body", "is larger than the limit of {limit} bytes"),
    415: ("Content-Type", "must be application/json"),
}


def error_body(
    code: str, message: str, errors: list[dict[str, object]] | None = None
) -> dict[str, object]:
    """Return the error document every endpoint answers with (`errors` is always a list)."""
    return {"error": code, "message": message, "errors": errors or []}


def error_response(
    status: int, code: str, message: str, errors: list[dict[str, object]] | None = None
) -> Response:
    """Build the JSON error response every Flask view uses (see `error_body`)."""
    response = jsonify(error_body(code, message, errors))
    response.status_code = status
    return response


# Titles and words of the pages browsers get, by status.
_PAGES = {
    400: ("Something in that request was wrong", "Go back, check what you entered and try again."),
    403: ("Not for you", "You may not open this page."),
    404: (
        "Page not found",
        "There is no page at this address. Check the link, or go to your settings page.",
    ),
    405: ("That did not work", "This page can't be used that way. Go back and try again."),
    413: ("Too large", "What you sent is larger than this server accepts."),
    429: ("Too many requests", "Wait a minute, then try again."),
    500: (
        "Something went wrong on our side",
        "Nothing you did caused this. Try again in a moment.",
    ),
}


def wants_page(accept: MIMEAccept, path: str) -> bool:
    """Whether to answer with an HTML page: not the API, and the client prefers HTML."""
    if path.startswith("/api/"):
        return False
    return accept.best_match(["application/json", "text/html"]) == "text/html"


def error_page(status: int, message: str | None = None, title: str | None = None) -> Response:
    """An error page in the product's look (`error.html`) with `status`."""
    default_title, default_message = _PAGES.get(status, _PAGES[500 if status >= 500 else 400])
    body = render_template(
        "error.html", title=title or default_title, message=message or default_message
    )
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _browser() -> bool:
    return wants_page(request.accept_mimetypes, request.path)


def _field_error(field: str, problem: str) -> list[dict[str, object]]:
    return [{"field": field, "problem": problem}]


def register_error_handlers(app: Flask) -> None:
    """Install handlers for our exception tree, HTTP errors and unexpected failures."""

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> Response:
        listed = exc.errors[:MAX_LISTED_ERRORS]
        more = len(exc.errors) - len(listed)
        message = "The request has invalid fields."
        if more:
            message = (
                f"The request has {len(exc.errors)} invalid fields; the first "
                f"{len(listed)} are listed."
            )
        body = error_body("invalid_input", message, [e.as_dict() for e in listed])
        if more:
            body["more_errors"] = more
        response = jsonify(body)
        response.status_code = 422
        return response

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        field = exc.field or _ID_FIELDS.get(exc.kind, exc.kind)
        return error_response(
            404,
            "not_found",
            f"No {exc.kind} {exc.key!r}.",
            _field_error(field, f"no {exc.kind} has this {field}"),
        )

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict) -> Response:
        return error_response(409, "conflict", exc.problem, _field_error(exc.field, exc.problem))

    @app.errorhandler(IntegrityError)
    def clash(exc: IntegrityError) -> Response:
        # Checks run before every write, so only a concurrent writer gets here (two
        # creates of the same email or shift at once). The request's session is rolled
        # back at teardown; repeating the request gives the real answer.
        log.warning("integrity error, answered 409: %s", type(exc.orig).__name__)
        problem = "conflicts with a concurrent change; repeat the request"
        return error_response(
            409, "conflict", "The write clashed with another one.", _field_error("body", problem)
        )

    @app.errorhandler(Unauthorized)
    def unauthorized(exc: Unauthorized) -> Response:
        response = error_response(
            401, "unauthorized", exc.problem, _field_error("Authorization", exc.problem)
        )
        challenge = 'Bearer realm="oncal-feed"'
        if exc.invalid_token:
            challenge += ', error="invalid_token"'
        response.headers["WWW-Authenticate"] = challenge
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if _browser():
            # Words of our own, not werkzeug's: those are written for developers.
            page = error_page(status)
            for name, value in exc.get_headers():
                if name.lower() in ("allow", "retry-after"):
                    page.headers[name] = value
            return page
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, exc.description or exc.name, _http_fields(exc))
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    def _http_fields(exc: HTTPException) -> list[dict[str, object]]:
        if isinstance(exc, MethodNotAllowed):
            allowed = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
            return _field_error("method", f"must be one of {', '.join(allowed)}")
        if exc.code not in _HTTP_FIELDS:
            return []
        field, problem = _HTTP_FIELDS[exc.code]
        return _field_error(field, problem.format(limit=app.config["MAX_CONTENT_LENGTH"]))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # The session is rolled back at teardown; log the type only, since messages of
        # library exceptions may quote request data or credentials.
        log.error("unhandled %s", type(exc).__name__, exc_info=app.debug or app.testing)
        if _browser():
            return error_page(500)
        return error_response(500, "internal_error", "Something went wrong on our side.")
