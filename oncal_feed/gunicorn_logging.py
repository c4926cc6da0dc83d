"""A gunicorn logger whose access lines never contain a feed token or credential."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any

from gunicorn.glogging import Logger, SafeAtoms

from oncal_feed.logs import RedactingFilter, escape_controls, redact

__all__ = ["RedactingAccessLogger", "RedactingAtoms"]

# Atoms that carry the URL; every `{name}i`, `{name}o` and `{name}e` atom (request and
# response headers, environ) is redacted too, since the full URI reaches them.
_URL_ATOMS = frozenset(("r", "U", "q", "f"))


class RedactingAtoms(SafeAtoms):
    """gunicorn's atoms, each URL-bearing value redacted when the format reads it.

    Redacting on read rather than up front matters: gunicorn collects every header and
    environ value as an atom, and redacting them all cost a third of a feed's 304.
    """

    def __getitem__(self, key: str) -> Any:
        """The atom's value, redacted when it could hold a URL."""
        return _redacted(key, super().__getitem__(key))


def _redacted(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _URL_ATOMS or key.startswith("{"):
        return redact(value)  # escapes control characters too
    # The user agent and the like are the client's words as well: no forged lines.
    return escape_controls(value)


class RedactingAccessLogger(Logger):
    """Redacts request lines, paths, queries and referrers before gunicorn formats them.

    With LOG_FORMAT=json in the environment it writes one JSON object a line.
    """

    atoms_wrapper_class = RedactingAtoms

    def setup(self, cfg: Any) -> None:
        """Set gunicorn's loggers up, and redact its error log too: its warnings about
        refused requests quote the request line."""
        super().setup(cfg)
        if not any(isinstance(f, RedactingFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RedactingFilter())

    def access(
        self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any
    ) -> None:
        """Write one access line (JSON when configured)."""
        if not self.cfg.accesslog:
            return
        if os.environ.get("LOG_FORMAT") != "json":
            super().access(resp, req, environ, request_time)
            return
        # Not through SafeAtoms: its quote escaping is for the text format; json.dumps
        # escapes on its own.
        atoms = self.atoms(resp, req, environ, request_time)
        line = {
            name: _redacted(key, atoms.get(key, "-"))
            for name, key in (("time", "t"), ("remote", "h"), ("method", "m"), ("path", "U"),
                              ("status", "s"), ("bytes", "B"), ("user_agent", "a"))
        }  # fmt: skip
        line["duration_ms"] = round(request_time.total_seconds() * 1000, 3)
        self.access_log.info(json.dumps(line))
