"""The feed caches: size-bounded LRU of bytes, and first-seen dates of ETags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oncal_feed.feeds.cache import _ENTRY_OVERHEAD, ByteLRU, FirstSeen

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


def test_first_seen_keeps_the_first_date_and_forgets_the_oldest() -> None:
    """A tag keeps the date it was first seen; past the bound, the least recent goes."""
    seen = FirstSeen(max_entries=2)
    assert seen.get("a", T0) == T0
    assert seen.get("a", T0 + timedelta(hours=1)) == T0
    seen.get("b", T0)
    seen.get("a", T0)  # "b" is now the least recently used
    seen.get("c", T0)
    assert seen.get("b", T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)  # forgotten
    assert seen.get("a", T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)
