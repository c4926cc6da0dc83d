"""A WSGI app that serves fixed bytes: the ceiling for benchmarks/load.py.

Run under the same gunicorn.conf.py as the real app, it measures what the server and the
load generator can do with no application work at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

_BODY = Path(os.environ["STATIC_BODY_FILE"]).read_bytes()
_HEADERS = [
    ("Content-Type", "text/calendar; charset=utf-8"),
    ("Content-Length", str(len(_BODY))),
    ("ETag", '"static"'),
]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Answer every request with the same feed body (or 304 when the ETag matches)."""
    if environ.get("HTTP_IF_NONE_MATCH") == '"static"':
        start_response("304 Not Modified", [("ETag", '"static"')])
        return [b""]
    start_response("200 OK", _HEADERS)
    return [_BODY]
