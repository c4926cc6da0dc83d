"""One exception tree for the whole package.

Exceptions carry facts as attributes; they become messages only at the edges (the HTTP
error handlers in `oncal_feed.errors_http`, the CLI). None of them ever holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "Conflict",
    "FieldError",
    "NotFound",
    "OncalError",
    "Unauthorized",
    "ValidationError",
]


class OncalError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(OncalError):
    """The configuration is missing or wrong; the message says how to fix it."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one input field; `line` is set for file imports."""

    field: str
    problem: str
    line: int | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the JSON shape used in API error bodies."""
        body: dict[str, object] = {"field": self.field, "problem": self.problem}
        if self.line is not None:
            body["line"] = self.line
        return body


class ValidationError(OncalError):
    """Input was rejected; `errors` names each field and its problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.problem}" for e in errors))
        self.errors = errors

    @classmethod
    def single(cls, field: str, problem: str) -> ValidationError:
        """Build an error about one field."""
        return cls([FieldError(field, problem)])


class NotFound(OncalError):
    """A named thing does not exist (`kind` such as "user", `key` as given).

    `field` names the input that held `key` when it is not the kind's usual identifier
    (for instance `email` for a user looked up by email).
    """

    def __init__(self, kind: str, key: str, field: str | None = None) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key
        self.field = field


class Conflict(OncalError):
    """The request is valid but clashes with the current state."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Unauthorized(OncalError):
    """Missing or invalid credentials.

    `invalid_token` tells a malformed or missing header (False) from a well-formed
    credential that is unknown or revoked (True); HTTP answers differ in RFC 6750's
    `error="invalid_token"`.
    """

    def __init__(self, problem: str, *, invalid_token: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.invalid_token = invalid_token
