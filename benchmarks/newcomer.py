"""The newcomer path, timed: from a clean clone to the demo calendar showing shifts.

    python3 benchmarks/newcomer.py [--repo .] [--keep]

Does what the README's "Try it" says, in a temporary folder: `git clone` of the
repository's HEAD, `python3 -m venv .venv && .venv/bin/pip install -e .`, then
`.venv/bin/oncal-feed demo` on a free port. Then, as a browser would (plain HTTP with a
cookie jar, no JavaScript): sign in with the printed password, press "Connect Demo
calendar", allow on the authorization page, and poll /demo/calendar until the embedded
worker's first sync shows events. Prints the time of each step and the total; a person
reading and clicking adds their own time. Stops the demo with SIGTERM.

Installing uses whatever package index pip is set up with (a warm local cache makes it
much faster than a first install from PyPI).
"""

from __future__ import annotations

import argparse
import html
import http.cookiejar
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class Browser:
    """GET and POST with cookies and no redirects followed, no proxies."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect,
        )

    def open(self, url: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        """One request; the status, headers and body text."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(url, data, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read().decode()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _step(name: str, started: float, last: float) -> float:
    now = time.monotonic()
    print(f"{name:<44} {now - last:6.1f} s   (total {now - started:6.1f} s)", flush=True)
    return now


def tour(base: str, password: str) -> int:
    """Sign in, connect the demo calendar, wait for events; the number of events shown."""
    browser = Browser()
    _, _, page = browser.open(f"{base}/login")
    browser.open(
        f"{base}/login",
        {"email": "demo@oncal.example", "password": password, "csrf_token": _csrf(page)},
    )
    _, _, settings = browser.open(f"{base}/settings")
    _, _, moving_on = browser.open(f"{base}/settings/connect/demo", {"csrf_token": _csrf(settings)})
    found = re.search(r'id="continue" href="([^"]+)"', moving_on)
    assert found is not None, "no way on to the authorization page"
    _, _, consent = browser.open(html.unescape(found.group(1)))
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent
        )
    }
    _, headers, _ = browser.open(f"{base}/demo/authorize", {**fields, "decision": "allow"})
    browser.open(headers["Location"])
    while True:
        _, _, calendar = browser.open(f"{base}/demo/calendar")
        if 'class="demo-event' in calendar:
            return calendar.count('class="demo-event')
        time.sleep(0.2)


def main() -> None:
    """Run the path once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="oncal-newcomer-"))
    clone = folder / "oncal-feed"
    port = _free_port()
    started = last = time.monotonic()
    try:
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        last = _step("git clone", started, last)
        subprocess.run(["python3", "-m", "venv", ".venv"], cwd=clone, check=True)
        subprocess.run(
            [".venv/bin/pip", "install", "-q", "-e", "."],
            cwd=clone,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        last = _step("python3 -m venv && pip install -e .", started, last)
        log = (folder / "demo.log").open("w+")
        demo = subprocess.Popen(
            [".venv/bin/oncal-feed", "demo", "--port", str(port)],
            cwd=clone,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while "Running on" not in (folder / "demo.log").read_text():
                if demo.poll() is not None:
                    raise SystemExit((folder / "demo.log").read_text())
                time.sleep(0.1)
            last = _step("oncal-feed demo: seeded and serving", started, last)
            password = re.search(r"  password: (\S+)", (folder / "demo.log").read_text())
            assert password is not None
            shown = tour(f"http://127.0.0.1:{port}", password.group(1))
            _step(f"sign in, connect, first sync ({shown} events shown)", started, last)
        finally:
            demo.send_signal(signal.SIGTERM)
            demo.wait(30)
            log.close()
        print(f"clean clone -> demo calendar showing shifts: {time.monotonic() - started:.1f} s")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
