"""Logging setup: plain text or one JSON object per line, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote

from flask import Flask

__all__ = ["RedactingFilter", "configure_logging", "escape_controls", "redact"]

# Feed tokens live in the path (/feeds/<token>.ics); OAuth codes and tokens in queries.
# Each pattern comes with a substring (lower case) that any match contains: a pattern
# runs only on a line that has it. gunicorn redacts two atoms of every access line, and
# three regex passes over each were a measurable share of a cached feed's 304. The feed
# path matches in any case and with repeated slashes (/FEEDS//x.ics is a 404, but its
# token is as secret as any).
_PATTERNS = [
    ("/feeds/", re.compile(r"/feeds/+[^/\s?\"]+", re.I), "/feeds/[redacted]"),
    (
        "=",
        re.compile(r"((?:code|state|token|access_token|refresh_token|key)=)[^&\s\"]+", re.I),
        r"\1[redacted]",
    ),
    ("bearer", re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1[redacted]"),
    # Anything shaped like a signed token (base64 payload, a dot, a SHA-256 signature of
    # 43 characters), wherever it appears: /%66eeds/<token>.ics, a Referer, a header.
    # The look-behind anchors a match at the start of a run, which keeps the scan linear.
    (
        ".",
        re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"),
        "[redacted]",
    ),
]
# Control characters (C0, DEL, C1) and Unicode line breaks: a client that puts one in a
# value we log (`error=x%0A2099 CRITICAL fake`) could otherwise forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return (
        f"\\x{ord(match.group()):02x}"
        if ord(match.group()) < 0x100
        else f"\\u{ord(match.group()):04x}"
    )


def escape_controls(text: str) -> str:
    """Write control characters and line breaks in `text` as visible escapes (`\\x0a`)."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def _redact_plain(text: str) -> str:
    # "[redacted]" adds none of the hints, so checking them once up front is exact.
    folded = text.lower()
    for hint, pattern, replacement in _PATTERNS:
        if hint in folded:
            text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """Remove feed tokens, OAuth codes and bearer credentials from a log line, and
    escape control characters.

    Percent-encoded spellings count too (gunicorn decodes `/feeds%2F<token>.ics` and
    `/fe%65ds/...` into a feed path): when the decoded line holds something to redact,
    the decoded line is logged, redacted.
    """
    cleaned = _redact_plain(text)
    if "%" in cleaned:
        decoded = unquote(cleaned)
        if decoded != cleaned:
            redacted = _redact_plain(decoded)
            if redacted != decoded:
                cleaned = redacted
    return escape_controls(cleaned)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `redact()` before any handler sees it: secrets
    removed, and every control character escaped, so no logged value a client sent can
    start a line of its own."""

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
