"""The settings page in a real browser: Debian's headless Chromium driven by Selenium.

The app runs on a real threaded server on 127.0.0.1 with its sync worker embedded,
against the test database and the fake Google and Microsoft servers, so each click
goes through the same code as in production: sign in, copy and fetch the feed URL,
rotate it, connect both providers through their consent pages, watch events arrive,
watch a failure and a re-authorisation, disconnect.

Chromium is Debian's (`/usr/bin/chromium` with `/usr/bin/chromedriver`); nothing is
downloaded (Selenium Manager is skipped when the driver path is given). The test
process's loopback guard doesn't cover the browser, so Chromium is started with its
background services off, every host name but loopback mapped to nothing, and a dead
proxy for anything that isn't loopback.

Screenshots of the page (desktop and 375 px wide) go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, CalendarCreation, Feed, User
from oncal_feed.sync import start_embedded_worker
from oncal_feed.sync.tasks import mark_dirty, request_sync
from oncal_feed.validation import UserInput
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.web.conftest import PASSWORD, add_shift

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
EMAIL = "kim@example.com"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="Debian's chromium and chromium-driver are not installed "
        "(apt-get install chromium chromium-driver; .ci/run does this)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

# ------------------------------------------------------------------ server


class _Dispatch:
    """A WSGI app whose target is set once the app exists (it needs the server's port)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "the live server got a request before its app"
        return self.app(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    """No access log: request lines hold feed tokens and OAuth codes."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[BaseWSGIServer, _Dispatch]]:
    """A threaded HTTP server on a free loopback port, not yet serving."""
    dispatch = _Dispatch()
    httpd = make_server("127.0.0.1", 0, dispatch, threaded=True, request_handler=_QuietHandler)
    yield httpd, dispatch
    httpd.server_close()


@pytest.fixture
def oauth_base_url(server: tuple[BaseWSGIServer, _Dispatch]) -> str:
    """The live server's address: the fakes send the browser back here after consent."""
    return f"http://127.0.0.1:{server[0].server_port}"


@pytest.fixture
def app_config(
    app_config: dict[str, Any], oauth_settings: dict[str, Any], oauth_base_url: str
) -> dict[str, Any]:
    """Test settings with the fakes, served over plain HTTP on the live server's port."""
    return {**app_config, **oauth_settings, "BASE_URL": oauth_base_url}


@pytest.fixture
def live(
    app: Flask, member: User, server: tuple[BaseWSGIServer, _Dispatch], oauth_base_url: str
) -> Iterator[str]:
    """Serve the app and run its sync worker in this process; yield the base URL."""
    httpd, dispatch = server
    dispatch.app = app
    thread = threading.Thread(target=httpd.serve_forever, name="live-server", daemon=True)
    thread.start()
    stop_worker = start_embedded_worker(app)
    yield oauth_base_url
    stop_worker()
    httpd.shutdown()
    thread.join(timeout=10)


# ----------------------------------------------------------------- browser


def _chromium(*, javascript: bool = True) -> tuple[WebDriver, str]:
    """Start headless Chromium with a fresh profile that can reach nothing but loopback."""
    profile = tempfile.mkdtemp(prefix="oncal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        # No name resolves except loopback, and anything not on loopback goes to a
        # closed port (Chromium always connects to loopback directly).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(30)
    return driver, profile


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, JavaScript on."""
    driver, profile = _chromium()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser_without_js() -> Iterator[WebDriver]:
    """Headless Chromium with JavaScript turned off: the page must still work."""
    driver, profile = _chromium(javascript=False)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    """Wait until `condition(driver)` is truthy; fail with the page text otherwise."""
    try:
        # A check may read the page while it is being replaced (a form's redirect), and
        # Chromium then answers with a stale element or "node does not belong to the
        # document" (a plain WebDriverException): both mean "not yet".
        ignored = (StaleElementReferenceException, NoSuchElementException, WebDriverException)
        wait = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored)
        return wait.until(condition)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"timed out on {driver.current_url}; the page says:\n{body}")


def wait_until(condition: Callable[[], Any], timeout: float = 20) -> Any:
    """Wait for something outside the browser (the fakes' calendars)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for a condition")
        time.sleep(0.2)


def text(driver: WebDriver, selector: str) -> str:
    """The visible text of the first element matching a CSS selector."""
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def body_text(driver: WebDriver) -> str:
    """The page's visible text, or "" while a new page replaces it."""
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)
    except WebDriverException:
        return ""


def page_says(phrase: str) -> Callable[[WebDriver], bool]:
    """A condition: the page's visible text contains `phrase`."""
    return lambda driver: phrase in driver.find_element(By.TAG_NAME, "body").text


def accept_confirm(driver: WebDriver) -> str:
    """Accept the page's confirm() dialog; return its question."""
    alert = wait_for(driver, _alert, timeout=5)
    question = str(alert.text)
    alert.accept()
    return question


def _alert(driver: WebDriver) -> Any:
    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return False


def sign_in(driver: WebDriver, base: str) -> None:
    """Open the settings page, get sent to sign in, sign in, and land back on it."""
    driver.get(f"{base}/settings")
    wait_for(driver, lambda d: "/login" in d.current_url)
    driver.find_element(By.ID, "email").send_keys(EMAIL)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.current_url.startswith(f"{base}/settings"))
    wait_for(driver, page_says("Your next two weeks"))


def screenshot(driver: WebDriver, name: str, phone_width: int = 375) -> None:
    """Save the whole page at 1280 px and at `phone_width` px (phone) wide."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, width, mobile in (("desktop", 1280, False), ("mobile", phone_width, True)):
        metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {**metrics, "height": int(height)}
        )
        # Nothing may stick out sideways on a phone.
        scroll_width = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{name}: the page is {scroll_width} px wide at {width}"
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-{label}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def fetch(url: str) -> int:
    """GET `url` from the test process; return the status."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            body = response.read()
            assert body.startswith(b"BEGIN:VCALENDAR")
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_until_synced(app: Flask) -> None:
    """Wait until no connection has changes waiting or a sync running.

    Then a page loaded afterwards has nothing left to reload for.
    """

    def quiet() -> bool:
        with get_database(app).session() as session:
            rows = session.scalars(select(CalendarConnection)).all()
            return all(row.dirty_since is None and row.lease_owner is None for row in rows)

    wait_until(quiet, timeout=30)


def reload_until(driver: WebDriver, phrase: str, timeout: float = 30) -> None:
    """Reload the page until it says `phrase` (the page's own polling may beat us to it)."""
    deadline = time.monotonic() + timeout
    while phrase not in body_text(driver):
        if time.monotonic() > deadline:
            pytest.fail(f"the page never said {phrase!r}:\n{text(driver, 'body')}")
        time.sleep(0.5)
        driver.refresh()


def connect_through_consent(driver: WebDriver, base: str, provider: str) -> None:
    """Click Connect (or Reconnect), consent on the fake's page, and come back."""
    label = "Google Calendar" if provider == "google" else "Outlook"
    button = driver.find_elements(By.ID, f"connect-{provider}") or driver.find_elements(
        By.ID, f"reconnect-{provider}"
    )
    assert button, f"no connect button for {provider}"
    button[0].click()
    wait_for(driver, lambda d: not d.current_url.startswith(base))
    email = driver.find_element(By.ID, "email")
    email.clear()
    email.send_keys(EMAIL)
    driver.find_element(By.ID, "allow" if provider == "google" else "accept").click()
    wait_for(driver, lambda d: d.current_url.startswith(f"{base}/settings"))
    wait_for(driver, page_says(f"{label} is connected"))


def assert_first_screen_answers(browser: WebDriver) -> None:
    """On a desk (1280 x 800) and a phone (390 x 844), the "on call now / next" line and
    the first feed's address are on screen before any scrolling."""
    for width, height, mobile in ((1280, 800, False), (390, 844, True)):
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        for element in ("on-call-status", "feed-url"):
            bottom = browser.execute_script(
                "return document.getElementById(arguments[0]).getBoundingClientRect().bottom",
                element,
            )
            assert bottom <= height, f"#{element} ends at {bottom} px, below {height} at {width}"
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# ------------------------------------------------------------------- tests


def test_sign_in_copy_fetch_and_rotate_the_feed(
    live: str, app: Flask, member: User, browser: WebDriver
) -> None:
    now = utcnow().replace(minute=0, second=0, microsecond=0)  # tidy times on screenshots
    add_shift(app, EMAIL, now + timedelta(hours=2), timedelta(hours=8), notes="Bridge: 1234")
    add_shift(app, EMAIL, now + timedelta(days=3), timedelta(days=7), schedule="checkout",
              schedule_name="Checkout", role="secondary")  # fmt: skip
    # Someone on call beside Kim's first shift, whom the list names with a mail link.
    with get_database(app).session() as session:
        accounts.create_user(session, UserInput("ana@example.com", "Ana Ruiz"), utcnow())
    add_shift(app, "ana@example.com", now + timedelta(hours=1), timedelta(hours=10),
              role="secondary")  # fmt: skip

    # A wrong password first: the form says so and keeps the email.
    browser.get(f"{live}/login")
    browser.find_element(By.ID, "email").send_keys(EMAIL)
    browser.find_element(By.ID, "password").send_keys("not it")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, page_says("don't match an account"))
    assert browser.find_element(By.ID, "email").get_attribute("value") == EMAIL

    sign_in(browser, live)
    assert "Kim Lee" in text(browser, ".site-header")
    assert "Payments" in text(browser, "#shifts")
    assert "Checkout · Secondary" in text(browser, "#shifts")
    beside = browser.find_element(By.CSS_SELECTOR, "#shifts .shift__with a")
    assert (beside.text, beside.get_attribute("href")) == ("Ana Ruiz", "mailto:ana@example.com")
    assert "Connect Google Calendar" in text(browser, "#connections")
    # The page's script ran: the copy button is shown (it is hidden without JavaScript).
    copy = browser.find_element(By.CSS_SELECTOR, "button[data-copy]")
    assert copy.is_displayed()

    # Copy the feed URL through the clipboard, then fetch it.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": live, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    copy.click()
    wait_for(browser, lambda d: text(d, "#copy-status") == "Copied.")
    copied = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('error: ' + e));"
    )
    shown = browser.find_element(By.ID, "feed-url").get_attribute("value")
    assert copied == shown
    assert shown.startswith(f"{live}/feeds/")
    assert fetch(shown) == 200
    assert browser.find_element(By.ID, "add-webcal").get_attribute("href") == (
        "webcal://" + shown.removeprefix("http://")
    )
    browser.refresh()
    wait_for(browser, page_says("by another app"))  # urllib is not a calendar app
    # The first screen answers "am I on call?" and holds the address, on a desk and a phone.
    assert text(browser, "#on-call-status").startswith("Next · Payments, ")
    assert_first_screen_answers(browser)
    screenshot(browser, "settings", phone_width=390)

    # Rotate: dismissing the question changes nothing; accepting replaces the URL.
    browser.find_element(By.CSS_SELECTOR, "#feed-options summary").click()
    browser.find_element(By.ID, "rotate").click()
    browser.switch_to.alert.dismiss()
    assert browser.find_element(By.ID, "feed-url").get_attribute("value") == shown
    browser.find_element(By.ID, "rotate").click()
    assert "Replace the address of “My shifts”?" in accept_confirm(browser)
    wait_for(browser, page_says("“My shifts” has a new address."))
    rotated = browser.find_element(By.ID, "feed-url").get_attribute("value")
    assert rotated != shown
    assert fetch(shown) == 404
    # The old address's last fetch is not the new one's.
    assert "No calendar app has fetched this feed yet." in text(browser, "#feed")
    assert fetch(rotated) == 200

    # Time zone and options through their forms.
    zone = browser.find_element(By.ID, "time-zone-input")
    zone.clear()
    zone.send_keys("tokyo")  # the searchable field takes a city
    browser.find_element(By.CSS_SELECTOR, "#time-zone button[type=submit]").click()
    wait_for(browser, page_says("Times are now shown in Asia/Tokyo."))
    assert "Times in Asia/Tokyo." in text(browser, "#shifts")
    browser.find_element(By.CSS_SELECTOR, "#feed-options summary").click()
    busy = "#feed-options input[name=busy][value='1']"
    browser.find_element(By.CSS_SELECTOR, busy).click()
    browser.find_element(By.ID, "save-feed").click()
    wait_for(browser, page_says("Options of “My shifts” saved."))
    assert browser.find_element(By.CSS_SELECTOR, busy).is_selected()

    # Sign out.
    browser.find_element(By.CSS_SELECTOR, ".site-header button[type=submit]").click()
    wait_for(browser, page_says("You are signed out, on every device."))
    screenshot(browser, "signed-out")
    browser.get(f"{live}/settings")
    wait_for(browser, lambda d: "/login" in d.current_url)


def test_create_name_and_revoke_a_second_feed(
    live: str, app: Flask, member: User, browser: WebDriver
) -> None:
    """Named feeds in the browser: a second one for the team's schedule, with its own
    address, renamed, then revoked while the first keeps working."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    add_shift(app, EMAIL, now + timedelta(hours=2), timedelta(hours=8))
    sign_in(browser, live)
    first = browser.find_element(By.ID, "feed-url").get_attribute("value")

    browser.find_element(By.CSS_SELECTOR, "#new-feed summary").click()
    browser.find_element(By.ID, "new-feed-name").send_keys("Team calendar")
    Select(browser.find_element(By.ID, "new-feed-shows")).select_by_visible_text(
        "Everyone on Payments"
    )
    browser.find_element(By.ID, "create-feed").click()
    wait_for(browser, page_says("Feed “Team calendar” created"))
    assert "Everyone on Payments" in text(browser, "#feed-name-2")
    second = browser.find_element(By.ID, "feed-url-2").get_attribute("value")
    assert second != first
    assert fetch(second) == 200
    assert_first_screen_answers(browser)
    screenshot(browser, "settings-two-feeds", phone_width=390)
    browser.find_element(By.CSS_SELECTOR, "#month summary").click()
    assert "Payments" in text(browser, ".month__day--on")
    screenshot(browser, "settings-month", phone_width=390)

    browser.find_element(By.CSS_SELECTOR, "#feed-options-2 summary").click()
    name = browser.find_element(By.ID, "feed-name-input-2")
    name.clear()
    name.send_keys("Payments team")
    Select(browser.find_element(By.ID, "feed-2-handoff-reminder")).select_by_visible_text(
        "15 minutes before it ends"
    )
    screenshot(browser, "feed-options", phone_width=390)
    browser.find_element(By.ID, "save-feed-2").click()
    wait_for(browser, page_says("Options of “Payments team” saved."))
    with get_database(app).session() as session:
        renamed = session.scalars(select(Feed).where(Feed.name == "Payments team")).one()
        assert renamed.handoff_reminder_minutes == 15
    assert text(browser, "#feed-name-2").startswith("Payments team")
    assert browser.find_element(By.ID, "feed-url-2").get_attribute("value") == second

    browser.find_element(By.CSS_SELECTOR, "#feed-options-2 summary").click()
    browser.find_element(By.ID, "revoke-2").click()
    assert "Revoke “Payments team”?" in accept_confirm(browser)
    wait_for(browser, page_says("“Payments team” is revoked"))
    assert not browser.find_elements(By.ID, "feed-url-2")
    assert fetch(second) == 404
    assert fetch(first) == 200


def test_connect_both_calendars_watch_sync_failure_reauth_and_disconnect(
    live: str,
    app: Flask,
    member: User,
    browser: WebDriver,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
) -> None:
    now = utcnow().replace(minute=0, second=0, microsecond=0)  # tidy times on screenshots
    add_shift(app, EMAIL, now + timedelta(days=1), timedelta(hours=8))
    add_shift(app, EMAIL, now + timedelta(days=4), timedelta(hours=8))
    sign_in(browser, live)

    # Connect both through the fakes' consent pages; the worker syncs right away and
    # the page, watching, shows the result without being told to.
    for provider, fake in (("google", fake_google), ("microsoft", fake_microsoft)):
        connect_through_consent(browser, live, provider)
        wait_until(lambda fake=fake: len(fake.events(EMAIL)) == 2)
        wait_for(
            browser,
            lambda d, p=provider: "2 added" in text(d, f"#connection-{p}"),
            timeout=30,
        )
    assert "On-call shifts" in text(browser, "#connection-google")
    assert "On-call shifts" in text(browser, "#connection-microsoft")
    screenshot(browser, "connected")

    # A new shift reaches both calendars by itself.
    add_shift(app, EMAIL, now + timedelta(days=6), timedelta(hours=8))
    wait_until(lambda: len(fake_google.events(EMAIL)) == 3)
    wait_until(lambda: len(fake_microsoft.events(EMAIL)) == 3)

    # Google fails: the page says so in plain words; Outlook carries on.
    fake_google.fail_next(100, 500)
    browser.find_element(By.ID, "sync-now").click()
    wait_for(browser, page_says("Google Calendar could not be synced"))
    google = text(browser, "#connection-google")
    assert "Sync failing" in google
    assert "The last sync failed:" in google
    assert "Outlook is up to date" in text(browser, ".messages")
    screenshot(browser, "sync-failing")
    fake_google.faults.reset()
    browser.find_element(By.ID, "sync-now").click()
    wait_for(browser, page_says("Google Calendar is up to date"))
    assert "Connected" in text(browser, "#connection-google")

    # Microsoft withdraws the grant: re-authorisation is asked for, and works.
    fake_microsoft.revoke_grants(EMAIL)
    fake_microsoft.expire_access_tokens()
    browser.find_element(By.ID, "sync-now").click()
    wait_for(browser, page_says("Outlook needs you to reconnect it."))
    outlook = text(browser, "#connection-microsoft")
    assert "Needs re-authorisation" in outlook
    assert "Syncing is paused." in outlook
    screenshot(browser, "needs-reauth")
    connect_through_consent(browser, live, "microsoft")
    add_shift(app, EMAIL, now + timedelta(days=8), timedelta(hours=8))
    wait_until(lambda: len(fake_microsoft.events(EMAIL)) == 4, timeout=30)
    wait_until(lambda: len(fake_google.events(EMAIL)) == 4, timeout=30)
    wait_until_synced(app)
    # The page watches only while a change waits for its sync: mark one waiting (without
    # queueing it yet), so the page loaded now is watching and nothing can sync first.
    mark_dirty(app, {member.id}, utcnow())
    browser.refresh()
    wait_for(browser, page_says("Connected"))
    assert "Needs re-authorisation" not in text(browser, "#connection-microsoft")

    # Disconnect Google removing its events, and Outlook keeping them. A sync that finishes
    # while the form is being filled in must not reload the page under the person's hands
    # (that used to drop the choice, or cancel the submission): the page says so instead.
    browser.find_element(
        By.CSS_SELECTOR, "#connection-google input[name=events][value=remove]"
    ).click()
    add_shift(app, EMAIL, now + timedelta(days=10), timedelta(hours=8))
    # The connections were marked waiting above, so the change queues nothing by itself.
    with get_database(app).session() as session:
        request_sync(app, session.scalars(select(CalendarConnection.id)).all())
    wait_until(lambda: len(fake_google.events(EMAIL)) == 5, timeout=30)
    wait_for(browser, lambda d: "A sync finished." in text(d, "#connections"), timeout=30)
    assert browser.find_element(
        By.CSS_SELECTOR, "#connection-google input[name=events][value=remove]"
    ).is_selected()
    browser.find_element(By.ID, "disconnect-google").click()
    assert "will be removed" in accept_confirm(browser)
    wait_for(browser, page_says("Google Calendar is disconnected and its on-call events"))
    assert fake_google.events(EMAIL) == []
    browser.find_element(By.ID, "disconnect-microsoft").click()
    accept_confirm(browser)
    wait_for(browser, page_says("Outlook is disconnected. The events already there stay."))
    assert len(fake_microsoft.events(EMAIL)) == 5
    assert browser.find_elements(By.ID, "connect-google")
    assert browser.find_elements(By.ID, "connect-microsoft")
    assert not browser.find_elements(By.ID, "sync-now")


def test_cancelling_consent_comes_back_with_a_message(
    live: str, member: User, browser: WebDriver, fake_google: FakeGoogle
) -> None:
    sign_in(browser, live)
    browser.find_element(By.ID, "connect-google").click()
    wait_for(browser, lambda d: not d.current_url.startswith(live))
    browser.find_element(By.ID, "deny").click()
    wait_for(browser, page_says("Connecting Google Calendar was cancelled."))
    assert browser.current_url.startswith(f"{live}/settings")
    assert browser.find_elements(By.ID, "connect-google")


def test_the_page_works_without_javascript(
    live: str, member: User, browser_without_js: WebDriver
) -> None:
    browser = browser_without_js
    sign_in(browser, live)
    # No script: no copy button (the address can still be selected and copied by hand).
    assert not browser.find_element(By.CSS_SELECTOR, "button[data-copy]").is_displayed()
    old = browser.find_element(By.ID, "feed-url").get_attribute("value")

    # Without confirm(), rotating asks on a page of its own.
    browser.find_element(By.CSS_SELECTOR, "#feed-options summary").click()
    browser.find_element(By.ID, "rotate").click()
    wait_for(browser, page_says("Replace the address of “My shifts”?"))
    browser.find_element(By.LINK_TEXT, "Cancel").click()
    wait_for(browser, page_says("Your next two weeks"))
    assert browser.find_element(By.ID, "feed-url").get_attribute("value") == old
    browser.find_element(By.CSS_SELECTOR, "#feed-options summary").click()
    browser.find_element(By.ID, "rotate").click()
    wait_for(browser, page_says("Replace the address of “My shifts”?"))
    screenshot(browser, "confirm-rotate")
    browser.find_element(By.CSS_SELECTOR, "button.button--danger").click()
    wait_for(browser, page_says("“My shifts” has a new address."))
    assert browser.find_element(By.ID, "feed-url").get_attribute("value") != old
    assert fetch(old) == 404


def test_bring_my_shifts_from_another_tool(live: str, app: Flask, browser: WebDriver) -> None:
    """Paste a PagerDuty feed, see it working and its shift listed, then held, then accepted."""
    from ipaddress import ip_network

    from oncal_feed.sources.service import poll_source
    from tests.sources.conftest import relative_feed
    from tests.sources.feed_server import FeedServer

    app.config["SOURCE_ALLOWED_NETWORKS"] = (ip_network("127.0.0.1/32"),)
    start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    with FeedServer() as feeds:
        feeds.put("/private/k3y/feed", relative_feed(start, [EMAIL, EMAIL], hours=12))
        sign_in(browser, live)
        browser.find_element(By.ID, "source-tool").send_keys("PagerDuty")
        browser.find_element(By.ID, "source-url").send_keys(feeds.url("/private/k3y/feed"))
        browser.find_element(By.ID, "add-source-button").click()
        wait_for(browser, page_says("Added the PagerDuty feed"))
        reload_until(browser, "Working")
        card = text(browser, "#sources")
        assert "http://127.0.0.1/…" in card
        assert "k3y" not in body_text(browser)
        assert "2 in the feed" in card
        assert "PagerDuty (Kim Lee)" in text(browser, "#shifts")
        screenshot(browser, "sources-working", phone_width=390)

        feeds.fault("/private/k3y/feed", "empty", count=100)
        source_id = int(browser.find_element(By.CSS_SELECTOR, "#sources article").get_attribute(
            "id").removeprefix("source-"))  # fmt: skip
        with app.app_context():
            assert poll_source(app, source_id, utcnow()).outcome == "held"
        browser.refresh()
        assert "Paused: the feed looks wrong" in text(browser, "#sources")
        assert "suddenly empty (it had 2 events)" in text(browser, "#sources")
        screenshot(browser, "sources-held", phone_width=390)
        browser.find_element(By.ID, f"accept-source-{source_id}").click()
        wait_for(browser, page_says("your calendars now follow the feed"))
        assert "PagerDuty (Kim Lee)" not in text(browser, "#shifts")
        browser.find_element(By.ID, f"remove-source-{source_id}").click()
        accept_confirm(browser)
        wait_for(browser, page_says("Removed the PagerDuty feed"))


def test_a_calendar_left_by_an_interrupted_setup_is_told_and_dismissed(
    live: str, app: Flask, member: User, browser: WebDriver
) -> None:
    """The notice of a possibly left-over Google calendar reads well, fits a phone, and goes."""
    started = utcnow() - timedelta(hours=1)
    with get_database(app).session() as session:
        session.add(
            CalendarCreation(
                user_id=member.id,
                provider="google",
                calendar_name="On-call shifts",
                request_id="4f1c2d3e-0000-4000-8000-000000000001",
                started_at=started,
                orphan_since=started,
            )
        )
    sign_in(browser, live)
    notice = text(browser, "body")
    assert "An empty calendar named “On-call shifts” may be left in your Google Calendar" in notice
    screenshot(browser, "leftover-calendar", phone_width=390)
    browser.find_element(By.CSS_SELECTOR, "[id^=dismiss-leftover-]").click()
    wait_for(browser, lambda d: "may be left in your" not in body_text(d))
    with get_database(app).session() as session:
        assert session.scalars(select(CalendarCreation)).all() == []


def test_push_a_whole_schedule_into_a_calendar_of_its_own_and_stop(
    live: str, app: Flask, member: User, browser: WebDriver, fake_google: FakeGoogle
) -> None:
    """From the connection's card: push Payments into its own calendar, watch a
    colleague's shift arrive there, then stop and see the calendar deleted."""
    with get_database(app).session() as session:
        accounts.create_user(
            session, UserInput("sam@example.com", "Sam Ortiz", "Europe/Berlin"), utcnow()
        )
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    add_shift(app, EMAIL, now + timedelta(days=1), timedelta(hours=8))
    add_shift(app, "sam@example.com", now + timedelta(days=2), timedelta(hours=8))
    sign_in(browser, live)
    connect_through_consent(browser, live, "google")

    def calendar(name: str) -> str | None:
        return {c["summary"]: c["id"] for c in fake_google.calendars(EMAIL)}.get(name)

    def own_events() -> int:
        return len(fake_google.events(EMAIL, calendar("On-call shifts")))

    wait_until(lambda: calendar("On-call shifts") and own_events() == 1)

    browser.find_element(By.CSS_SELECTOR, "#connection-google-pushes summary").click()
    Select(browser.find_element(By.ID, "push-schedule-google")).select_by_visible_text("Payments")
    screenshot(browser, "schedule-push-choose", phone_width=390)
    browser.find_element(By.ID, "add-push-google").click()
    wait_for(browser, page_says("Payments is being pushed into its own calendar"))
    calendar_id = wait_until(lambda: calendar("Payments on-call"))
    wait_until(lambda: len(fake_google.events(EMAIL, calendar_id)) == 2)
    titles = sorted(e["summary"] for e in fake_google.events(EMAIL, calendar_id))
    assert titles == ["Kim Lee · primary", "Sam Ortiz · primary"]
    assert own_events() == 1  # the personal calendar keeps Kim's alone
    # The page, watching, turns "first sync starting" into "synced … ago" by itself.
    wait_for(browser, lambda d: "synced" in text(d, "#push-google-payments"), timeout=30)
    screenshot(browser, "schedule-push", phone_width=390)

    # A colleague's new shift reaches the team calendar without anyone asking.
    add_shift(app, "sam@example.com", now + timedelta(days=5), timedelta(hours=8))
    wait_until(lambda: len(fake_google.events(EMAIL, calendar_id)) == 3)

    browser.find_element(By.ID, "stop-push-google-payments").click()
    assert "Its calendar is deleted from Google Calendar" in accept_confirm(browser)
    wait_for(browser, page_says("Stopped: the schedule's calendar was deleted"))
    assert calendar("Payments on-call") is None
    assert not browser.find_elements(By.ID, "push-google-payments")
    assert own_events() == 1
