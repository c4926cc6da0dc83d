"""Turn exceptions into HTTP answers: JSON for API and feed clients, never a stack trace.

Every error body has one shape: `{"error": code, "message": text, "errors": [...]}` where
`errors` lists `{"field", "problem"}` pairs when input was at fault.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from oncal_feed.errors import Conflict, NotFound, Unauthorized, ValidationError

__all__ = ["error_response", "register_error_handlers"]

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, errors: list[dict[str, object]] | None = None
) -> Response:
    """Build the JSON error body every endpoint uses."""
    body: dict[str, object] = {"error": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Install handlers for our exception tree, HTTP errors and unexpected failures."""

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> Response:
        return error_response(
            422,
            "invalid_input",
            "The request has invalid fields.",
            [e.as_dict() for e in exc.errors],
        )

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return error_response(404, "not_found", f"No {exc.kind} {exc.key!r}.")

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict) -> Response:
        return error_response(
            409, "conflict", exc.problem, [{"field": exc.field, "problem": exc.problem}]
        )

    @app.errorhandler(Unauthorized)
    def unauthorized(exc: Unauthorized) -> Response:
        response = error_response(401, "unauthorized", str(exc) or "Authentication required.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="oncal-feed"'
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # The session is rolled back at teardown; log the type only, since messages of
        # library exceptions may quote request data or credentials.
        log.error("unhandled %s", type(exc).__name__, exc_info=app.debug or app.testing)
        return error_response(500, "internal_error", "Something went wrong on our side.")
