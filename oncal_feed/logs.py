"""Logging setup: plain text or one JSON object per line, secrets redacted."""

from __future__ import annotations

import json
import logging
import re

from flask import Flask

__all__ = ["RedactingFilter", "configure_logging", "redact"]

# Feed tokens live in the path (/feeds/<token>.ics); OAuth codes and tokens in queries.
# Each pattern comes with a substring (lower case) that any match contains: a pattern
# runs only on a line that has it. gunicorn redacts two atoms of every access line, and
# three regex passes over each were a measurable share of a cached feed's 304.
_PATTERNS = [
    ("/feeds/", re.compile(r"/feeds/[^/\s?\"]+"), "/feeds/[redacted]"),
    (
        "=",
        re.compile(r"((?:code|state|token|access_token|refresh_token|key)=)[^&\s\"]+", re.I),
        r"\1[redacted]",
    ),
    ("bearer", re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1[redacted]"),
]


def redact(text: str) -> str:
    """Remove feed tokens, OAuth codes and bearer credentials from a log line."""
    # "[redacted]" adds none of the hints, so checking them once up front is exact.
    folded = text.lower()
    for hint, pattern, replacement in _PATTERNS:
        if hint in folded:
            text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `redact()` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message in place; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialize level, logger, message and exception type."""
        body = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0]:
            body["exception"] = record.exc_info[0].__name__
        return json.dumps(body)


def configure_logging(app: Flask) -> None:
    """Attach one redacting handler to the `oncal_feed` logger, text or JSON per config."""
    logger = logging.getLogger("oncal_feed")
    if any(getattr(h, "_oncal", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._oncal = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    if app.config.get("LOG_FORMAT") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # The development server logs each request line, feed token and OAuth code included.
    werkzeug_logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in werkzeug_logger.filters):
        werkzeug_logger.addFilter(RedactingFilter())
