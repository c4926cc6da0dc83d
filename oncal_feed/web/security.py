"""Web security in one place: CSRF, the sign-in rate limit, response headers, safe
redirects and sign-in by a trusted proxy's header.

Decisions, and why:

* **CSRF** is Flask-WTF's synchronizer token, bound to the session. Every POST, PUT,
  PATCH and DELETE needs it (a form field or the `X-CSRFToken` header), except for the
  bearer-key API (`api_v1`: no cookies, so nothing to forge) and the ops probes (the
  feeds never reach Flask: see `feeds.views`). Flask-WTF's HTTPS Referer check is off:
  the pages send `Referrer-Policy: no-referrer`, so browsers send no Referer (and
  `Origin: null`) with our own forms; the token plus `SameSite=Lax` cookies carry the
  protection. Tokens live as long as the session, so a settings tab left open over lunch
  still works.
* **Sign-in rate limits**: Flask-Limiter, per client address and per client address +
  email (hashed, so the limiter's storage holds no emails), counting every attempt: a
  password check costs ~50 ms of scrypt, and counting only failures would let a burst
  of parallel guesses through before the first one is counted. Nothing refuses an email
  as such: a limit per email alone let anyone lock its owner out by guessing from
  elsewhere. Instead failures per email *slow* its next attempts (`sign_in_delay`), from
  every address alike, so guessing one account gets slow while its owner still gets in.
  The counters live in a SQLite file in the instance folder by default, shared by every
  worker on the machine (`web.limit_storage`); Redis shares them across machines.
* **Proxy sign-in** (`TRUSTED_AUTH_HEADER`): honoured only from the peers listed in
  `TRUSTED_AUTH_PROXIES`, judged by the address of the TCP peer itself (before
  ProxyFix rewrote it to the client's). Only existing accounts are signed in: users are
  created by the scheduling integration (the API or the CLI), and an SSO login alone
  should not create accounts that no shift refers to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect

# Registers the `sqlite` scheme with `limits` (the default RATELIMIT_STORAGE_URI).
import oncal_feed.web.limit_storage  # noqa: F401
from oncal_feed.errors import ConfigError

__all__ = [
    "CSP",
    "Networks",
    "address_in",
    "csrf",
    "email_key",
    "init_security",
    "limiter",
    "note_failure",
    "parse_proxies",
    "peer_address",
    "recent_failures",
    "remote_email_key",
    "remote_key",
    "safe_next",
    "security_headers",
    "sign_in_delay",
    "trusted_peer",
]

log = logging.getLogger(__name__)

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        # Forms post only to us; browsers check redirects after a form against this
        # too, which is why "Connect" answers a page that moves on (see web.views).
        "form-action 'self'",
    )
)
HSTS = "max-age=31536000"
# Blueprints without cookie-authenticated writes (see the module docstring).
CSRF_EXEMPT_BLUEPRINTS = ("api_v1", "ops")

csrf = CSRFProtect()


def remote_key() -> str:
    """Rate-limit key of the client: its address (the real one when behind ProxyFix)."""
    return f"ip:{request.remote_addr or 'unknown'}"


def email_key() -> str:
    """Counter key of the email address a sign-in form names (hashed)."""
    email = str(request.form.get("email", "")).strip().lower()
    digest = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"email:{digest}"


def remote_email_key() -> str:
    """Rate-limit key of the client address together with the email it names."""
    return f"{remote_key()}:{email_key()}"


# Failures on one email within this window slow its next sign-ins ...
SLOWDOWN_WINDOW = 15 * 60
# ... once there are more than this many (an owner's own typos stay free) ...
FREE_FAILURES = 5
# ... by LOGIN_SLOWDOWN_SECONDS for each one more, up to this many steps.
MAX_SLOWDOWN_STEPS = 10


def sign_in_delay(failures: int, step: float) -> float:
    """Seconds to wait before checking a sign-in, after `failures` recent failures on
    its email: nothing for the first few, then `step` more for each, capped."""
    return step * min(max(0, failures - FREE_FAILURES), MAX_SLOWDOWN_STEPS)


def _failure_key(key: str) -> str:
    return f"oncal/login-failures/{key}"


def recent_failures(key: str) -> int:
    """Failed sign-ins on the email counter `key` (see `email_key`) in the last window."""
    try:
        return limiter.storage.get(_failure_key(key))
    except Exception as exc:  # storage down: no slowdown rather than no sign-in
        log.warning("sign-in failure count unavailable: %s", type(exc).__name__)
        return 0


def note_failure(key: str) -> None:
    """Count one failed sign-in on the email counter `key`."""
    try:
        limiter.storage.incr(_failure_key(key), SLOWDOWN_WINDOW)
    except Exception as exc:  # as in `recent_failures`
        log.warning("sign-in failure not counted: %s", type(exc).__name__)


# Created unbound, like every extension here, and bound by `init_security(app)`. Its
# storage belongs to the instance (the last app bound), which is one app per process
# in production; tests bind a fresh app, and so a fresh memory storage, per test.
limiter = Limiter(key_func=remote_key, key_prefix="oncal")


@limiter.request_filter
def _not_rate_limited() -> bool:
    """Skip the limiter entirely outside the pages: only sign-in is limited.

    A request filter is checked before the limiter resolves any limit, which keeps
    probes and API calls short.
    """
    return request.blueprint in ("ops", "api_v1")


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_proxies(value: Any, setting: str = "TRUSTED_AUTH_PROXIES") -> Networks:
    """Parse a setting of comma-separated IP addresses or CIDR networks (`setting` names
    it in the error message)."""
    if not value:
        return ()
    items: Iterable[str] = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{setting} entry {item!r} is not an IP address or network "
                "(e.g. 10.0.0.5 or 10.0.0.0/24)."
            ) from None
    return tuple(networks)


def peer_address() -> str | None:
    """The address of the TCP peer that sent this request (the proxy, when there is one).

    ProxyFix replaces `REMOTE_ADDR` with the client's address from X-Forwarded-For and
    keeps the original; the header sign-in must trust the peer, never the forwarded claim.
    """
    original = request.environ.get("werkzeug.proxy_fix.orig")
    if original and original.get("REMOTE_ADDR"):
        return str(original["REMOTE_ADDR"])
    return request.environ.get("REMOTE_ADDR")


def address_in(address: str | None, networks: Networks) -> bool:
    """Tell whether the IP address `address` (None: unknown) lies in one of `networks`."""
    if not networks or not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip in network for network in networks)


def trusted_peer() -> bool:
    """Tell whether this request came straight from a proxy in `TRUSTED_AUTH_PROXIES`."""
    return address_in(peer_address(), current_app.extensions["oncal_trusted_auth_proxies"])


def safe_next(value: str | None, default: str = "/settings") -> str:
    """Return `value` when it is a path on this site, else `default`.

    Accepted: one leading `/`, no scheme or host, no backslash (browsers read `/\\x` as
    `//x`), and no control characters or spaces (browsers drop tabs and newlines, which
    turns `/\\t/evil.example` into `//evil.example`).
    """
    if not value or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def security_headers(base_url: str) -> list[tuple[str, str]]:
    """Return the headers every response carries (HSTS only when served over https)."""
    headers = [
        ("Content-Security-Policy", CSP),
        ("Referrer-Policy", "no-referrer"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),  # frame-ancestors for old browsers
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if base_url.startswith("https://"):
        headers.append(("Strict-Transport-Security", HSTS))
    return headers


def _security_headers(response: Response) -> Response:
    """Add `security_headers`, and `Cache-Control: no-store` to everything but assets.

    Flask answers the pages, the cookie-authenticated JSON (a live OAuth state, account
    emails) and the bearer-key API: none of it belongs in a cache. Feeds never get here
    (`feeds.views` answers them with caching headers of their own); a view that means
    to be cached sets Cache-Control itself.
    """
    for name, value in current_app.extensions["oncal_security_headers"]:
        response.headers.setdefault(name, value)
    if not (request.endpoint or "").endswith(".static"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app: Flask) -> None:
    """Bind CSRF protection and the rate limiter, and add the security headers."""
    header = app.config.get("TRUSTED_AUTH_HEADER")
    proxies = parse_proxies(app.config.get("TRUSTED_AUTH_PROXIES"))
    if header and not proxies:
        raise ConfigError(
            "TRUSTED_AUTH_HEADER is set but TRUSTED_AUTH_PROXIES is not: list the addresses "
            "of the proxies that set the header (e.g. TRUSTED_AUTH_PROXIES=10.0.0.5), or "
            "unset TRUSTED_AUTH_HEADER."
        )
    app.extensions["oncal_trusted_auth_proxies"] = proxies
    app.extensions["oncal_security_headers"] = security_headers(app.config["BASE_URL"])

    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    csrf.init_app(app)
    # Flask-WTF matches exempt blueprints by object, so these must be registered first.
    for name in CSRF_EXEMPT_BLUEPRINTS:
        if name in app.blueprints:
            csrf.exempt(app.blueprints[name])

    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # Redis down must not turn sign-in into a 500: count in this process until it is back.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    limiter.init_app(app)

    app.after_request(_security_headers)
