"""Teams in a real browser (Debian's headless Chromium): an invitation link to a password
and the settings page, single sign-on through the fake issuer, an admin revoking an API
key, and a member turned away from /admin. Screenshots of /admin and the sign-in page at
1280 and 390 px wide go to test-artifacts/screenshots/.

The live server, Chromium's lock-down and the helpers are `tests.web.test_browser`'s.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer

from oncal_feed import accounts
from oncal_feed.admin.links import password_link
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.validation import UserInput
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOIDC
from tests.web import test_browser as shared
from tests.web.conftest import PASSWORD, add_shift
from tests.web.test_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    _Dispatch,
    accept_confirm,
    page_says,
    screenshot,
    wait_for,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="Debian's chromium and chromium-driver are not installed",
    ),
]

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

# The live server and Chromium fixtures of the settings page's browser tests.
server = shared.server
browser = shared.browser

NEW_PASSWORD = "four random words here"
PHONE = 390


@pytest.fixture
def oidc() -> Iterator[FakeOIDC]:
    """The fake issuer the sign-in page's button goes to."""
    with FakeOIDC() as fake:
        yield fake


@pytest.fixture
def app_config(
    app_config: dict[str, Any], oidc: FakeOIDC, server: tuple[BaseWSGIServer, _Dispatch]
) -> dict[str, Any]:
    """Plain HTTP on the live server's port, with single sign-on through the fake."""
    return {
        **app_config,
        "BASE_URL": f"http://127.0.0.1:{server[0].server_port}",
        "SIGNIN_PROVIDERS": "oidc",
        "OIDC_DISCOVERY_URL": oidc.discovery_url,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_LABEL": "Example SSO",
    }


@pytest.fixture
def live(app: Flask, server: tuple[BaseWSGIServer, _Dispatch]) -> Iterator[str]:
    """Serve the app on the live server; yield its base URL."""
    httpd, dispatch = server
    dispatch.app = app
    thread = threading.Thread(target=httpd.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield app.config["BASE_URL"]
    httpd.shutdown()
    thread.join(timeout=10)


def make_user(app: Flask, email: str, name: str, *, role: str = "member", password: bool) -> User:
    with get_database(app).session() as session:
        user = accounts.create_user(session, UserInput(email, name, "Europe/Berlin"), utcnow())
        accounts.set_role(user, role, utcnow())
        if password:
            accounts.set_password(user, PASSWORD)
    return user


def sign_in_with_password(driver: WebDriver, base: str, email: str, password: str) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.current_url.startswith(f"{base}/settings"))


def api_status(base: str, key: str) -> int:
    """GET /api/v1/users with `key` from the test process; return the status."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{base}/api/v1/users", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_invitation_to_password_to_sign_in_to_settings(
    live: str, app: Flask, browser: WebDriver
) -> None:
    """Kim, made by the API without a password, follows the invitation and signs in."""
    kim = make_user(app, "kim@example.com", "Kim Lee", password=False)
    with get_database(app).sessionmaker() as session:
        row = session.get(User, kim.id)
        assert row is not None
        link = password_link(session, row, "invite", app.config, utcnow()).url
    browser.get(link)
    wait_for(browser, page_says("Welcome to oncal-feed"))
    screenshot(browser, "password-invite", PHONE)
    browser.find_element(By.ID, "new-password").send_keys("too short")
    browser.find_element(By.ID, "confirm-password").send_keys("too short")
    browser.find_element(By.ID, "set-password").click()
    wait_for(browser, page_says("at least 10 characters"))
    browser.find_element(By.ID, "new-password").send_keys(NEW_PASSWORD)
    browser.find_element(By.ID, "confirm-password").send_keys(NEW_PASSWORD)
    browser.find_element(By.ID, "set-password").click()
    wait_for(browser, page_says("Your password is set and you are signed in."))
    browser.find_element(By.CSS_SELECTOR, ".who form button").click()
    wait_for(browser, page_says("You are signed out"))
    browser.get(link)
    wait_for(browser, page_says("expired or has already been used"))
    sign_in_with_password(browser, live, "kim@example.com", NEW_PASSWORD)
    wait_for(browser, page_says("Your next two weeks"))


def test_single_sign_on_from_the_sign_in_page(
    live: str, app: Flask, browser: WebDriver, oidc: FakeOIDC
) -> None:
    """The button goes through the issuer and back to the settings page."""
    make_user(app, "kim@example.com", "Kim Lee", password=False)
    browser.get(f"{live}/login")
    wait_for(browser, page_says("Sign in with Example SSO"))
    screenshot(browser, "login", PHONE)
    browser.find_element(By.ID, "sso-oidc").click()
    wait_for(browser, lambda d: d.current_url.startswith(f"{live}/settings"))
    wait_for(browser, page_says("Your next two weeks"))
    assert oidc.authorizations[-1]["scope"] == "openid email profile"


def test_an_admin_revokes_an_api_key_and_its_next_call_is_401(
    live: str, app: Flask, browser: WebDriver
) -> None:
    """Revoked from the admin page (after the confirmation), refused on the next call."""
    make_user(app, "ada@example.com", "Ada Admin", role="admin", password=True)
    kim = make_user(app, "kim@example.com", "Kim Lee", password=True)
    make_user(app, "lee@example.com", "Lee Broken", password=False)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    add_shift(app, kim.email, now + timedelta(days=1))
    add_shift(app, kim.email, now + timedelta(days=8), schedule="checkout",
              schedule_name="Checkout")  # fmt: skip
    with get_database(app).session() as session:
        lee = accounts.get_user_by_email(session, "lee@example.com")
        broken = CalendarConnection(
            user_id=lee.id,
            provider="google",
            status="needs_reauth",
            calendar_name="On-call shifts",
            last_error="Google withdrew access; reconnect.",
        )
        session.add(broken)
        _, kept = accounts.create_api_key(session, "scheduling tool", utcnow())
        doomed_key, doomed = accounts.create_api_key(session, "old script", utcnow())
        doomed_id = doomed_key.id
    assert api_status(live, doomed) == 200
    sign_in_with_password(browser, live, "ada@example.com", PASSWORD)
    browser.find_element(By.ID, "nav-admin").click()
    wait_for(browser, page_says("Sync health"))
    assert "Lee Broken" in browser.find_element(By.ID, "health").text
    screenshot(browser, "admin", PHONE)
    browser.find_element(By.ID, f"revoke-{doomed_id}").click()
    assert "old script" in accept_confirm(browser)
    wait_for(browser, page_says("is revoked"))
    assert api_status(live, doomed) == 401
    assert api_status(live, kept) == 200


def test_a_member_opening_admin_gets_the_403_page(
    live: str, app: Flask, browser: WebDriver
) -> None:
    """A page in the product's look that says why."""
    make_user(app, "kim@example.com", "Kim Lee", password=True)
    sign_in_with_password(browser, live, "kim@example.com", PASSWORD)
    assert not browser.find_elements(By.ID, "nav-admin")
    browser.get(f"{live}/admin")
    wait_for(browser, page_says("Admins only"))
    assert browser.find_element(By.CSS_SELECTOR, "h1").text == "Admins only"
    screenshot(browser, "admin-forbidden", PHONE)
