"""Client-side helpers: a requests session routing Microsoft hosts to the fake; a form reader."""

from __future__ import annotations

import html
import html.parser
import urllib.parse
from typing import Any

import requests


def _rewrite(url: str, rewrites: dict[str, str]) -> str:
    split = urllib.parse.urlsplit(url)
    origin = f"{split.scheme}://{split.netloc}".lower()
    target = rewrites.get(origin)
    if target is None:
        return url
    return target + url[len(origin) :]


class LoopbackSession(requests.Session):
    """A ``requests.Session`` that sends requests for public Microsoft hosts to the fake.

    Usable as msal's ``http_client=``: msal calls ``get(url, params=, headers=, **kw)``
    and ``post(url, params=, data=, headers=, **kw)``, both of which go through
    ``request``, where the URL is rewritten.
    """

    def __init__(self, rewrites: dict[str, str], timeout: float | None = 10.0) -> None:
        """``rewrites`` maps an origin (``https://host``) to its replacement origin."""
        super().__init__()
        # Environment proxies must not capture loopback traffic meant for the fake.
        self.trust_env = False
        self.timeout = timeout
        self.rewrites = {
            origin.rstrip("/").lower(): target.rstrip("/") for origin, target in rewrites.items()
        }

    def rewrite(self, url: str) -> str:
        """Return ``url`` with a rewritten origin (unchanged if no rule matches)."""
        return _rewrite(url, self.rewrites)

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request to the rewritten URL (with a default timeout)."""
        if isinstance(url, bytes):
            url = url.decode()
        if self.timeout is not None:
            kwargs.setdefault("timeout", self.timeout)
        return super().request(method, self.rewrite(url), *args, **kwargs)


class _FormParser(html.parser.HTMLParser):
    """Collects the first form's action and its input fields from an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
            self.method = attributes.get("method", "get").lower()
        elif tag == "input" and attributes.get("name"):
            if attributes.get("type", "text") != "submit":
                self.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button" and attributes.get("name"):
            self.buttons[attributes.get("value", "")] = attributes["name"]
