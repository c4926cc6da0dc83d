"""A gunicorn logger whose access lines never contain a feed token or credential."""

from __future__ import annotations

import json
import os
from typing import Any

from gunicorn.glogging import Logger

from oncal_feed.logs import redact

__all__ = ["RedactingAccessLogger"]

_URL_ATOMS = ("r", "U", "q", "f", "{raw_uri}e")


class RedactingAccessLogger(Logger):
    """Redacts request lines, paths, queries and referrers before gunicorn formats them.

    With LOG_FORMAT=json in the environment it writes one JSON object a line.
    """

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        """Gunicorn's atoms, with every URL-bearing value redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        # The full request URI also reaches the log through these environ-derived atoms.
        for key in list(atoms):
            if key.startswith("{") and isinstance(atoms[key], str):
                atoms[key] = redact(atoms[key])
        return atoms

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Write one access line (JSON when configured)."""
        if not self.cfg.accesslog:
            return
        if os.environ.get("LOG_FORMAT") != "json":
            super().access(resp, req, environ, request_time)
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line = {
            "time": atoms["t"],
            "remote": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "status": atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": atoms["a"],
        }
        self.access_log.info(json.dumps(line))
