"""Caches for feeds: in-process ones for rendered bytes (by size) and validators (by
count), and an optional one in Redis that every web process shares.

Nothing here has to be invalidated or agree across processes, because every key names
its content exactly (a content hash or a strong ETag).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from cachetools import LRUCache

__all__ = ["ByteLRU", "SharedBodies"]

log = logging.getLogger(__name__)

# What a dict slot, a key string and a bytes object cost beyond their characters, roughly,
# so a budget of many small entries is not overrun by bookkeeping.
_ENTRY_OVERHEAD = 160


def _entry_cost(entry: tuple[bytes, int]) -> int:
    return entry[1]


class ByteLRU:
    """A thread-safe least-recently-used map of str to bytes, bounded by total size.

    A value larger than the whole budget is not kept. `max_bytes=0` disables the cache.
    cachetools' `LRUCache` does the bookkeeping; each entry is kept with its cost (key,
    value and overhead), since `getsizeof` sees only the stored value. cachetools is not
    thread-safe (even a read reorders), so every call holds the lock.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: LRUCache[str, tuple[bytes, int]] = LRUCache(
            maxsize=max_bytes, getsizeof=_entry_cost
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value) + _ENTRY_OVERHEAD

    def get(self, key: str) -> bytes | None:
        """Return the value for `key` (marking it recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            return entry[0]

    def put(self, key: str, value: bytes) -> None:
        """Store `value`, evicting the least recently used entries to stay in budget."""
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return
        with self._lock:
            self._entries[key] = (value, cost)

    @property
    def size(self) -> int:
        """Bytes accounted to the entries held now."""
        return int(self._entries.currsize)

    def __len__(self) -> int:
        """Number of entries held now."""
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()


class SharedBodies:
    """Feed bodies in Redis, keyed by ETag: rendered once per change for every process.

    Without it each gunicorn worker on each machine renders a feed once for itself after
    every change. It is a cache and nothing more: when Redis fails or is slow, feeds are
    rendered locally and Redis is left alone for `pause` seconds, so an outage costs
    each process one timeout, not one per request.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        ttl_seconds: int = 2 * 24 * 3600,
        timeout: float = 0.25,
        pause: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.namespace = namespace
        # Tags name a day (feed windows are whole days), so two days outlive every use.
        self.ttl_seconds = ttl_seconds
        self.pause = pause
        self.clock = clock
        self._paused_until = 0.0

    def get(self, key: str) -> bytes | None:
        """Return the body stored under `key`, or None when absent or Redis is unwell."""
        if self.clock() < self._paused_until:
            return None
        try:
            value = self.client.get(self.namespace + key)
        except redis.RedisError as exc:
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        """Store `value` under `key` for a while; failures are logged, never raised."""
        if self.clock() < self._paused_until:
            return
        try:
            self.client.set(self.namespace + key, value, ex=self.ttl_seconds)
        except redis.RedisError as exc:
            self._failed(exc)

    def close(self) -> None:
        """Close the connections to Redis."""
        self.client.close()

    def _failed(self, exc: redis.RedisError) -> None:
        self._paused_until = self.clock() + self.pause
        # The type only: connection errors name the host, never a secret, but be sure.
        log.warning(
            "shared feed cache unavailable (%s); rendering locally for %.0f s",
            type(exc).__name__,
            self.pause,
        )
