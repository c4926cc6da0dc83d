"""Alembic migrations: they build exactly the models' schema, re-running them does nothing, and
each one keeps the release before it working (what lets a rolling deploy, or a rollback, run
older code on a newer schema; see `oncal_feed.migrate.schema_state`).

Each test gets its own empty database (not the suite's shared, already migrated one): a
SQLite file, or a fresh database on the ONCAL_TEST_DATABASE_URL PostgreSQL server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from oncal_feed import create_app
from oncal_feed.cli import main
from oncal_feed.db import Base, Database, fresh_database, get_database
from oncal_feed.feeds.tokens import make_feed_token
from oncal_feed.migrate import alembic_config, current_revision, head_revision, upgrade
from oncal_feed.models import (  # also registers every table on Base.metadata
    CalendarConnection,
    Feed,
)
from tests.statements import recorded


@pytest.fixture
def empty_database() -> Iterator[Database]:
    """An empty database of the kind the suite runs on, dropped afterwards."""
    with fresh_database(os.environ.get("ONCAL_TEST_DATABASE_URL"), "oncal_migrations") as url:
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


def schema_differences(database: Database) -> list[Any]:
    """What autogenerate would write to make the database match the models (empty = none)."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_on_an_empty_database_builds_exactly_the_models(empty_database: Database) -> None:
    """From nothing to head: every table, column, type, index and constraint as the models say."""
    assert inspect(empty_database.engine).get_table_names() == []
    assert current_revision(empty_database) is None
    upgrade(empty_database)
    assert current_revision(empty_database) == head_revision()
    assert schema_differences(empty_database) == []
    tables = set(inspect(empty_database.engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrading_again_sends_no_ddl(empty_database: Database) -> None:
    """A second upgrade only reads the current revision: no schema or data change."""
    upgrade(empty_database)
    with recorded(empty_database.engine) as sent:
        upgrade(empty_database)
    assert set(sent.verbs) <= {"SELECT", "PRAGMA"}, sent.sql
    assert schema_differences(empty_database) == []


def test_downgrade_to_nothing_and_back(empty_database: Database) -> None:
    """Every migration's downgrade works, and upgrading afterwards gives the same schema."""
    upgrade(empty_database)
    config = alembic_config(empty_database)
    with empty_database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(empty_database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(empty_database)
    assert schema_differences(empty_database) == []


def test_init_db_twice_on_an_empty_database(
    empty_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`oncal-feed init-db` creates the schema, and the second run changes nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONCAL_MODE", "test")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-" + "x" * 32)
    monkeypatch.setenv("DATABASE_URL", empty_database.url)
    runner = CliRunner()
    obj = {"INSTANCE_PATH": str(tmp_path / "instance")}
    head = head_revision()
    for _ in range(2):
        result = runner.invoke(main, ["init-db"], obj=obj, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"Database is up to date (revision {head}).\n"
    assert schema_differences(empty_database) == []


def schema_shape(database: Database) -> dict[str, dict[str, Any]]:
    """Each table's columns (name → reflected column) and the column sets it keeps unique."""
    inspector = inspect(database.engine)
    shape: dict[str, dict[str, Any]] = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        unique = {tuple(c["column_names"]) for c in inspector.get_unique_constraints(table)}
        unique |= {tuple(i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]}
        columns = {column["name"]: column for column in inspector.get_columns(table)}
        shape[table] = {"columns": columns, "unique": unique}
    return shape


def breaks_older_code(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What in `after` would break code written for `before`: anything taken away or
    tightened, and any new requirement its INSERTs cannot meet."""
    problems = []
    for table, old in before.items():
        new = after.get(table)
        if new is None:
            problems.append(f"{table}: dropped or renamed")
            continue
        for name, column in old["columns"].items():
            now = new["columns"].get(name)
            if now is None:
                problems.append(f"{table}.{name}: dropped or renamed")
            elif str(now["type"]) != str(column["type"]):
                problems.append(f"{table}.{name}: type {column['type']} became {now['type']}")
            elif column["nullable"] and not now["nullable"]:
                problems.append(f"{table}.{name}: became NOT NULL")
        for name in new["columns"].keys() - old["columns"].keys():
            column = new["columns"][name]
            if not column["nullable"] and column["default"] is None:
                problems.append(f"{table}.{name}: new NOT NULL column without a server default")
        for columns in new["unique"] - old["unique"]:
            # A rule over columns the older code never writes cannot turn its rows away.
            if set(columns) & old["columns"].keys():
                problems.append(f"{table}{columns}: new unique constraint")
    return problems


def test_every_migration_keeps_the_release_before_it_working(empty_database: Database) -> None:
    """Migrating one revision at a time, nothing an older release uses is taken away or
    tightened, and its INSERTs still work: new columns are nullable or have a server default."""
    script = ScriptDirectory.from_config(alembic_config(empty_database))
    revisions = [revision.revision for revision in reversed(list(script.walk_revisions()))]
    assert len(revisions) >= 7
    upgrade(empty_database, revisions[0])
    shape = schema_shape(empty_database)
    problems = {}
    for revision in revisions[1:]:
        upgrade(empty_database, revision)
        after = schema_shape(empty_database)
        problems[revision] = breaks_older_code(shape, after)
        shape = after
    assert problems == {revision: [] for revision in revisions[1:]}
    # The comparison saw the whole schema: every table and column of the models.
    assert {table: set(shape[table]["columns"]) for table in shape} == {
        name: set(table.columns.keys()) for name, table in Base.metadata.tables.items()
    }


def test_a_feed_url_issued_before_named_feeds_keeps_working(
    empty_database: Database, app_config: dict[str, Any]
) -> None:
    """Migration 0014 makes each user's feed their first named feed, under their public id
    and generation: the URL they were given (already rotated twice here) still answers,
    with their options, and the URL of an older generation still does not."""
    upgrade(empty_database, "0013")
    now = datetime(2026, 3, 10, 8, tzinfo=UTC)
    with empty_database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (public_id, email, display_name, time_zone, role,"
                " feed_generation, feed_past_days, feed_future_days, feed_busy,"
                " feed_reminder_minutes, calendar_version, created_at, updated_at)"
                " VALUES ('u_before', 'before@example.com', 'Bea Fore', 'UTC', 'member',"
                " 3, 30, 365, true, 20, 1, :now, :now)"
            ),
            {"now": now},
        )
    upgrade(empty_database)
    app = create_app({**app_config, "DATABASE_URL": empty_database.url})
    secret = app.config["SECRET_KEY"]
    client = app.test_client()
    issued = make_feed_token(secret, Feed(public_id="u_before", generation=3))
    stale = make_feed_token(secret, Feed(public_id="u_before", generation=2))
    answer = client.get(f"/feeds/{issued}.ics")
    assert answer.status_code == 200
    assert "On-call — Bea Fore" in answer.text
    assert client.get(f"/feeds/{stale}.ics").status_code == 404
    with empty_database.session() as session:
        feed = session.scalars(select(Feed)).one()
        assert (feed.name, feed.busy, feed.reminder_minutes) == ("My shifts", True, 20)
    get_database(app).dispose()


def test_shifts_still_to_come_learn_who_else_is_on_call(empty_database: Database) -> None:
    """Migration 0015 fills in `also_on_call` on live shifts that have not ended (a new
    revision, a new calendar version, a nudge to the person's calendar connection) and
    leaves ended and deleted shifts as they were shown."""
    upgrade(empty_database, "0014")
    now = datetime.now(UTC).replace(microsecond=0)
    hour = timedelta(hours=1)
    with empty_database.engine.begin() as connection:
        for n, (email, name) in enumerate([("ann@example.com", "Ann"), ("ben@example.com", "Ben")]):
            connection.execute(
                text(
                    "INSERT INTO users (id, public_id, email, display_name, time_zone, role,"
                    " feed_generation, feed_past_days, feed_future_days, feed_busy,"
                    " calendar_version, created_at, updated_at)"
                    " VALUES (:id, :public_id, :email, :name, 'UTC', 'member', 1, 30, 365,"
                    " false, 1, :now, :now)"
                ),
                {"id": n + 1, "public_id": f"u{n}", "email": email, "name": name, "now": now},
            )
        connection.execute(
            text(
                "INSERT INTO schedules (id, key, name, time_zone, revision, calendar_version,"
                " created_at, updated_at) VALUES (1, 'ops', 'Ops', 'UTC', 1, 1, :now, :now)"
            ),
            {"now": now},
        )
        shifts = [  # (id, user, role, starts in hours, ends in hours, deleted)
            (1, 1, "primary", -2, 10, False),
            (2, 2, "secondary", -1, 5, False),
            (3, 1, "primary", -30, -20, False),  # ended
            (4, 2, "secondary", -25, -21, False),
            (5, 2, "escalation", 1, 3, True),  # deleted
        ]
        for shift_id, user_id, role, start, end, deleted in shifts:
            connection.execute(
                text(
                    "INSERT INTO shifts (id, uid, schedule_id, external_id, user_id, starts_at,"
                    " ends_at, role, notes, revision, created_at, updated_at, deleted_at)"
                    " VALUES (:id, :uid, 1, :uid, :user_id, :starts, :ends, :role, '', 1,"
                    " :now, :now, :deleted)"
                ),
                {
                    "id": shift_id, "uid": f"s{shift_id}", "user_id": user_id, "role": role,
                    "starts": now + start * hour, "ends": now + end * hour, "now": now,
                    "deleted": now if deleted else None,
                },
            )  # fmt: skip
        connection.execute(
            text(
                "INSERT INTO calendar_connections (user_id, provider, status, owns_calendar,"
                " use_primary, scopes, window_days, busy, id_generation, last_created,"
                " last_updated, last_deleted, failure_count, created_at, updated_at)"
                " VALUES (1, 'google', 'active', true, false, '', 90, false, 1, 0, 0, 0, 0,"
                " :now, :now)"
            ),
            {"now": now},
        )
    upgrade(empty_database)
    with empty_database.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, also_on_call, revision FROM shifts ORDER BY id"))
        stored = {shift_id: (also, revision) for shift_id, also, revision in rows}
        versions = connection.execute(
            text("SELECT id, calendar_version FROM users ORDER BY id")
        ).all()
        dirty = connection.execute(text("SELECT dirty_since FROM calendar_connections")).scalar()

    def loaded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    assert {
        shift_id: (loaded(also), revision) for shift_id, (also, revision) in stored.items()
    } == {
        1: ([{"name": "Ben", "role": "secondary", "email": "ben@example.com"}], 2),
        2: ([{"name": "Ann", "role": "primary", "email": "ann@example.com"}], 2),
        3: (None, 1),
        4: (None, 1),
        5: (None, 1),
    }
    assert [tuple(row) for row in versions] == [(1, 2), (2, 2)]
    assert dirty is not None


def test_schedule_pushes_sit_under_the_one_account_connection(empty_database: Database) -> None:
    """Migration 0016 keeps existing connections and the rule of one account connection
    per user and provider, and lets each of them push a schedule once."""
    upgrade(empty_database, "0015")
    now = datetime.now(UTC).replace(microsecond=0)
    with empty_database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, public_id, email, display_name, time_zone, role,"
                " feed_generation, feed_past_days, feed_future_days, feed_busy,"
                " calendar_version, created_at, updated_at)"
                " VALUES (1, 'p1', 'ann@example.com', 'Ann', 'UTC', 'member', 1, 30, 365,"
                " false, 1, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO schedules (id, key, name, time_zone, revision, calendar_version,"
                " created_at, updated_at) VALUES (1, 'pay', 'Payments', 'UTC', 1, 1, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO calendar_connections (id, user_id, provider, status, owns_calendar,"
                " use_primary, scopes, window_days, busy, id_generation, last_created,"
                " last_updated, last_deleted, failure_count, created_at, updated_at)"
                " VALUES (1, 1, 'google', 'active', true, false, '', 90, false, 1, 0, 0, 0, 0,"
                " :now, :now)"
            ),
            {"now": now},
        )
    upgrade(empty_database)
    table = CalendarConnection.__table__

    def insert(**values: Any) -> bool:
        try:
            with empty_database.engine.begin() as connection:
                connection.execute(table.insert().values(user_id=1, provider="google", **values))
        except IntegrityError:
            return False
        return True

    assert not insert()  # a second account connection to Google
    assert insert(parent_id=1, schedule_id=1)  # a push of Payments under it
    assert not insert(parent_id=1, schedule_id=1)  # and not twice
    with empty_database.engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.parent_id, table.c.schedule_id).order_by(table.c.id)
        ).all()
    assert [tuple(row) for row in rows] == [(1, None, None), (rows[1][0], 1, 1)]
