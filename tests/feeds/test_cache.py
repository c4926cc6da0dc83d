"""The feed caches: size-bounded LRU of bytes, first-seen dates of ETags, and Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from oncal_feed.feeds.cache import _ENTRY_OVERHEAD, ByteLRU, SharedBodies
from tests.conftest import delete_keys
from tests.processes import free_port

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


def cost(key: str, value: bytes) -> int:
    """What one entry counts against the budget."""
    return len(key) + len(value) + _ENTRY_OVERHEAD


def test_evicts_least_recently_used_to_stay_within_bytes() -> None:
    """Entries go oldest-used first once the total passes the budget."""
    cache = ByteLRU(max_bytes=3 * cost("a", b"x" * 100))
    for key in "abc":
        cache.put(key, b"x" * 100)
    assert cache.get("a") == b"x" * 100  # now "b" is the least recently used
    cache.put("d", b"x" * 100)
    assert (cache.get("b"), len(cache)) == (None, 3)
    assert all(cache.get(k) for k in "acd")
    assert cache.size == 3 * cost("a", b"x" * 100) <= cache.max_bytes
    assert (cache.hits, cache.misses) == (4, 1)


def test_replacing_a_key_recounts_its_size() -> None:
    """A new value for a key replaces the old one's size, it doesn't add to it."""
    cache = ByteLRU(max_bytes=10_000)
    cache.put("k", b"x" * 1000)
    cache.put("k", b"y" * 10)
    assert (cache.size, cache.get("k")) == (cost("k", b"y" * 10), b"y" * 10)


def test_a_value_bigger_than_the_budget_is_not_kept() -> None:
    """One huge body must not flush everything else out."""
    cache = ByteLRU(max_bytes=1000)
    cache.put("small", b"s")
    cache.put("huge", b"h" * 1000)
    assert (cache.get("huge"), cache.get("small")) == (None, b"s")


def test_zero_budget_disables() -> None:
    """FEED_*_CACHE_BYTES=0 turns a cache off."""
    cache = ByteLRU(max_bytes=0)
    cache.put("k", b"v")
    assert (cache.get("k"), len(cache), cache.size) == (None, 0, 0)


def test_clear() -> None:
    """clear() empties the cache and its size."""
    cache = ByteLRU(max_bytes=10_000)
    cache.put("k", b"v")
    cache.clear()
    assert (len(cache), cache.size, cache.get("k")) == (0, 0, None)


# ---------------------------------------------------------------- shared through Redis


@pytest.fixture
def shared(redis_url: str) -> Iterator[SharedBodies]:
    """A shared cache under a namespace of this test's own, emptied afterwards."""
    cache = SharedBodies(redis_url, f"oncal-test:{uuid.uuid4().hex}:")
    yield cache
    delete_keys(cache.client, cache.namespace + "*")
    cache.close()


def test_shared_bodies_round_trip_under_their_namespace(
    shared: SharedBodies, redis_url: str
) -> None:
    """What one process stores another reads; other namespaces (deployments) don't."""
    shared.put("tag1", b"\x1f\x8b body")
    other_process = SharedBodies(redis_url, shared.namespace)
    other_deployment = SharedBodies(redis_url, shared.namespace + "v2:")
    try:
        assert other_process.get("tag1") == b"\x1f\x8b body"
        assert other_process.get("tag2") is None
        assert other_deployment.get("tag1") is None
        assert 0 < shared.client.ttl(shared.namespace + "tag1") <= 2 * 24 * 3600
    finally:
        other_process.close()
        other_deployment.close()


def test_an_unreachable_redis_is_skipped_for_a_while(caplog: pytest.LogCaptureFixture) -> None:
    """A failure logs once and pauses the cache; after the pause it is tried again."""
    now = [1000.0]
    cache = SharedBodies(
        f"redis://127.0.0.1:{free_port()}/0", "oncal-test:", pause=30, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, logger="oncal_feed.feeds.cache"):
        assert cache.get("tag") is None
        cache.put("tag", b"body")
        assert cache.get("tag") is None
        now[0] += 31
        assert cache.get("tag") is None
    warnings = [r.getMessage() for r in caplog.records]
    assert (
        warnings
        == ["shared feed cache unavailable (ConnectionError); rendering locally for 30 s"] * 2
    )
    cache.close()
