"""The /admin pages through the test client: who may open them, what they show, and
every action (role, rotate, disconnect, password link, API keys) with its bad input."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds.store import first_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.models import ApiKey, CalendarConnection, Invitation, User
from tests.admin.conftest import ADMIN_EMAIL, add_connection, form, stale
from tests.web.conftest import add_shift


def _user(app: Flask, email: str) -> User:
    with get_database(app).session() as session:
        return accounts.get_user_by_email(session, email)


def _feed_url(app: Flask, email: str) -> str:
    with app.app_context(), get_database(app).session() as session:
        return feed_links(first_feed(session, accounts.get_user_by_email(session, email))).https


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    """The admin area needs a session like the settings page."""
    response = client.get("/admin")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/admin")


def test_members_get_the_403_page_and_no_admin_link(member_client: FlaskClient) -> None:
    """A member sees a page in the product's look, not JSON; every admin action is refused."""
    response = member_client.get("/admin", headers={"Accept": "text/html"})
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "Admins only" in response.text
    assert 'id="nav-admin"' not in member_client.get("/settings").text
    token = form(member_client, "/settings")
    assert member_client.post("/admin/api-keys", data={**token, "name": "x"}).status_code == 403


def test_the_overview_lists_health_people_keys_and_schedules(
    app: Flask, admin_client: FlaskClient, member: User
) -> None:
    """Sync health links to the affected users; people show feed and connection state."""
    add_shift(app, member.email, utcnow() + timedelta(days=1))
    add_shift(app, member.email, utcnow() - timedelta(days=3), external_id="old")
    add_connection(app, member.email, "google", "needs_reauth", last_error="Access was withdrawn.")
    add_connection(app, member.email, "microsoft", "active", dirty_since=stale(30))
    with get_database(app).session() as session:
        feed = first_feed(session, accounts.get_user_by_email(session, member.email))
        feed.last_fetched_at = utcnow() - timedelta(minutes=3)
        feed.last_client = "google"
    page = admin_client.get("/admin").text
    assert 'id="count-reauth">1<' in page
    assert 'id="count-lagging">1<' in page
    assert 'id="count-failing">0<' in page
    assert f'href="/admin/users/{member.public_id}#connections"' in page
    assert "Access was withdrawn." in page
    assert "3 minutes ago</time> by Google Calendar" in page
    assert "Google Calendar: needs re-authorisation" in page
    assert "Outlook: connected" in page
    row = re.search(r"Payments.*?</tr>", page, re.S)
    assert row is not None
    assert re.findall(r'class="number">(\d+)<', row.group(0)) == ["2", "1"]
    assert 'id="nav-admin"' in admin_client.get("/settings").text


def test_search_finds_by_name_or_email_and_treats_wildcards_as_text(
    app: Flask, admin_client: FlaskClient, member: User
) -> None:
    """`q` matches part of an email or name, any case; `%` is searched for literally."""
    assert "kim@example.com" in admin_client.get("/admin?q=KIM").text
    assert "kim@example.com" in admin_client.get("/admin?q=lee").text
    assert "kim@example.com" not in admin_client.get("/admin?q=%25").text
    assert "Nobody matches" in admin_client.get("/admin?q=zzz").text
    assert admin_client.get("/admin?q=" + "x" * 5000).status_code == 200


def test_role_changes_and_the_last_admin_stays(
    app: Flask, admin_client: FlaskClient, member: User, admin: User
) -> None:
    """Admins promote and demote; the only admin can't demote themselves; bad roles refused."""
    path = f"/admin/users/{member.public_id}"
    token = form(admin_client, path)
    admin_client.post(f"{path}/role", data={**token, "role": "admin"})
    assert _user(app, member.email).role == "admin"
    admin_client.post(f"{path}/role", data={**token, "role": "member"})
    assert _user(app, member.email).role == "member"
    page = admin_client.post(f"{path}/role", data={**token, "role": "owner"}, follow_redirects=True)
    assert "Choose admin or member." in page.text
    own = f"/admin/users/{admin.public_id}"
    page = admin_client.post(f"{own}/role", data={**token, "role": "member"}, follow_redirects=True)
    assert "only admin" in page.text
    assert _user(app, ADMIN_EMAIL).role == "admin"


def test_unknown_users_are_a_404_page(admin_client: FlaskClient) -> None:
    """Never a 500 for a made-up id, also for actions."""
    response = admin_client.get("/admin/users/u_nobody", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Page not found" in response.text
    token = form(admin_client)
    assert admin_client.post("/admin/users/u_nobody/feed/rotate", data=token).status_code == 404


def test_rotating_a_users_feed_kills_the_old_url(
    app: Flask, admin_client: FlaskClient, member: User
) -> None:
    """The old URL answers 404 at once; the user's new one works."""
    old = _feed_url(app, member.email)
    path = f"/admin/users/{member.public_id}"
    response = admin_client.post(f"{path}/feed/rotate", data=form(admin_client, path))
    assert response.status_code == 303
    new = _feed_url(app, member.email)
    assert new != old
    fetch = app.test_client()
    assert fetch.get(old.removeprefix(app.config["BASE_URL"])).status_code == 404
    assert fetch.get(new.removeprefix(app.config["BASE_URL"])).status_code == 200


def test_disconnecting_a_users_calendar(
    app: Flask, admin_client: FlaskClient, member: User
) -> None:
    """The connection is marked disconnected; an unknown provider is a message."""
    add_connection(app, member.email, "google", "error", last_error="Google said 500.")
    path = f"/admin/users/{member.public_id}"
    page = admin_client.get(path).text
    assert "Google said 500." in page
    token = form(admin_client, path)
    done = admin_client.post(f"{path}/connections/google/disconnect", data=token,
                             follow_redirects=True)  # fmt: skip
    assert "is disconnected for Kim Lee" in done.text
    with get_database(app).session() as session:
        status = session.scalar(select(CalendarConnection.status))
    assert status == "disconnected"
    bad = admin_client.post(f"{path}/connections/aol/disconnect", data=token,
                            follow_redirects=True)  # fmt: skip
    assert "no such calendar connection" in bad.text


def test_a_password_link_is_shown_once_and_works(
    app: Flask, admin_client: FlaskClient, member: User
) -> None:
    """The page answering the POST holds the link; it isn't in the cookie or any other page."""
    path = f"/admin/users/{member.public_id}"
    shown = admin_client.post(f"{path}/password-link", data={**form(admin_client, path),
                                                             "kind": "reset"})  # fmt: skip
    assert shown.status_code == 200
    found = re.search(r'value="(https://oncal\.example\.test/password\?token=[^"]+)"', shown.text)
    assert found is not None
    link = found.group(1).replace("&amp;", "&")
    assert link not in admin_client.get(path).text
    cookie = admin_client.get_cookie("session")
    assert cookie is not None
    assert link.split("token=")[1] not in cookie.value
    page = app.test_client().get(link.removeprefix(app.config["BASE_URL"]))
    assert page.status_code == 200
    assert "Choose a new password" in page.text
    with get_database(app).session() as session:
        assert session.scalar(select(Invitation.kind)) == "reset"


def test_api_keys_are_created_once_listed_and_revoked_at_once(
    app: Flask, admin_client: FlaskClient, api_key: str
) -> None:
    """The new key is shown on the answer page only; a revoked key gets 401 at once."""
    token = form(admin_client)
    shown = admin_client.post("/admin/api-keys", data={**token, "name": "pager tool"})
    secret = re.search(r'value="(ocf_[^"]+)"', shown.text)
    assert secret is not None
    assert secret.group(1) not in admin_client.get("/admin").text
    api = app.test_client()
    headers = {"Authorization": f"Bearer {secret.group(1)}"}
    assert api.get("/api/v1/users", headers=headers).status_code == 200
    page = admin_client.get("/admin").text
    assert "pager tool" in page
    assert "Never" in page or "just now" in page
    with get_database(app).session() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "pager tool"))
    response = admin_client.post(f"/admin/api-keys/{key_id}/revoke", data=token,
                                 follow_redirects=True)  # fmt: skip
    assert "is revoked" in response.text
    assert api.get("/api/v1/users", headers=headers).status_code == 401
    assert (
        api.get("/api/v1/users", headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    )


def test_bad_key_input_is_a_message(admin_client: FlaskClient) -> None:
    """An empty or overlong name and an unknown key id are messages, never a 500."""
    token = form(admin_client)
    for name in ("", "   ", "x" * 201):
        page = admin_client.post("/admin/api-keys", data={**token, "name": name},
                                 follow_redirects=True)  # fmt: skip
        assert "Give the key a name" in page.text
    page = admin_client.post("/admin/api-keys/999999/revoke", data=token, follow_redirects=True)
    assert "no such API key" in page.text
    assert admin_client.post("/admin/api-keys/abc/revoke", data=token).status_code == 404


def test_admin_forms_need_the_csrf_token(admin_client: FlaskClient, member: User) -> None:
    """A cross-site form post changes nothing."""
    response = admin_client.post(f"/admin/users/{member.public_id}/role", data={"role": "admin"})
    assert response.status_code == 400
    assert "did not come from this site" in response.text
