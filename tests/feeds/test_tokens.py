"""Feed tokens: signing, every kind of bad token, links and rotation."""

from __future__ import annotations

import hashlib
import re

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from oncal_feed.feeds.tokens import (
    SALT,
    FeedLinks,
    feed_links,
    make_feed_token,
    read_feed_token,
)
from oncal_feed.models import Feed

KEY = "k" * 48


def person(public_id: str = "u_abc123", generation: int = 1) -> Feed:
    """An unsaved feed: tokens need only the public id and generation."""
    return Feed(public_id=public_id, generation=generation)


def signed(payload: object, key: str = KEY, salt: str = SALT) -> str:
    """A token with our signing scheme around any payload."""
    serializer = URLSafeSerializer(key, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})
    return serializer.dumps(payload)


def test_round_trip_and_url_safety() -> None:
    """A token carries the public id and generation, in URL-safe characters."""
    token = make_feed_token(KEY, person("u_Zx-9", 7))
    assert read_feed_token(KEY, token) == ("u_Zx-9", 7)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)
    assert make_feed_token(KEY, person("u_Zx-9", 7)) == token  # no timestamp, no expiry


def test_generation_and_user_change_the_token() -> None:
    """Each generation of each user has its own token."""
    tokens = {
        make_feed_token(KEY, person("u_a", 1)),
        make_feed_token(KEY, person("u_a", 2)),
        make_feed_token(KEY, person("u_b", 1)),
    }
    assert len(tokens) == 3


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def bad_tokens() -> dict[str, object]:
    """Every shape of bad token we can think of, by name."""
    good = make_feed_token(KEY, person())
    payload, signature = good.rsplit(".", 1)
    return {
        "forged signature": f"{payload}.{_flip(signature, 3)}",
        "forged payload": f"{_flip(payload, 2)}.{signature}",
        "truncated": good[:-1],
        "half": good[: len(good) // 2],
        "no signature": payload,
        "signature only": signature,
        "empty": "",
        "garbage": "not-a-token",
        "dots": "...",
        "non-ascii": "äöü.ß",
        "other key": make_feed_token("x" * 48, person()),
        "other salt": signed(["u_abc123", 1], salt="oncal-feed.oauth-state"),
        "default digest": URLSafeSerializer(KEY, salt=SALT).dumps(["u_abc123", 1]),
        "dict payload": signed({"u": "u_abc123", "g": 1}),
        "short payload": signed(["u_abc123"]),
        "long payload": signed(["u_abc123", 1, 2]),
        "string generation": signed(["u_abc123", "1"]),
        "bool generation": signed(["u_abc123", True]),
        "zero generation": signed(["u_abc123", 0]),
        "float generation": signed(["u_abc123", 1.0]),
        "numeric id": signed([42, 1]),
        "oversized": good + "A" * 300,
        "not a string": 12345,
    }


@pytest.mark.parametrize("name", sorted(bad_tokens()))
def test_bad_tokens_read_as_none(name: str) -> None:
    """Forged, truncated, garbled, wrongly keyed or salted, or odd payloads: None, no raise."""
    assert read_feed_token(KEY, bad_tokens()[name]) is None  # type: ignore[arg-type]


@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    """Nothing a client puts in the path makes reading a token raise."""
    assert read_feed_token(KEY, text) is None


def test_feed_links_use_base_url_and_both_schemes(app: Flask) -> None:
    """https and webcal URLs with the token in the path, from the app's settings."""
    user = person("u_links", 3)
    with app.app_context():
        links = feed_links(user)
    token = make_feed_token(app.config["SECRET_KEY"], user)
    assert isinstance(links, FeedLinks)
    assert links.https == f"https://oncal.example.test/feeds/{token}.ics"
    assert links.webcal == f"webcal://oncal.example.test/feeds/{token}.ics"
