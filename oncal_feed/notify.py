"""The hook between shift writes and push sync.

Writers (API views, CLI) call `shifts_changed(user_ids)` after committing. Listeners
registered on the current app with `add_listener` get the ids; push sync registers one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from flask import Flask, current_app

__all__ = ["add_listener", "shifts_changed"]

Listener = Callable[[set[int]], None]
log = logging.getLogger(__name__)


def add_listener(app: Flask, listener: Listener) -> None:
    """Call `listener` with the touched user ids after every committed shift write."""
    app.extensions.setdefault("oncal_listeners", []).append(listener)


def shifts_changed(user_ids: Iterable[int]) -> None:
    """Tell the current app's listeners that these users' calendars changed.

    Called after the write is committed, so a failing listener must not fail the write:
    it is logged, the others still run, and push sync's periodic sweep catches up.
    """
    ids = set(user_ids)
    if ids:
        for listener in current_app.extensions.get("oncal_listeners", []):
            try:
                listener(ids)
            except Exception:
                log.exception("a shift listener failed; the periodic sync sweep will catch up")
