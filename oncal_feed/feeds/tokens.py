"""Feed tokens: signed, non-expiring, revocable by bumping the feed's generation.

A token is `URLSafeSerializer(SECRET_KEY, salt="oncal-feed.feed").dumps([public_id, generation])`
of a `Feed`. It never expires (calendar apps keep a subscription URL for years); replacing
the URL bumps `feeds.generation`, and a token whose generation is not the current one is
dead, as is every token of a deleted feed.

The payload is signed, not encrypted: anyone holding a feed URL can base64-decode the
feed's public id (for a person's first feed, their `u_...` id the API uses, which grants
nothing by itself) and the feed generation (how often the URL was replaced). That is
deliberate and documented in docs/deployment.md: making the token opaque would end every
subscription handed out so far, and the URL is already the secret that grants the feed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

__all__ = [
    "FEED_PATH",
    "NOT_FOUND_MESSAGE",
    "FeedLinks",
    "feed_links",
    "make_feed_token",
    "reachable_only_here",
    "read_feed_token",
]

SALT = "oncal-feed.feed"
# Route of the feed view, with the token in the path (never the query string, which more
# proxies and analytics tools log). The view's rule is built from it.
FEED_PATH = "/feeds/{token}.ics"
# Real tokens are about 90 characters; anything far longer is not worth an HMAC.
_MAX_TOKEN_LENGTH = 256

# One message for every dead link, so a 404 tells nothing about why (forged or revoked).
NOT_FOUND_MESSAGE = (
    "There is no calendar feed at this address. Feed links stop working when they are "
    "replaced; copy the current one from your settings page."
)


@lru_cache(maxsize=4)
def _serializer(secret_key: str) -> URLSafeSerializer:
    # SHA-256 rather than itsdangerous' default SHA-1: not broken for HMAC, but one less
    # question in a security review, for 16 more characters of URL.
    return URLSafeSerializer(secret_key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})


class _Addressable(Protocol):
    """A `Feed`, or a row read from one: what a token names."""

    @property
    def public_id(self) -> str: ...

    @property
    def generation(self) -> int: ...


def make_feed_token(secret_key: str, feed: _Addressable) -> str:
    """Return the token of `feed`'s current generation."""
    return _serializer(secret_key).dumps([feed.public_id, feed.generation])


def read_feed_token(secret_key: str, token: str) -> tuple[str, int] | None:
    """Return `(public_id, generation)` from a genuine token, or None for anything else.

    Forged, truncated, garbled, oversized or differently salted tokens all give None;
    this never raises. So do other spellings of a genuine token (base64 decoding
    forgives a trailing `=`, for one): only the exact string we issued is a token.
    Whether the generation is still current is the caller's check.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    serializer = _serializer(secret_key)
    try:
        payload = serializer.loads(token)
    except (BadData, ValueError, TypeError, UnicodeError):
        return None
    if not (isinstance(payload, list) and len(payload) == 2):
        return None
    public_id, generation = payload
    # bool is an int in Python; a signed payload never holds one, but be exact anyway.
    if not isinstance(public_id, str) or type(generation) is not int or generation < 1:
        return None
    if serializer.dumps([public_id, generation]) != token:  # signing is deterministic
        return None
    return public_id, generation


@dataclass(frozen=True)
class FeedLinks:
    """A feed's URL twice: `https` for web use, `webcal` to open a calendar app."""

    https: str
    webcal: str


def feed_links(feed: _Addressable) -> FeedLinks:
    """Return `feed`'s current URLs, from the current app's SECRET_KEY and BASE_URL."""
    config = current_app.config
    token = make_feed_token(config["SECRET_KEY"], feed)
    url = config["BASE_URL"] + FEED_PATH.format(token=token)
    # webcal:// asks the OS to hand the URL to the calendar app as a subscription.
    return FeedLinks(https=url, webcal="webcal://" + url.split("://", 1)[1])


# Hosts that name this machine only: Google's and Microsoft's servers, which fetch a
# subscribed feed for their web apps, reach their own machines at these addresses.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})  # noqa: S104


def reachable_only_here(base_url: str) -> bool:
    """Whether feed URLs on `base_url` work only for calendar apps on this machine.

    True for localhost, 127.0.0.0/8 and ::1 (and names under .localhost), where Apple
    Calendar, Thunderbird or Outlook desktop here can subscribe, but Google Calendar and
    Outlook on the web, which fetch feeds from their own servers, cannot.
    """
    host = (urlsplit(base_url).hostname or "").lower()
    return host in _LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")
