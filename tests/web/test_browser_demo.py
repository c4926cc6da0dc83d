"""The newcomer's push-sync tour in Debian's Chromium, against a real `oncal-feed demo`:
sign in, connect "Demo calendar", see the shifts on /demo/calendar, move one through the
API and watch it move there (the embedded worker, within 5 s), delete one and see it back.

Screenshots of /demo/calendar and the settings page at 1280 and 390 px go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.demo_process import demo_env, serve_demo
from tests.processes import ROOT, _console_script, http_request
from tests.web import test_browser as shared
from tests.web.test_browser import CHROMEDRIVER, CHROMIUM, page_says, screenshot, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="Debian's chromium and chromium-driver are not installed",
    ),
]

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

browser = shared.browser
DEMO_EMAIL = "demo@oncal.example"
BERLIN = ZoneInfo("Europe/Berlin")  # the demo user's time zone


def api_key(instance: Path) -> str:
    """A fresh API key for the demo, made with the CLI as the README does."""
    made = subprocess.run(
        [_console_script("oncal-feed"), "create-api-key", "browser-test"],
        cwd=ROOT,
        env={**demo_env(instance), "ONCAL_MODE": "demo"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def put_shift(base: str, key: str, starts: datetime) -> None:
    """PUT the demo user's "tour" shift (8 hours from `starts`) through the API."""
    status, body = http_request(
        "PUT",
        f"{base}/api/v1/schedules/tour/shifts/tour-1",
        {
            "user_email": DEMO_EMAIL,
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=8)).isoformat(),
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert status in (200, 201), body


def tour_event_text(driver: WebDriver) -> str:
    """The text of the tour shift's event(s) on the calendar page ("" when none)."""
    # One script call reads every event at once: element by element, a month of events took
    # longer than a second to read under load, and the page may swap its calendar meanwhile.
    texts = driver.execute_script(
        "return Array.from(document.querySelectorAll('.demo-event'), e => e.innerText);"
    )
    return " | ".join(t for t in texts if "Tour" in t)


def delete_tour_event(driver: WebDriver) -> bool:
    """Press the tour event's Delete button; False when there is none (yet)."""
    for event in driver.find_elements(By.CSS_SELECTOR, ".demo-event"):
        if "Tour" in event.text:
            event.find_element(By.CSS_SELECTOR, "button").click()
            return True
    return False


def test_demo_calendar_tour(browser: WebDriver, tmp_path: Path) -> None:
    """Demo -> sign in -> connect -> shifts shown -> an API move shows within 5 s."""
    with serve_demo(tmp_path / "instance") as demo:
        base = demo.base_url
        key = api_key(demo.instance)
        status, _ = http_request(
            "PUT",
            f"{base}/api/v1/schedules/tour",
            {"name": "Tour", "time_zone": "Europe/Berlin"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert status in (200, 201)
        starts = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=7, minute=0, second=0, microsecond=0
        )
        put_shift(base, key, starts)

        browser.get(f"{base}/settings")
        wait_for(browser, lambda d: "/login" in d.current_url)
        browser.find_element(By.ID, "email").send_keys(DEMO_EMAIL)
        browser.find_element(By.ID, "password").send_keys(demo.password)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for(browser, page_says("Your next two weeks"))
        assert (
            "only calendar apps running on it can subscribe"
            in browser.find_element(By.ID, "feed-local-only").text
        )

        browser.find_element(By.ID, "connect-demo").click()
        wait_for(browser, page_says("Let oncal-feed use your demo calendar?"))
        browser.find_element(By.ID, "allow").click()
        wait_for(browser, page_says("Demo calendar is connected"))
        screenshot(browser, "demo-settings", phone_width=390)

        day = starts.astimezone(BERLIN).date().isoformat()
        browser.get(f"{base}/demo/calendar?date={day}")
        first = f"{starts.astimezone(BERLIN):%H:%M}"
        wait_for(browser, lambda d: first in tour_event_text(d), timeout=20)
        # The demo's own rotations are there too (the demo user is in every one).
        assert len(browser.find_elements(By.CSS_SELECTOR, ".demo-event")) > 3
        screenshot(browser, "demo-calendar-week", phone_width=390)

        moved = starts + timedelta(hours=3)
        put_shift(base, key, moved)
        sent = time.monotonic()
        later = f"{moved.astimezone(BERLIN):%H:%M}"
        wait_for(browser, lambda d: later in tour_event_text(d), timeout=5)
        took = time.monotonic() - sent
        print(f"moved shift shown on /demo/calendar after {took:.1f} s")
        assert wait_for(browser, lambda d: first not in tour_event_text(d))

        # Delete it in the calendar; push sync puts it back. The page swaps its calendar in
        # every second, so find and press the button in one go, retried when it went stale.
        wait_for(browser, delete_tour_event)
        wait_for(browser, page_says("Deleted from the demo calendar"))
        wait_for(browser, lambda d: later in tour_event_text(d), timeout=20)

        browser.get(f"{base}/demo/calendar?view=month&date={day}")
        wait_for(browser, lambda d: later in tour_event_text(d), timeout=20)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".demo-event")) > 3
        screenshot(browser, "demo-calendar-month", phone_width=390)
