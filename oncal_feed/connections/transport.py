"""When plain http:// is acceptable for OAuth endpoints: loopback, outside production.

oauthlib refuses http:// authorization and token URLs unless the environment variable
`OAUTHLIB_INSECURE_TRANSPORT` is set, and reads it at every call. The fake Google and
Microsoft servers used by tests and `oncal-feed demo` listen on http://127.0.0.1, so the
variable is set here, and only when every condition holds:

- `ONCAL_MODE` is `test` or `demo` (never `production`),
- every http:// URL involved (the endpoints and `BASE_URL`) points at a loopback address.

Anything else with http:// is refused with `OAuthError`, so a misconfigured production
server can't send codes or tokens in the clear.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from oncal_feed.connections.errors import OAuthError

__all__ = ["allow_loopback_http", "is_loopback_url"]

_ENV = "OAUTHLIB_INSECURE_TRANSPORT"


def is_loopback_url(url: str) -> bool:
    """Tell whether `url`'s host is localhost or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allow_loopback_http(config: Mapping[str, Any], urls: Iterable[str]) -> None:
    """Permit oauthlib to use the given http:// URLs if they are loopback test/demo ones.

    Raises `OAuthError` when an http:// URL isn't allowed; does nothing for https.
    """
    plain = [url for url in (*urls, str(config.get("BASE_URL") or "")) if url.startswith("http:")]
    if not plain:
        return
    endpoints = [url for url in plain if url != config.get("BASE_URL")]
    if config.get("ONCAL_MODE") in ("test", "demo") and all(map(is_loopback_url, plain)):
        if endpoints:
            os.environ[_ENV] = "1"
        return
    if endpoints:
        raise OAuthError(
            "insecure_endpoint",
            "The server's OAuth endpoints must use https:// (plain http:// is allowed only "
            "for loopback addresses in test or demo mode).",
        )
