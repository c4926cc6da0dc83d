"""A `limits` storage in a SQLite file, so every worker on one machine shares its counts.

The embedded default of the sign-in rate limits (`RATELIMIT_STORAGE_URI`, by default
`sqlite:///<instance>/ratelimit.sqlite`): `memory://` counts in each gunicorn worker
separately, which multiplied every limit by the number of workers, and Redis is a
server to run. `limits` ships no SQLite storage; this one implements the counter part of
its `Storage` interface (what the fixed-window strategy uses). Importing this module
registers the `sqlite` scheme with `limits`.

Each call opens its own connection: calls are rare (sign-in attempts only) and a
connection costs tens of microseconds, while a shared one would need locking across
threads and greenlets.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from limits.storage import Storage

from oncal_feed.db import create_private_file

__all__ = ["SQLiteStorage"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters "
    "(key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires)",
)


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite file: `sqlite:////path/to/ratelimit.sqlite`."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        """Open (creating when needed, owner-only) the file the URI names."""
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.removeprefix("sqlite:///")
        if not self.path or self.path == ":memory:":
            raise ValueError("the sqlite rate-limit storage needs a file: sqlite:////path/file")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        create_private_file(self.path)
        # WAL: readers don't wait for a writer. Set outside a transaction (SQLite says so).
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @property
    def base_exceptions(self) -> type[Exception]:
        """Errors that mean "storage unavailable" (Flask-Limiter then counts in memory)."""
        return sqlite3.Error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we say BEGIN IMMEDIATE ourselves, so a read-then-write
        # takes the write lock first and two workers never lose an increment.
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to the counter; a new or expired one starts over, for `expiry` s."""
        now = time.time()
        with self._transaction() as db:
            # Every expired counter, not only this one: the table stays as small as the
            # attempts of the last window (the index makes it a range delete).
            db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
            row = db.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value "
                "RETURNING value",
                (key, amount, now + expiry),
            ).fetchone()
        return int(row[0])

    def get(self, key: str) -> int:
        """The counter's value (0 when absent or expired)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        """When (epoch seconds) the counter's window ends; now when there is none."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT expires FROM counters WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
        return float(row[0]) if row else now

    def check(self) -> bool:
        """Tell whether the file can be read."""
        try:
            with self._transaction() as db:
                db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Remove every counter; return how many there were."""
        with self._transaction() as db:
            return db.execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        """Remove one counter."""
        with self._transaction() as db:
            db.execute("DELETE FROM counters WHERE key = ?", (key,))
