"""The per-connection lease: one worker at a time syncs a connection, across machines.

A lease is two columns of the connection (`lease_owner`, `lease_expires_at`) taken and
renewed with conditional UPDATEs, so it works on every database and on any number of
worker machines. A worker killed mid-sync is picked up once its lease runs out: taking
the lease makes the connection due again at the lease's expiry.

Imports the models only; nothing else of `sync`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import case, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from oncal_feed.models import CalendarConnection

__all__ = [
    "ACTIVE_STATUSES",
    "LEASE_TTL",
    "Clock",
    "Lease",
    "LeaseLost",
    "default_owner",
    "rowcount",
    "transaction",
    "why_not_acquired",
]

LEASE_TTL = timedelta(minutes=2)
# Connections in these states are synced; the others (paused, disconnected) are left alone.
ACTIVE_STATUSES = ("active", "error")

Unavailable = Literal["busy", "inactive", "missing"]


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: object) -> int:
    """The rows an UPDATE matched (`Session.execute` is typed as returning any `Result`)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def default_owner() -> str:
    """A lease owner name unique to this host, process, thread and call."""
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{threading.get_ident() % 100_000}:{uuid.uuid4().hex[:8]}"


class Clock:
    """The sync's `now`, moving on with real time (for leases and finishing stamps)."""

    def __init__(self, now: datetime) -> None:
        self.start = now
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        """The sync's start plus the real time elapsed since."""
        return self.start + timedelta(seconds=time.monotonic() - self._t0)


class LeaseLost(Exception):
    """Another worker took the lease over (ours expired): stop without writing status."""


class Lease:
    """One connection's lease as held (or wanted) by `owner`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        connection_id: int,
        owner: str,
        ttl: timedelta,
        clock: Clock,
    ) -> None:
        self.factory = factory
        self.connection_id = connection_id
        self.owner = owner
        self.ttl = ttl
        self.clock = clock
        self._renewed = clock.start

    def acquire(self, now: datetime) -> bool:
        """Take the lease with one conditional UPDATE: portable and cross-machine.

        The UPDATE also clears `dirty_since` (every change committed before this point
        will be read by this sync) and `overdue_since` (the wait is over), and makes the
        connection due again at the lease's expiry, so a worker killed mid-sync is picked
        up by the sweep once its lease runs out.
        """
        expires = now + self.ttl
        self._renewed = now
        with transaction(self.factory) as session:
            result = session.execute(
                update(CalendarConnection)
                .where(
                    CalendarConnection.id == self.connection_id,
                    CalendarConnection.status.in_(ACTIVE_STATUSES),
                    or_(
                        CalendarConnection.lease_owner.is_(None),
                        CalendarConnection.lease_expires_at < now,
                        CalendarConnection.lease_owner == self.owner,
                    ),
                )
                .values(
                    lease_owner=self.owner,
                    lease_expires_at=expires,
                    last_sync_started_at=now,
                    dirty_since=None,
                    sync_due_at=expires,
                    overdue_since=None,
                )
                .execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    def keep(self) -> None:
        """Renew the lease once a third of it has passed since it was taken or last renewed."""
        if self.clock() - self._renewed >= self.ttl / 3:
            self.renew()

    def renew(self) -> None:
        """Extend the lease from the clock's now; raise `LeaseLost` when it is not ours."""
        now = self.clock()
        self._renewed = now
        with transaction(self.factory) as session:
            result = session.execute(
                update(CalendarConnection)
                .where(
                    CalendarConnection.id == self.connection_id,
                    CalendarConnection.lease_owner == self.owner,
                )
                .values(
                    lease_expires_at=now + self.ttl,
                    # A change committed during the sync set its own (earlier) due time.
                    sync_due_at=case(
                        (CalendarConnection.dirty_since.is_(None), now + self.ttl),
                        else_=CalendarConnection.sync_due_at,
                    ),
                )
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) != 1:
                raise LeaseLost


def why_not_acquired(
    factory: sessionmaker[Session], connection_id: int
) -> tuple[Unavailable, str | None]:
    """Say why the lease was not ours, and the connection's provider (None when missing)."""
    with factory() as session:
        row = session.execute(
            select(CalendarConnection.status, CalendarConnection.provider).where(
                CalendarConnection.id == connection_id
            )
        ).one_or_none()
    if row is None:
        return "missing", None
    return ("busy" if row.status in ACTIVE_STATUSES else "inactive"), row.provider
