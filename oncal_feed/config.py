"""Configuration: the only module that reads the environment.

Settings come, in increasing priority, from built-in defaults, a `.env` file in the
working directory (when present), the process environment, and the mapping passed to
`create_app(config=...)`. Every name is documented in `.env.example`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from dotenv import dotenv_values

from oncal_feed.errors import ConfigError

__all__ = ["MODES", "load_config"]

MODES = ("production", "demo", "test")

# Settings read from the environment, with their defaults. `None` means "not set".
DEFAULTS: dict[str, Any] = {
    "ONCAL_MODE": "production",
    "SECRET_KEY": None,
    "DATABASE_URL": None,  # default: sqlite:///<instance>/oncal-feed.sqlite
    "BASE_URL": "http://127.0.0.1:8000",
    # default: sqlite:///<instance>/queue.sqlite; redis://host:6379/0 for several machines
    "QUEUE_URL": None,
    # Name of the task queue; deployments sharing one Redis keep theirs apart with it.
    "QUEUE_NAME": "oncal-feed",
    "TOKEN_ENCRYPTION_KEYS": None,  # comma-separated Fernet keys, newest first
    "GOOGLE_CLIENT_ID": None,
    "GOOGLE_CLIENT_SECRET": None,
    "GOOGLE_AUTH_URI": "https://accounts.google.com/o/oauth2/auth",
    "GOOGLE_TOKEN_URI": "https://oauth2.googleapis.com/token",
    "GOOGLE_REVOKE_URI": "https://oauth2.googleapis.com/revoke",
    # googleapiclient replaces rootUrl + servicePath with this, so it includes /calendar/v3/.
    "GOOGLE_API_ENDPOINT": "https://www.googleapis.com/calendar/v3/",
    # default: /batch/calendar/v3 on GOOGLE_API_ENDPOINT's host
    "GOOGLE_BATCH_URI": None,
    "MICROSOFT_CLIENT_ID": None,
    "MICROSOFT_CLIENT_SECRET": None,
    "MICROSOFT_TENANT_ID": "common",
    "MICROSOFT_AUTHORITY_HOST": "https://login.microsoftonline.com",
    "GRAPH_ENDPOINT": "https://graph.microsoft.com/v1.0",
    "PROVIDER_TIMEOUT": 30,  # seconds for each call to Google, Microsoft and their token services
    # Seconds a worker holds a connection between renewals; a worker that dies mid-sync is
    # taken over this long after its last renewal. At least twice PROVIDER_TIMEOUT.
    "SYNC_LEASE_SECONDS": 120,
    # Seconds a worker's sync may spend, in all, waiting out throttles and faults to send
    # the writes they turned away again, before it leaves them to its next run.
    "SYNC_RETRY_SECONDS": 20,
    "MAX_CONTENT_LENGTH": 1_048_576,
    "LOG_FORMAT": "text",  # or "json"
    "TRUSTED_PROXY_COUNT": 0,
    "TRUSTED_AUTH_HEADER": None,  # e.g. X-Forwarded-Email, only behind a trusted proxy
    # Comma-separated IPs/CIDRs of the proxies whose TRUSTED_AUTH_HEADER is believed.
    "TRUSTED_AUTH_PROXIES": None,
    # Clients that may read /readyz and /metrics: comma-separated IPs/CIDRs (loopback and
    # private networks by default); others get 404. /healthz answers everyone.
    "OPS_ALLOWED_NETWORKS": "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7",
    # Sign-in attempts per client address, and per client address + email (Flask-Limiter
    # syntax).
    "LOGIN_RATE_LIMIT": "10 per minute",
    # Seconds each failure on an email beyond the first five (in 15 minutes) adds before
    # its next sign-in is checked, up to ten times this.
    "LOGIN_SLOWDOWN_SECONDS": 1.0,
    # Where rate-limit counters live. Default: sqlite:///<instance>/ratelimit.sqlite, shared
    # by the workers of one machine; redis://host:6379/1 for several machines.
    "RATELIMIT_STORAGE_URI": None,
    # Per worker process: rendered events by content hash, and whole feed bodies by ETag.
    "FEED_EVENT_CACHE_BYTES": 32 * 1024 * 1024,
    "FEED_BODY_CACHE_BYTES": 32 * 1024 * 1024,
    # Redis where web processes share rendered feed bodies; unset: each keeps its own.
    "FEED_CACHE_URL": None,
    # Per worker process, on PostgreSQL: user rows of feeds, dropped when a change is
    # notified, so a 304 needs no query. 0 turns it off; SQLite never has it.
    "FEED_USER_CACHE_ENTRIES": 20_000,
    # Schedule sources (polled ICS feeds, PagerDuty): seconds between polls of a new source,
    # the largest body read, seconds allowed per fetch, redirects followed, and how far ahead
    # a poll reads (days).
    "SOURCE_POLL_INTERVAL": 60,
    "SOURCE_MAX_BYTES": 10 * 1024 * 1024,
    "SOURCE_TIMEOUT": 20,
    "SOURCE_MAX_REDIRECTS": 5,
    "SOURCE_WINDOW_DAYS": 180,
    # Comma-separated IPs/CIDRs sources may be fetched from although they are loopback,
    # private or link-local (on-premise tools, tests). Default: none.
    "SOURCE_ALLOWED_NETWORKS": None,
    "PAGERDUTY_API_BASE": "https://api.pagerduty.com",
    # Single sign-on: which of google, microsoft, oidc the sign-in page offers.
    "SIGNIN_PROVIDERS": None,
    "GOOGLE_DISCOVERY_URL": "https://accounts.google.com/.well-known/openid-configuration",
    # default: <MICROSOFT_AUTHORITY_HOST>/<MICROSOFT_TENANT_ID>/v2.0/.well-known/...
    "MICROSOFT_DISCOVERY_URL": None,
    "OIDC_DISCOVERY_URL": None,
    "OIDC_CLIENT_ID": None,
    "OIDC_CLIENT_SECRET": None,
    "OIDC_LABEL": "your organisation",
    # Comma-separated email domains that may sign in by SSO; unset: any.
    "SIGNIN_ALLOWED_DOMAINS": None,
    # Whether a first SSO sign-in of an unknown (verified, allowed) email makes an account.
    "SIGNIN_CREATE_ACCOUNTS": "false",
    # How long invitation and password-reset links work.
    "PASSWORD_LINK_HOURS": 72,
    # Optional mail server that sends invitation and reset links.
    "SMTP_HOST": None,
    "SMTP_PORT": 587,
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_FROM": None,
    "SMTP_SECURITY": "starttls",  # starttls | ssl | none
}

INTEGER_SETTINGS = (
    "MAX_CONTENT_LENGTH",
    "TRUSTED_PROXY_COUNT",
    "PROVIDER_TIMEOUT",
    "SYNC_LEASE_SECONDS",
    "SYNC_RETRY_SECONDS",
    "FEED_EVENT_CACHE_BYTES",
    "FEED_BODY_CACHE_BYTES",
    "FEED_USER_CACHE_ENTRIES",
    "SOURCE_POLL_INTERVAL",
    "SOURCE_MAX_BYTES",
    "SOURCE_TIMEOUT",
    "SOURCE_MAX_REDIRECTS",
    "SOURCE_WINDOW_DAYS",
    "PASSWORD_LINK_HOURS",
    "SMTP_PORT",
)
SIGNIN_PROVIDER_NAMES = ("google", "microsoft", "oidc")
SMTP_SECURITY_CHOICES = ("starttls", "ssl", "none")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

MISSING_SECRET_KEY_HELP = (
    "SECRET_KEY is not set. Generate one with\n"  # noqa: S105 (help text, not a secret)
    '    python3 -c "import secrets; print(secrets.token_urlsafe(48))"\n'
    "and put it in the environment or in .env (see .env.example). "
    "For a first try without configuration, run `oncal-feed demo`."
)
ENCRYPTION_KEY_HELP = (
    "TOKEN_ENCRYPTION_KEYS is not set, but a calendar provider is configured. "
    "Generate a key with\n"
    "    python3 -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'\n"
    "and set TOKEN_ENCRYPTION_KEYS to it (see .env.example)."
)


def instance_path_setting(environ: Mapping[str, str] | None = None) -> str | None:
    """`ONCAL_INSTANCE_PATH` from the environment: where generated secrets, the demo's
    password and the default SQLite files live, instead of the checkout's `instance/`.

    Read before the other settings (they default to files in that folder), so only the
    environment sets it, not `.env`.
    """
    environ = os.environ if environ is None else environ
    return environ.get("ONCAL_INSTANCE_PATH") or None


def load_config(
    instance_path: Path,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
) -> dict[str, Any]:
    """Return the app's settings, validated, with derived defaults filled in.

    Raises `ConfigError` with a message that says how to fix the problem.
    """
    environ = os.environ if environ is None else environ
    dotenv_path = Path(".env") if dotenv_path is None else dotenv_path
    settings: dict[str, Any] = dict(DEFAULTS)
    if dotenv_path.is_file():
        settings.update(
            {k: v for k, v in dotenv_values(dotenv_path).items() if k in DEFAULTS and v}
        )
    settings.update({k: v for k, v in environ.items() if k in DEFAULTS and v})
    settings.update(overrides or {})

    mode = settings["ONCAL_MODE"]
    if mode not in MODES:
        raise ConfigError(f"ONCAL_MODE must be one of {', '.join(MODES)}, not {mode!r}.")
    for name in INTEGER_SETTINGS:
        try:
            settings[name] = int(settings[name])
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a whole number.") from None

    try:
        settings["LOGIN_SLOWDOWN_SECONDS"] = float(settings["LOGIN_SLOWDOWN_SECONDS"])
    except (TypeError, ValueError):
        raise ConfigError("LOGIN_SLOWDOWN_SECONDS must be a number of seconds.") from None
    if not 0 <= settings["LOGIN_SLOWDOWN_SECONDS"] <= 10:
        raise ConfigError("LOGIN_SLOWDOWN_SECONDS must be from 0 to 10.")

    settings["BASE_URL"] = str(settings["BASE_URL"]).rstrip("/")
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = f"sqlite:///{instance_path / 'oncal-feed.sqlite'}"
    if not settings["RATELIMIT_STORAGE_URI"]:
        settings["RATELIMIT_STORAGE_URI"] = f"sqlite:///{instance_path / 'ratelimit.sqlite'}"
    if not settings["QUEUE_URL"]:
        settings["QUEUE_URL"] = f"sqlite:///{instance_path / 'queue.sqlite'}"

    if not settings["SECRET_KEY"]:
        if mode == "production":
            raise ConfigError(MISSING_SECRET_KEY_HELP)
        settings["SECRET_KEY"] = _instance_secret(instance_path / "secret_key", _random_secret)
    if not settings["TOKEN_ENCRYPTION_KEYS"]:
        if mode == "production" and _any_provider_configured(settings):
            raise ConfigError(ENCRYPTION_KEY_HELP)
        settings["TOKEN_ENCRYPTION_KEYS"] = _instance_secret(
            instance_path / "token_key", lambda: Fernet.generate_key().decode()
        )
    keys = [k.strip() for k in str(settings["TOKEN_ENCRYPTION_KEYS"]).split(",") if k.strip()]
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            raise ConfigError(
                f"TOKEN_ENCRYPTION_KEYS entry {index + 1} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None
    settings["TOKEN_ENCRYPTION_KEYS"] = keys
    settings["GOOGLE_CONFIGURED"] = bool(
        settings["GOOGLE_CLIENT_ID"] and settings["GOOGLE_CLIENT_SECRET"]
    )
    settings["MICROSOFT_CONFIGURED"] = bool(
        settings["MICROSOFT_CLIENT_ID"] and settings["MICROSOFT_CLIENT_SECRET"]
    )
    # The built-in demo calendar provider (providers/demo.py) exists only in demo mode.
    settings["DEMO_CALENDAR_CONFIGURED"] = mode == "demo"
    settings["SOURCE_ALLOWED_NETWORKS"] = _networks(settings["SOURCE_ALLOWED_NETWORKS"])
    settings["PAGERDUTY_API_BASE"] = str(settings["PAGERDUTY_API_BASE"]).rstrip("/")
    _signin_settings(settings)
    settings["SESSION_COOKIE_HTTPONLY"] = True
    settings["SESSION_COOKIE_SAMESITE"] = "Lax"
    settings["SESSION_COOKIE_SECURE"] = settings["BASE_URL"].startswith("https://")
    return settings


def _networks(value: Any) -> tuple[IPv4Network | IPv6Network, ...]:
    """Parse SOURCE_ALLOWED_NETWORKS (a comma-separated string, or a list from tests)."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"SOURCE_ALLOWED_NETWORKS entry {text!r} is not an IP address or CIDR network."
            ) from None
    return tuple(networks)


def _words(value: Any) -> list[str]:
    """A comma-separated setting as a list of lower-case words (a list stays a list)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return [str(item).strip().lower() for item in items if str(item).strip()]


def _signin_settings(settings: dict[str, Any]) -> None:
    """Check and normalise the single sign-on, password link and SMTP settings."""
    providers = _words(settings["SIGNIN_PROVIDERS"])
    unknown = sorted(set(providers) - set(SIGNIN_PROVIDER_NAMES))
    if unknown:
        raise ConfigError(
            f"SIGNIN_PROVIDERS may list {', '.join(SIGNIN_PROVIDER_NAMES)}, "
            f"not {', '.join(unknown)}."
        )
    needs = {
        "google": ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"),
        "microsoft": ("MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET"),
        "oidc": ("OIDC_DISCOVERY_URL", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"),
    }
    for provider in providers:
        missing = [name for name in needs[provider] if not settings[name]]
        if missing:
            raise ConfigError(
                f"SIGNIN_PROVIDERS lists {provider}, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set (see .env.example)."
            )
    settings["SIGNIN_PROVIDERS"] = list(dict.fromkeys(providers))
    if not settings["MICROSOFT_DISCOVERY_URL"]:
        host = str(settings["MICROSOFT_AUTHORITY_HOST"]).rstrip("/")
        settings["MICROSOFT_DISCOVERY_URL"] = (
            f"{host}/{settings['MICROSOFT_TENANT_ID']}/v2.0/.well-known/openid-configuration"
        )
    settings["SIGNIN_ALLOWED_DOMAINS"] = [
        domain.lstrip("@") for domain in _words(settings["SIGNIN_ALLOWED_DOMAINS"])
    ]
    settings["SIGNIN_CREATE_ACCOUNTS"] = _flag(settings, "SIGNIN_CREATE_ACCOUNTS")
    if settings["SYNC_LEASE_SECONDS"] < 2 * settings["PROVIDER_TIMEOUT"]:
        # A call may take a whole timeout between two renewals; a shorter lease would be
        # taken over from a worker that is only waiting for an answer.
        raise ConfigError("SYNC_LEASE_SECONDS must be at least twice PROVIDER_TIMEOUT.")
    if settings["SYNC_RETRY_SECONDS"] < 0:
        raise ConfigError("SYNC_RETRY_SECONDS must be 0 or more.")
    if settings["PASSWORD_LINK_HOURS"] < 1:
        raise ConfigError("PASSWORD_LINK_HOURS must be at least 1.")
    security = str(settings["SMTP_SECURITY"]).strip().lower()
    if security not in SMTP_SECURITY_CHOICES:
        raise ConfigError(f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_CHOICES)}.")
    settings["SMTP_SECURITY"] = security
    if settings["SMTP_HOST"] and not settings["SMTP_FROM"]:
        raise ConfigError("SMTP_HOST is set but SMTP_FROM is not: set the sender address.")


def _flag(settings: Mapping[str, Any], name: str) -> bool:
    value = settings[name]
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}.")


def _any_provider_configured(settings: Mapping[str, Any]) -> bool:
    return bool(settings["GOOGLE_CLIENT_ID"] or settings["MICROSOFT_CLIENT_ID"])


def _random_secret() -> str:
    return secrets.token_urlsafe(48)


def _instance_secret(path: Path, make: Callable[[], str]) -> str:
    """Read a generated secret kept in the instance folder, creating it on first use.

    Several workers may start at once. The secret is written to a temporary file and
    hard-linked into place, so nobody reads a half-written file and the first one wins.
    """
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file owner-only from the first byte: it holds a key.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(make() + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker was first; everyone uses its secret
        finally:
            os.unlink(temporary)
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{path} is empty. Delete it, and a new secret is generated.")
    return value
