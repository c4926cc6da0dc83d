"""Database engine, sessions and the declarative base.

Plain SQLAlchemy 2 (no Flask-SQLAlchemy) so the shift store, the sync engine and the CLI
use the same sessions with or without a Flask app around them.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, g
from sqlalchemy import (
    Column,
    ColumnDefault,
    DateTime,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Database",
    "UTCDateTime",
    "create_private_file",
    "fresh_database",
    "get_database",
    "get_session",
    "in_chunks",
    "insert_rows",
    "instant_json",
    "utcnow",
    "with_reconnect",
]

T = TypeVar("T")

# Stable constraint names, so Alembic migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current instant as an aware UTC datetime (frozen by freezegun in tests)."""
    return datetime.now(UTC)


def instant_json(value: datetime | None) -> str | None:
    """Format an instant as RFC 3339 in UTC with a `Z` (None stays None), for JSON answers."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored as naive UTC and always returned as an aware UTC datetime.

    SQLite keeps no zone and PostgreSQL `timestamp` keeps none either; storing naive UTC
    on both makes comparisons and indexes behave the same everywhere.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert an aware datetime to naive UTC; refuse naive input."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an instant is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Attach UTC to the stored naive value."""
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain `postgres://` / `postgresql://` URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_private_file(path: str | Path) -> None:
    """Create the file at `path` readable by its owner only (0600), if it doesn't exist.

    For SQLite databases: sqlite3 would create them with the umask's 0644, readable by
    every account on the machine, and they hold emails and encrypted tokens. SQLite
    gives its -wal and -shm files the database file's permissions.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return  # SQLite's own error says what is wrong when it tries to open it
    # An existing database keeps the permissions its operator gave it.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = normalise_url(url)
        database_file = make_url(self.url).database
        if self.url.startswith("sqlite") and database_file and database_file != ":memory:":
            create_private_file(database_file)
        self.engine: Engine = create_engine(self.url, **self._engine_options(engine_options))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _configure_sqlite)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def _engine_options(self, given: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            # Wait for a concurrent writer (web + worker) instead of failing at once.
            options["connect_args"] = {"timeout": 30}
        else:
            # A server restart must not fail the next request; costs one ping per checkout.
            options["pool_pre_ping"] = True
            # An unreachable host must fail fast (and /readyz say so within a probe's
            # timeout), not hang for the operating system's TCP timeout of minutes.
            options["connect_args"] = {"connect_timeout": 5}
        options.update(given)
        return options

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session that commits on success and rolls back on error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    @cached_property
    def autocommit_engine(self) -> Engine:
        """Connections in autocommit mode, for hot paths of a statement or two (the feeds).

        A pool of its own: autocommit is set once per connection instead of at every
        checkout, and no ping precedes a checkout. Callers retry once when a connection
        turns out to be dead (`with_reconnect`), which saves a round trip per request.
        """
        options = self._engine_options({"pool_pre_ping": False})
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT", **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _configure_sqlite)
        return engine

    def init_app(self, app: Flask) -> None:
        """Make `get_session()` give each request its own session, closed at teardown."""
        app.extensions["oncal_db"] = self
        app.teardown_appcontext(_close_request_session)

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()
        if "autocommit_engine" in self.__dict__:
            self.autocommit_engine.dispose()


def with_reconnect(call: Callable[[], T]) -> T:
    """Run `call`, and once more if it failed on a connection the database had dropped.

    For idempotent work on `Database.autocommit_engine`, which skips the ping before each
    checkout. SQLAlchemy invalidates the whole pool on such an error, so the second try
    runs on a new connection.
    """
    try:
        return call()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return call()


# Values per IN list (or ranges per OR): far below SQLite's 32,766 bound parameters and
# PostgreSQL's 65,535, and short enough to be planned well.
IN_LIST_SIZE = 1000


def in_chunks(values: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    """Yield slices of at most `size` values: one IN list (or OR) per statement."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# From this many rows on, PostgreSQL gets COPY instead of an executemany INSERT.
COPY_FROM_ROWS = 500


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, object]],
    *,
    copy_from: int = COPY_FROM_ROWS,
) -> None:
    """Insert `rows` (dicts with the same keys) into `table` in the session's transaction.

    An executemany INSERT everywhere, except for `copy_from` rows or more on PostgreSQL:
    psycopg sends an executemany as one INSERT per row, and SQLAlchemy prepares each row's
    parameters, which made inserting 10,000 shifts cost 0.85 s where one COPY costs a
    quarter of that. Values go through the columns' bind processors (naive UTC instants)
    as they would in an INSERT, and a failure is raised as SQLAlchemy's exception for it
    (IntegrityError for a clash), so callers see no difference.
    """
    if not rows:
        return
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql" or len(rows) < copy_from:
        session.execute(insert(table), rows)
        return
    given = list(rows[0])
    # COPY applies server defaults only; the columns' Python defaults are an INSERT's doing.
    defaulted = [
        column
        for column in table.columns
        if column.default is not None and column.name not in given
    ]
    names = given + [column.name for column in defaulted]
    processors = [table.c[name].type.bind_processor(dialect) for name in names]
    quote = dialect.identifier_preparer.quote
    statement = (
        f"COPY {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(name) for name in names)}) FROM STDIN"
    )
    driver = connection.connection.driver_connection
    assert driver is not None  # a live connection inside the session's transaction
    error_base = dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[name] for name in given]
                # A scalar, or a callable SQLAlchemy has wrapped to take a context.
                values += [_python_default(column) for column in defaulted]
                copy.write_row(
                    [
                        value if process is None else process(value)
                        for process, value in zip(processors, values, strict=True)
                    ]
                )
    except error_base as exc:
        raise DBAPIError.instance(statement, None, exc, error_base) from exc


def _python_default(column: Column[Any]) -> object:
    """The value an INSERT would give `column` from its Python-side default."""
    default = cast(ColumnDefault, column.default)
    # A scalar, or a callable SQLAlchemy has wrapped to take an execution context.
    return default.arg(None) if default.is_callable else default.arg


@contextmanager
def fresh_database(server_url: str | None, prefix: str) -> Iterator[str]:
    """Yield the URL of a new, empty database, and remove it afterwards.

    On the PostgreSQL server at `server_url` (a uniquely named database), or, when that is
    None or a SQLite URL, a SQLite file in a temporary folder. For test runs and
    benchmarks, which must never share or keep a database.
    """
    if not server_url or server_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
            yield f"sqlite:///{Path(folder) / f'{prefix}.sqlite'}"
        return
    server = make_url(normalise_url(server_url))
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets feed readers proceed while the worker writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def get_database(app: Flask | None = None) -> Database:
    """Return the app's `Database` (the current app when none is given)."""
    from flask import current_app

    database = (app or current_app).extensions["oncal_db"]
    assert isinstance(database, Database)
    return database


def get_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    session: Session = g.db_session
    return session


def _close_request_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        # Anything not committed by the view is rolled back: no half-written records.
        session.rollback()
        session.close()
