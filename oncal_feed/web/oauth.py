"""Bringing a browser back to the settings page after Google's or Microsoft's consent.

The OAuth callback (`/api/calendar/<provider>/callback`, the redirect URI registered
with the providers) answers JSON to API clients. When the flow was started from the
settings page, `web.connect` leaves a mark in the session, and the callback hands the
outcome to `finish_on_page`: a message on the settings page instead of a JSON body.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, session, url_for
from werkzeug.wrappers import Response

from oncal_feed.connections.errors import OAuthError
from oncal_feed.models import CalendarConnection
from oncal_feed.web.page import PROVIDER_LABELS

__all__ = ["finish_on_page", "remember_page_flow", "started_from_page", "tell"]

_SESSION_KEY = "oauth_from_page"  # providers whose flow the settings page started


def tell(message: str, kind: str, section: str = "") -> None:
    """Flash `message` (kind: success, info or error) to show in a settings page section."""
    flash(message, f"{kind}@{section}" if section else kind)


def remember_page_flow(provider: str) -> None:
    """Note that the settings page started connecting `provider`."""
    started = set(session.get(_SESSION_KEY) or ())
    started.add(provider)
    session[_SESSION_KEY] = sorted(started)


def started_from_page(provider: str) -> bool:
    """Tell (once) whether the flow now calling back was started from the settings page."""
    started = set(session.get(_SESSION_KEY) or ())
    if provider not in started:
        return False
    started.discard(provider)
    session[_SESSION_KEY] = sorted(started)
    return True


def finish_on_page(provider: str, finish: Callable[[], CalendarConnection]) -> Response:
    """Run the callback's `finish` and land on the settings page with what happened.

    Refusals (declined consent, an expired or forged state, a provider failure) become
    a message on the page; `finish` queues the first sync, which the page then watches.
    """
    label = PROVIDER_LABELS.get(provider, provider)
    try:
        connection = finish()
    except OAuthError as exc:
        if exc.code == "access_denied":
            tell(f"Connecting {label} was cancelled. Nothing was changed.", "info", "connections")
        else:
            tell(f"{label} could not be connected. {exc.message}", "error", "connections")
        return redirect(url_for("web.settings") + "#connections", code=303)
    where = f" ({connection.calendar_name})" if connection.calendar_name else ""
    tell(
        f"{label} is connected{where}. Your shifts are being written into it now.",
        "success",
        "connections",
    )
    return redirect(url_for("web.settings") + "#connections", code=303)
