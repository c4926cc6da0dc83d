"""`oncal_feed.db`: the autocommit pool and retrying on a connection the server dropped."""

from __future__ import annotations

import socket
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from sqlalchemy import Table, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from oncal_feed import create_app
from oncal_feed.db import (
    COPY_FROM_ROWS,
    Database,
    get_database,
    insert_rows,
    utcnow,
    with_reconnect,
)
from oncal_feed.models import User


class _Dropped(Exception):
    """Stands in for the driver's exception."""


def _dbapi_error(invalidated: bool) -> DBAPIError:
    return DBAPIError(
        "SELECT 1", {}, _Dropped("server closed the connection"), connection_invalidated=invalidated
    )


def test_a_dropped_connection_is_retried_once() -> None:
    """The first failure on a dead connection is retried; the second is not hidden."""
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _dbapi_error(invalidated=True)
        return "ok"

    with pytest.raises(DBAPIError):
        with_reconnect(flaky)
    assert len(calls) == 2


def test_other_database_errors_are_not_retried() -> None:
    """A failing statement on a live connection is an answer, not a reason to repeat it."""
    calls = []

    def failing() -> None:
        calls.append(1)
        raise _dbapi_error(invalidated=False)

    with pytest.raises(DBAPIError):
        with_reconnect(failing)
    assert len(calls) == 1


def test_autocommit_engine_commits_each_statement(app: Flask) -> None:
    """A write on it is visible to other connections without a commit call."""
    database = get_database(app)
    with database.autocommit_engine.connect() as connection:
        connection.execute(text("UPDATE users SET display_name = 'x' WHERE id = -1"))
        connection.execute(text("CREATE TABLE autocommit_probe (n INTEGER)"))
    with database.engine.connect() as other:
        assert other.execute(text("SELECT count(*) FROM autocommit_probe")).scalar() == 0
        other.execute(text("DROP TABLE autocommit_probe"))
        other.commit()


def test_an_unresponsive_postgresql_host_fails_fast() -> None:
    """A server that accepts the TCP connection but never answers fails within seconds."""
    outcome: list[BaseException] = []

    def connect(database: Database) -> None:
        try:
            database.engine.connect()
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        database = Database(f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/none")
        # A thread, so that without a timeout this test fails instead of hanging.
        attempt = threading.Thread(target=connect, args=(database,), daemon=True)
        attempt.start()
        attempt.join(timeout=15)
        assert not attempt.is_alive(), "still connecting after 15 s"
    assert len(outcome) == 1
    assert isinstance(outcome[0], OperationalError)
    database.dispose()


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Issue 13.12: the database (emails, encrypted tokens) was created 0644."""
    path = tmp_path / "oncal.sqlite"
    database = Database(f"sqlite:///{path}")
    with database.engine.connect() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.commit()
    database.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_app_creates_its_sqlite_files_owner_only(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    instance = tmp_path / "fresh"
    app = create_app({**app_config, "INSTANCE_PATH": str(instance), "DATABASE_URL": None,
                      "QUEUE_URL": None})  # fmt: skip
    try:
        for name in ("oncal-feed.sqlite", "queue.sqlite", "ratelimit.sqlite"):
            assert stat.S_IMODE((instance / name).stat().st_mode) == 0o600, name
    finally:
        get_database(app).dispose()


def _user_rows(count: int, created: datetime) -> list[dict[str, object]]:
    return [
        {
            "public_id": f"u_bulk{n:06d}",
            "email": f"bulk{n}@example.com",
            "display_name": f"Bulk {n}",
            "time_zone": "Europe/Berlin",
            "created_at": created,
            "updated_at": created + timedelta(minutes=n),
        }
        for n in range(count)
    ]


def test_insert_rows_writes_every_row_as_an_insert_would(db_session: Session) -> None:
    """Enough rows for COPY on PostgreSQL (an executemany elsewhere): every value arrives,
    instants given with an offset are stored as the same instant in UTC."""
    created = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    rows = _user_rows(COPY_FROM_ROWS + 100, created)
    insert_rows(db_session, cast(Table, User.__table__), rows)
    db_session.commit()
    stored = {
        user.public_id: user
        for user in db_session.scalars(select(User).where(User.email.like("bulk%")))
    }
    assert len(stored) == len(rows)
    last = stored[f"u_bulk{len(rows) - 1:06d}"]
    assert (last.email, last.display_name, last.time_zone) == (
        f"bulk{len(rows) - 1}@example.com",
        f"Bulk {len(rows) - 1}",
        "Europe/Berlin",
    )
    assert last.created_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert last.updated_at == created + timedelta(minutes=len(rows) - 1)


def test_insert_rows_raises_sqlalchemys_integrity_error_and_writes_nothing(
    db_session: Session,
) -> None:
    """A clash in a large insert is SQLAlchemy's IntegrityError (the API answers it with
    409), and rolling back leaves none of the rows."""
    rows = _user_rows(COPY_FROM_ROWS + 10, utcnow())
    rows[-1] = {**rows[-1], "email": rows[0]["email"]}
    with pytest.raises(IntegrityError):
        insert_rows(db_session, cast(Table, User.__table__), rows)
    db_session.rollback()
    assert db_session.scalar(select(func.count()).where(User.email.like("bulk%"))) == 0
