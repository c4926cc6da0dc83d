"""Feed rows kept in memory, dropped the moment PostgreSQL announces a change.

A 304 needs one feed row (joined with its owner and schedule) and no shift. Reading that
row is most of what a 304 costs (pool checkout, a round trip, result handling), so each web
process keeps the rows of the feeds it serves. Migration 0014 makes PostgreSQL
`NOTIFY oncal_feed_users`, in the writing transaction, with the public id of every feed
row that changes, `user:<id>` for a user row and `schedule:<id>` for a schedule row whose
feed-shaping columns change; each process `LISTEN`s on a connection of its own, in a
thread, and drops every row the payload names or that depends on the row it names.

Entries are trusted only while that listener is connected. When it is not (at start, after
the connection is lost, until it is back), the cache is empty and every request reads the
database, as it would with no cache at all. A change therefore reaches a process's feeds
once its notification arrives, a millisecond or so after the commit, instead of at once.

The race to close is a read that began before a change and is stored after its
notification arrived: that row would stay stale. Every notification advances an epoch,
and a row is stored only if the epoch did not move while it was being read.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
from cachetools import LRUCache
from prometheus_client import Gauge
from sqlalchemy.engine import make_url

from oncal_feed.db import Database
from oncal_feed.metrics import FEED_USER_CACHE_LISTENING

if TYPE_CHECKING:
    from oncal_feed.feeds.service import FeedRow

__all__ = [
    "CHANNEL",
    "FeedUserCache",
    "NoEcho",
    "hear_own_echo",
    "listen_for_user_changes",
    "user_cache_for",
]

log = logging.getLogger(__name__)

CHANNEL = "oncal_feed_users"
# The payload migration 0005 sends when the table is truncated: forget everyone.
EVERYONE = "*"
# This often (and before trusting a new connection) the listener notifies itself on a
# channel of its own and waits for the echo: proof that notifications reach it, which a
# dead connection, or a transaction-mode pooler in the way, would fail.
PING_SECONDS = 10.0
ECHO_TIMEOUT_SECONDS = 5.0
RETRY_SECONDS = (0.5, 30.0)  # first and longest wait between connection attempts
# TCP keepalives and a send timeout, so a vanished server or network is noticed in about
# 15 s rather than the operating system's many minutes.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "application_name": "oncal-feed listener",
}

Listener = Callable[["FeedUserCache", threading.Event], None]


class _TaggedLRU(LRUCache[str, "FeedRow"]):
    """An LRU of feed rows by public id that also finds them by the rows they depend on
    (`FeedRow.tags`), and forgets them there when evicted."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.by_tag: dict[str, set[str]] = {}

    def __setitem__(self, key: str, value: FeedRow) -> None:
        self._untag(key)
        super().__setitem__(key, value)
        for tag in value.tags:
            self.by_tag.setdefault(tag, set()).add(key)

    def __delitem__(self, key: str) -> None:
        self._untag(key)
        super().__delitem__(key)

    def _untag(self, key: str) -> None:
        old = super().get(key)
        for tag in old.tags if old is not None else ():
            keys = self.by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_tag[tag]

    def drop(self, name: str) -> None:
        """Forget the row `name` (a public id) and every row tagged `name`."""
        self.pop(name, None)
        for key in list(self.by_tag.get(name, ())):
            self.pop(key, None)

    def clear(self) -> None:
        """Forget every row."""
        super().clear()
        self.by_tag.clear()


class FeedUserCache:
    """A thread-safe LRU of `FeedRow` by public id, valid while its listener listens.

    `listener` runs in a daemon thread of each process that uses the cache (it is started
    on first use, so a process forked after the cache was built gets its own) and reports
    through `listening`, `changed` and `lost`. Without a listener the cache stays empty
    until someone calls `listening` (the tests do). `listening_gauge` is set to 1 while
    rows are trusted, else 0.
    """

    def __init__(
        self,
        entries: int,
        listener: Listener | None = None,
        listening_gauge: Gauge = FEED_USER_CACHE_LISTENING,
    ) -> None:
        self.entries = entries
        self._listener = listener
        self._listening_gauge = listening_gauge
        # Not thread-safe by itself (even a read reorders): every use holds the lock.
        self._rows = _TaggedLRU(maxsize=max(entries, 1))
        self._lock = threading.Lock()
        self._epoch = 0
        self._live = False
        self._pid: int | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------ request threads

    def get(self, public_id: str) -> FeedRow | None:
        """Return the cached row of `public_id` (marking it recently used), or None."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            return self._rows.get(public_id)

    def epoch(self) -> int | None:
        """Take before reading a row to `put`; None while rows cannot be trusted."""
        with self._lock:
            return self._epoch if self._live else None

    def put(self, feed: FeedRow, epoch: int | None) -> None:
        """Keep `feed`, read after `epoch()` returned `epoch`, unless anything changed since."""
        with self._lock:
            if epoch is None or epoch != self._epoch:
                return
            self._rows[feed.public_id] = feed

    def replace(self, old: FeedRow, new: FeedRow) -> None:
        """Swap in `new` for `old` (same feed, columns changed by this process), if `old`
        is still the entry: a notification in between has removed it, and wins."""
        with self._lock:
            if self._rows.get(old.public_id) is old:
                self._rows[old.public_id] = new

    # ------------------------------------------------------------ the listener's reports

    def listening(self) -> None:
        """The listener is subscribed: rows read from now on can be trusted."""
        with self._lock:
            self._restart(live=True)

    def changed(self, name: str) -> None:
        """The row `name` changed: a feed's public id, `user:<id>` or `schedule:<id>`
        (`*`: any row may have)."""
        with self._lock:
            self._epoch += 1
            if name == EVERYONE:
                self._rows.clear()
            else:
                self._rows.drop(name)

    def lost(self) -> None:
        """The listener is not subscribed: forget everything and read the database."""
        with self._lock:
            self._restart(live=False)

    def _restart(self, live: bool) -> None:
        """Forget every row and every epoch taken; trust new rows if `live` (lock held)."""
        self._rows.clear()
        self._epoch += 1
        self._live = live
        # Under the lock, so the gauge ends as the last report left the cache.
        self._listening_gauge.set(1 if live else 0)

    # ------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the parent's rows but not its listener thread.
            self._pid = os.getpid()
            self._restart(live=False)
            self._stop = threading.Event()
            stop = self._stop
        if self._listener is not None:
            thread = threading.Thread(
                target=self._listener, args=(self, stop), name="oncal-feed-listener", daemon=True
            )
            thread.start()

    def close(self) -> None:
        """Stop this process's listener (it exits within `PING_SECONDS`) and empty the cache."""
        self._stop.set()
        self.lost()


def listen_for_user_changes(database_url: str, cache: FeedUserCache, stop: threading.Event) -> None:
    """Subscribe to `oncal_feed_users` and report to `cache` until `stop` is set.

    Reconnects after any failure, waiting longer each time up to the longest retry.
    """
    # libpq takes the SQLAlchemy URL once the driver name is plain "postgresql".
    conninfo = make_url(database_url).set(drivername="postgresql")
    dsn = conninfo.render_as_string(hide_password=False)
    first_wait, longest_wait = RETRY_SECONDS
    wait = first_wait
    echo = f"oncal_feed_echo_{secrets.token_hex(8)}"
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, **CONNECT_OPTIONS) as connection:
                connection.execute(f"LISTEN {CHANNEL}")
                connection.execute(f"LISTEN {echo}")
                hear_own_echo(connection, echo, cache)
                cache.listening()
                wait = first_wait
                while not stop.is_set():
                    for note in connection.notifies(timeout=PING_SECONDS):
                        if note.channel == CHANNEL:
                            cache.changed(note.payload)
                    hear_own_echo(connection, echo, cache)
        except Exception as exc:  # any failure: read the database until listening again
            if not stop.is_set():  # when closing, the connection may go first
                # The type only: a connection error's message may quote the connection string.
                log.warning("feed user listener disconnected: %s", type(exc).__name__)
        finally:
            cache.lost()
        stop.wait(wait)
        wait = min(wait * 2, longest_wait)


def user_cache_for(database: Database, entries: int) -> FeedUserCache | None:
    """The user cache for feeds served from `database`, listening to it.

    None when `entries` is 0 or the database is SQLite, which has no notifications: every
    feed request then reads its feed row.
    """
    if entries <= 0 or database.engine.dialect.name != "postgresql":
        return None
    return FeedUserCache(entries, partial(listen_for_user_changes, database.url))


class NoEcho(Exception):
    """The listener's notification to itself did not come back."""


def hear_own_echo(
    connection: psycopg.Connection,
    echo: str,
    cache: FeedUserCache,
    timeout: float = ECHO_TIMEOUT_SECONDS,
) -> None:
    """Notify `echo` and wait for it, reporting the changes heard meanwhile; else `NoEcho`."""
    connection.execute(f"NOTIFY {echo}")
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        # Whole batches: leaving psycopg's generator early drops the rest of its batch.
        notes = list(connection.notifies(timeout=remaining, stop_after=1))
        if not notes:  # the time ran out
            break
        for note in notes:
            if note.channel == CHANNEL:
                cache.changed(note.payload)
        if any(note.channel == echo for note in notes):
            return
    raise NoEcho(echo)
