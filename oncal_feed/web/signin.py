"""Sign-in pages beyond the password form: single sign-on and password links.

`/login/<provider>` sends the browser to the provider and `/login/<provider>/callback`
finishes there (the redirect URI to register with the provider); the protocol is in
`oncal_feed.sso`. `/password?token=...` is where invitation and reset links land: the
secret travels in the query, where the log redaction already hides `token=` values, and
the pages send no Referer (`Referrer-Policy: no-referrer`).
"""

from __future__ import annotations

import logging

from flask import current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from oncal_feed import accounts, sso
from oncal_feed.auth import sign_in
from oncal_feed.db import get_session, utcnow
from oncal_feed.errors import ValidationError
from oncal_feed.feeds.tokens import NOT_FOUND_MESSAGE
from oncal_feed.models import User
from oncal_feed.web.oauth import tell
from oncal_feed.web.security import safe_next
from oncal_feed.web.views import web_blueprint

__all__ = ["DEAD_LINK_MESSAGE"]

log = logging.getLogger(__name__)

_NEXT_KEY = "signin_next"
DEAD_LINK_MESSAGE = (
    "This link has expired or has already been used. Ask an admin for a new one, or "
    "sign in if you have set your password already."
)


def login_page(error: str | None, status: int, email: str = "") -> tuple[str, int]:
    """The sign-in page with `error`, keeping the SSO buttons (used by every refusal)."""
    body = render_template("login.html", email=email, next=session.get(_NEXT_KEY), error=error)
    return body, status


@web_blueprint.get("/login/<provider>")
def sso_start(provider: str) -> Response | tuple[str, int]:
    """Send the browser to `provider`'s sign-in page; come back to `next` afterwards."""
    target = safe_next(request.args.get("next"))
    try:
        response = sso.start_sign_in(
            provider, url_for("web.sso_callback", provider=provider, _external=True)
        )
    except sso.SignInRefused as exc:
        return login_page(exc.message, 404 if exc.reason == "unknown_provider" else 503)
    session[_NEXT_KEY] = target
    return response


@web_blueprint.get("/login/<provider>/callback")
def sso_callback(provider: str) -> Response | tuple[str, int]:
    """Check the provider's answer and sign in to the matching account, or say why not."""
    database = get_session()
    try:
        identity = sso.finish_sign_in(provider)
        label = next(p.label for p in sso.signin_providers(current_app.config)
                     if p.name == provider)  # fmt: skip
        user = sso.account_for(database, identity, current_app.config, label, utcnow())
    except sso.SignInRefused as exc:
        database.rollback()
        log.info("single sign-on refused: %s", exc.reason)  # never the email or token
        return login_page(exc.message, 404 if exc.reason == "unknown_provider" else 403)
    database.commit()
    target = safe_next(session.get(_NEXT_KEY))
    sign_in(user)
    return redirect(target, code=303)


@web_blueprint.get("/password")
def password_form() -> str | tuple[str, int]:
    """The "choose your password" page of an invitation or reset link."""
    secret = str(request.args.get("token", ""))
    link = accounts.find_password_link(get_session(), secret, utcnow())
    if link is None:
        return _dead_link()
    user = get_session().get(User, link.user_id)
    assert user is not None
    return render_template(
        "password.html", token=secret, email=user.email, kind=link.kind, error=None
    )


@web_blueprint.post("/password")
def password_set() -> Response | tuple[str, int]:
    """Set the password through the link, spend the link and sign in."""
    secret = str(request.form.get("token", ""))
    password = str(request.form.get("password", ""))
    confirm = str(request.form.get("confirm_password", ""))
    database = get_session()
    link = accounts.find_password_link(database, secret, utcnow())
    if link is None:
        return _dead_link()
    user = database.get(User, link.user_id)
    assert user is not None
    error = None
    if password != confirm:
        error = "The two passwords are not the same. Type the same password twice."
    else:
        try:
            accounts.check_new_password(password)
        except ValidationError as exc:
            error = f"The password {exc.errors[0].problem}."
    if error is None:
        user = accounts.use_password_link(database, secret, password, utcnow())
        if user is None:  # spent by another tab a moment ago
            return _dead_link()
        database.commit()
        sign_in(user)
        tell("Your password is set and you are signed in.", "success")
        return redirect(url_for("web.settings"), code=303)
    body = render_template(
        "password.html", token=secret, email=user.email, kind=link.kind, error=error
    )
    return body, 422


@web_blueprint.get("/feeds/<path:token>")
def dead_feed(token: str) -> tuple[str, int]:
    """A dead feed link opened in a browser (the feed endpoint hands only those here)."""
    body = render_template("error.html", title="This feed link does not work",
                           message=NOT_FOUND_MESSAGE)  # fmt: skip
    return body, 404


def _dead_link() -> tuple[str, int]:
    body = render_template("error.html", title="This link does not work", message=DEAD_LINK_MESSAGE)
    return body, 404
