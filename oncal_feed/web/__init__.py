"""The settings pages: sign-in, the settings page and its forms, and web security.

`init_web(app)` is the one call `create_app` makes; it must come after the other
blueprints are registered (CSRF exemptions name them).

May import: the core, `feeds`, `connections`, `sync`, `providers.registry`; nothing
imports `web` except the app factory and two views (`connections.views`,
`feeds.views`) for shared page helpers and headers.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError

from oncal_feed import accounts, sso
from oncal_feed.auth import current_user, sign_in
from oncal_feed.db import get_session
from oncal_feed.errors import NotFound
from oncal_feed.errors_http import error_response
from oncal_feed.web import signin  # noqa: F401  (adds the SSO and password-link routes)
from oncal_feed.web.security import init_security, trusted_peer
from oncal_feed.web.views import web_blueprint

__all__ = ["init_web", "web_blueprint"]

log = logging.getLogger(__name__)

# Blueprints whose requests are authenticated by the session cookie.
SESSION_BLUEPRINTS = ("web", "calendar", "admin", "demo")
CSRF_PAGE_MESSAGE = (
    "This form has expired or did not come from this site, so nothing was changed. "
    "Reload the page and try again."
)


def init_web(app: Flask) -> None:
    """Register the pages, CSRF protection, the sign-in rate limit and security headers."""
    from oncal_feed.web.demo import demo_blueprint

    app.register_blueprint(web_blueprint)
    app.register_blueprint(demo_blueprint)
    init_security(app)
    app.before_request(_proxy_sign_in)
    app.register_error_handler(CSRFError, _csrf_failed)
    providers = sso.signin_providers(app.config)
    app.context_processor(lambda: {"signin_providers": providers})


def _csrf_failed(exc: CSRFError) -> Response | tuple[str, int]:
    """A write without a valid CSRF token: a page for browsers, JSON for the JSON routes."""
    if request.blueprint in ("web", "admin", "demo"):
        if request.endpoint == "web.login":
            body = render_template("login.html", email="", next=None, error=CSRF_PAGE_MESSAGE)
        else:
            body = render_template(
                "error.html", title="Please try again", message=CSRF_PAGE_MESSAGE
            )
        return body, 400
    if current_user() is None:
        # Signed out, a token wouldn't help: say what would (the JSON routes answer 401).
        return error_response(401, "unauthorized", "Sign in first.")
    return error_response(
        400,
        "csrf_failed",
        f"{exc.description} Send the page's CSRF token in the X-CSRFToken header.",
        [{"field": "X-CSRFToken", "problem": "missing or not valid for this session"}],
    )


def _proxy_sign_in() -> Response | tuple[str, int] | None:
    """Sign in the user named by `TRUSTED_AUTH_HEADER`, when a trusted proxy sent it.

    From any other peer the header is ignored (a client can send any header it likes).
    An email without an account is refused rather than created (see `web.security`).
    """
    header = current_app.config.get("TRUSTED_AUTH_HEADER")
    if not header or request.blueprint not in SESSION_BLUEPRINTS:
        return None
    if request.endpoint == "web.static":
        return None
    value = request.headers.get(header, "").strip().lower()
    if not value:
        return None
    if not trusted_peer():
        log.warning("ignored %s from an untrusted peer", header)
        return None
    user = current_user()
    if user is None or user.email != value:
        try:
            user = accounts.get_user_by_email(get_session(), value)
        except NotFound:
            log.info("proxy sign-in refused: no account for the forwarded email")
            return _no_account()
        sign_in(user)
    g.proxy_signed_in = True
    return None


def _no_account() -> Response | tuple[str, int]:
    message = (
        "You are signed in to your organisation, but oncal-feed has no account for your "
        "email address. Ask the person who runs oncal-feed to add you."
    )
    if request.blueprint in ("web", "admin", "demo"):
        return render_template("error.html", title="No account", message=message), 403
    return error_response(403, "no_account", message)
