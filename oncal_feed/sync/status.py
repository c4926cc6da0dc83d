"""The status store: what one connection's remote calendar holds, as `plan.Record`s.

One row of `sync_records` per (connection, shift), read once per sync into a
`StatusStore` and changed through `StatusStore.change()`: a transaction whose puts and
drops are sent as one executemany per kind of statement when it closes, and mirrored in
the store once committed. The planner and the engine see only `Record`s; column names
live here.

Imports the models and `sync.plan` (for `Record`); nothing else of `sync`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.orm import Session, sessionmaker

from oncal_feed.models import SyncRecord
from oncal_feed.sync.lease import transaction
from oncal_feed.sync.plan import Record

__all__ = ["StatusChange", "StatusStore"]

_RECORDS = cast(Table, SyncRecord.__table__)
_SQL_CHUNK = 500
# Record field -> column; `updated_at` is stamped on every write and is not a field.
_COLUMNS = {
    "shift_id": "shift_id", "uid": "shift_uid", "state": "state", "remote_id": "remote_id",
    "transaction_id": "transaction_id", "content_hash": "content_hash",
    "remote_etag": "remote_etag",
}  # fmt: skip


def _from_row(row: Any) -> Record:
    return Record(**{name: row[column] for name, column in _COLUMNS.items()})


def _to_row(record: Record, updated_at: datetime) -> dict[str, Any]:
    row = {column: getattr(record, name) for name, column in _COLUMNS.items()}
    row["updated_at"] = updated_at
    return row


class StatusStore:
    """One connection's records by shift id, as the database holds them."""

    def __init__(self, connection_id: int, records: dict[int, Record]) -> None:
        self.connection_id = connection_id
        self._records = records

    @classmethod
    def load(cls, session: Session, connection_id: int) -> StatusStore:
        """Read every record of the connection."""
        rows = session.execute(
            select(*[_RECORDS.c[column] for column in _COLUMNS.values()]).where(
                _RECORDS.c.connection_id == connection_id
            )
        ).mappings()
        return cls(connection_id, {row["shift_id"]: _from_row(row) for row in rows})

    def get(self, shift_id: int) -> Record | None:
        """The shift's record, or None."""
        return self._records.get(shift_id)

    def __contains__(self, shift_id: object) -> bool:
        return shift_id in self._records

    def shift_ids(self) -> list[int]:
        """The shift ids that have a record."""
        return list(self._records)

    def records(self) -> list[Record]:
        """Every record (for the planner)."""
        return list(self._records.values())

    def delete_all(self, session: Session) -> None:
        """Delete every record in `session`'s transaction (the calendar was replaced).

        The store is emptied at once: the caller commits before anything else reads it.
        """
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == self.connection_id))
        self._records.clear()

    @contextmanager
    def change(
        self, factory: sessionmaker[Session], clock: Callable[[], datetime]
    ) -> Iterator[StatusChange]:
        """A transaction on the store; its changes are sent, committed, then mirrored."""
        with transaction(factory) as session:
            change = StatusChange(session, self, clock)
            yield change
            change.flush()
        self._records.update(change.puts)
        for shift_id in change.drops:
            self._records.pop(shift_id, None)


class StatusChange:
    """Puts and drops of records within one transaction, sent together by `flush()`."""

    def __init__(self, session: Session, store: StatusStore, clock: Callable[[], datetime]) -> None:
        self.session = session
        self.store = store
        self.clock = clock
        self.puts: dict[int, Record] = {}
        self.drops: set[int] = set()

    def get(self, shift_id: int) -> Record | None:
        """The shift's record as this change leaves it so far."""
        if shift_id in self.drops:
            return None
        return self.puts.get(shift_id) or self.store.get(shift_id)

    def put(self, record: Record) -> None:
        """Insert or replace the shift's record."""
        self.puts[record.shift_id] = record
        self.drops.discard(record.shift_id)

    def mark(self, shift_id: int, **changes: Any) -> None:
        """Change some fields of the shift's existing record (e.g. `state="deleting"`)."""
        record = self.get(shift_id)
        if record is not None:
            self.put(dataclasses.replace(record, **changes))

    def drop(self, shift_id: int) -> None:
        """Delete the shift's record."""
        self.puts.pop(shift_id, None)
        self.drops.add(shift_id)

    def flush(self) -> None:
        """Send the batched statements (the caller's transaction commits them)."""
        store, cid = self.store, self.store.connection_id
        stamp = self.clock()
        connection = self.session.connection()
        inserts = [_to_row(r, stamp) for sid, r in self.puts.items() if sid not in store]
        updates = [_to_row(r, stamp) for sid, r in self.puts.items() if sid in store]
        if inserts:
            connection.execute(
                _RECORDS.insert(), [{"connection_id": cid, **row} for row in inserts]
            )
        if updates:
            columns = [*_COLUMNS.values(), "updated_at"]
            connection.execute(
                _RECORDS.update()
                .where(
                    _RECORDS.c.connection_id == cid,
                    _RECORDS.c.shift_id == bindparam("key_shift_id"),
                )
                .values({name: bindparam(name) for name in columns if name != "shift_id"}),
                [{"key_shift_id": row["shift_id"], **row} for row in updates],
            )
        gone = [sid for sid in self.drops if sid in store]
        for offset in range(0, len(gone), _SQL_CHUNK):
            connection.execute(
                _RECORDS.delete().where(
                    _RECORDS.c.connection_id == cid,
                    _RECORDS.c.shift_id.in_(gone[offset : offset + _SQL_CHUNK]),
                )
            )
