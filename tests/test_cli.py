"""The `oncal-feed` command, run in-process against the test database.

Commands build their own app with `create_app()`, which reads settings from the
environment, so each test sets them there. `INSTANCE_PATH` is not an environment setting:
it goes in through click's `obj`, the CLI's documented config-override seam.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from oncal_feed import accounts, notify, shifts
from oncal_feed.cli import helpers
from oncal_feed.db import get_database, utcnow
from oncal_feed.migrate import current_revision
from oncal_feed.models import ApiKey, CalendarConnection, Shift, User
from oncal_feed.sync.tasks import get_queue
from oncal_feed.validation import ScheduleInput, UserInput
from tests.conftest import Run, stamped
from tests.statements import recorded

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def session_of(app: Flask) -> Session:
    """A new session, so each look sees what the CLI committed."""
    return get_database(app).sessionmaker()


@pytest.fixture
def team(app: Flask) -> None:
    """Schedules `payments` and `search`, users alice and bob."""
    with get_database(app).session() as session:
        for key, name in (("payments", "Payments"), ("search", "Search")):
            shifts.upsert_schedule(session, key, ScheduleInput(name, "Europe/Berlin"), NOW)
        for email, name in (("alice@example.com", "Alice"), ("bob@example.com", "Bob")):
            accounts.create_user(session, UserInput(email, name, "Europe/Berlin"), NOW)


def live_shifts(app: Flask) -> dict[str, Shift]:
    """Live shifts by external id."""
    with session_of(app) as session:
        rows = session.scalars(select(Shift).where(Shift.deleted_at.is_(None)))
        return {shift.external_id: shift for shift in rows}


def shift_count(app: Flask) -> int:
    """All shift rows, tombstones included."""
    with session_of(app) as session:
        return session.scalar(select(func.count()).select_from(Shift)) or 0


def week(external_id: str, email: str, n: int, schedule: str = "payments", **extra: str) -> dict:
    """A JSON shift object for the n-th week from Monday 2 March 2026, 09:00 Berlin."""
    start = datetime(2026, 3, 2, 8, tzinfo=UTC) + timedelta(weeks=n)
    return {
        "schedule": schedule,
        "external_id": external_id,
        "user_email": email,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(weeks=1)).isoformat(),
        **extra,
    }


def write_json(tmp_path: Path, items: list[Any], name: str = "shifts.json") -> Path:
    """Write items as indented JSON, one field per line."""
    path = tmp_path / name
    path.write_text(json.dumps(items, indent=2))
    return path


CSV_HEADER = "schedule,external_id,user_email,starts_at,ends_at,role,notes\n"


def write_csv(tmp_path: Path, body: str, name: str = "shifts.csv") -> Path:
    """Write a CSV file with the standard header."""
    path = tmp_path / name
    path.write_text(CSV_HEADER + body)
    return path


# ---------------------------------------------------------------- init-db and config


def test_init_db_twice_is_a_no_op(run: Run) -> None:
    """The test database is current; init-db says so both times."""
    for _ in range(2):
        result = run("init-db")
        assert result.exit_code == 0, result.output
        assert "Database is up to date (revision " in result.stdout


def test_commands_on_an_empty_database_ask_for_init_db(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a schema, commands exit 1 and say how to fix it; after init-db they work."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite'}")
    result = run("create-user", "alice@example.com", "--name", "Alice")
    assert result.exit_code == 1
    assert "Run `oncal-feed init-db` first" in result.stderr
    assert run("init-db").exit_code == 0
    assert run("create-user", "alice@example.com", "--name", "Alice").exit_code == 0


def test_a_newer_releases_schema_runs_with_a_note_and_init_db_leaves_it(
    run: Run, app: Flask
) -> None:
    """Another machine's newer release migrated the database: this release's commands run on
    it with a note, and its init-db (a rollback, say) has nothing to do and says why."""
    with stamped(app, "9999"):
        created = run("create-user", "alice@example.com", "--name", "Alice")
        again = run("init-db")
        version = current_revision(get_database(app))
    assert created.exit_code == 0, created.output
    assert "Note: the database schema (9999) is newer than this release's" in created.stderr
    assert again.exit_code == 0, again.output
    assert "Database schema 9999 is newer than this release's" in again.stdout
    assert "nothing to do" in again.stdout
    assert version == "9999"
    with session_of(app) as session:
        assert session.scalar(select(User.email)) == "alice@example.com"


def test_production_without_secret_key_explains(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration problem is exit code 2 with the fix, not a traceback."""
    monkeypatch.setenv("ONCAL_MODE", "production")
    monkeypatch.delenv("SECRET_KEY")
    result = run("init-db")
    assert result.exit_code == 2
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_database_is_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that can't be opened is reported without a stack trace."""
    monkeypatch.setenv("DATABASE_URL", "sqlite:////nonexistent-dir/oncal.sqlite")
    result = run("init-db")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the database could not be used:")


# ---------------------------------------------------------------- users and keys


def test_create_user_prints_public_id_and_refuses_duplicates(run: Run, app: Flask) -> None:
    """The new user's public id is printed; a second user with the same email is refused."""
    result = run("create-user", "Alice@Example.com", "--name", "Alice", "--time-zone", "Asia/Tokyo")
    assert result.exit_code == 0, result.output
    with session_of(app) as session:
        user = accounts.get_user_by_email(session, "alice@example.com")
    assert result.stdout == f"Created user alice@example.com ({user.public_id}).\n"
    assert (user.display_name, user.time_zone, user.password_hash) == ("Alice", "Asia/Tokyo", None)

    again = run("create-user", "alice@example.com", "--name", "Other")
    assert again.exit_code == 1
    assert again.stderr == "Error: email: a user with this email address exists\n"


def test_create_user_validates_input(run: Run, app: Flask) -> None:
    """Every bad field is named; nothing is created."""
    result = run("create-user", "not-an-email", "--name", "X", "--time-zone", "Mars/Olympus")
    assert result.exit_code == 1
    assert "Error: email: must be an email address" in result.stderr
    assert "Error: time_zone: 'Mars/Olympus' is not a known IANA time zone" in result.stderr
    with session_of(app) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_create_user_with_password_prompt(run: Run, app: Flask) -> None:
    """--password asks twice and stores a hash that checks."""
    result = run(
        "create-user", "bob@example.com", "--name", "Bob", "--password",
        input="s3cret! and more\ns3cret! and more\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with session_of(app) as session:
        user = accounts.get_user_by_email(session, "bob@example.com")
    assert accounts.check_password(user, "s3cret! and more")
    assert "s3cret!" not in result.stdout
    assert user.role == "member"


def test_create_api_key_prints_only_the_key(run: Run, app: Flask) -> None:
    """Standard output is the key alone (for scripts); it authenticates; only a hash is kept."""
    result = run("create-api-key", "deploy bot")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("ocf_")
    assert result.stdout == secret + "\n"
    assert "will not be shown again" in result.stderr
    with session_of(app) as session:
        key = accounts.authenticate_api_key(session, secret, utcnow())
        assert key is not None
        assert key.name == "deploy bot"
        assert secret not in {k.secret_hash for k in session.scalars(select(ApiKey))}


# ---------------------------------------------------------------- import


def test_import_json_creates_then_changes_nothing(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """A JSON import creates shifts; the same file again is all unchanged; an edit is one update."""
    items = [
        week("w1", "alice@example.com", 0),
        week("w2", "bob@example.com", 1, notes="Bridge: +49 30 1234"),
        week("s1", "alice@example.com", 0, schedule="search"),
    ]
    path = write_json(tmp_path, items)
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Imported 3 shifts into 2 schedules: 3 created, 0 updated, 0 unchanged.\n"
    )
    found = live_shifts(app)
    assert found["w2"].notes == "Bridge: +49 30 1234"
    assert found["w1"].handover_to == "Bob"

    assert run("import", str(path)).stdout.endswith("0 created, 0 updated, 3 unchanged.\n")
    items[0]["user_email"] = "bob@example.com"
    write_json(tmp_path, items)
    assert run("import", str(path)).stdout.endswith("0 created, 1 updated, 2 unchanged.\n")
    after = live_shifts(app)
    assert after["w1"].uid == found["w1"].uid
    assert after["w1"].revision > found["w1"].revision


def test_import_csv_with_optional_columns_blank(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """CSV: empty role/notes mean the defaults; quoted multi-line notes; a BOM is ignored."""
    path = tmp_path / "export.csv"
    path.write_text(
        "\ufeff"
        + CSV_HEADER
        + "payments,w1,alice@example.com,2026-03-02T09:00:00+01:00,2026-03-09T09:00:00+01:00,,\n"
        + "\n"
        + "payments,w2,bob@example.com,2026-03-09T09:00:00+01:00,2026-03-16T09:00:00+01:00,"
        + 'shadow,"Line one\nline two"\n'
    )
    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    found = live_shifts(app)
    assert (found["w1"].role, found["w1"].notes) == ("primary", "")
    assert found["w1"].starts_at == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert (found["w2"].role, found["w2"].notes) == ("shadow", "Line one\nline two")


def test_import_csv_bad_rows_name_their_lines_and_nothing_is_written(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """Good rows are not written either when any row is bad; each problem names its file line."""
    path = write_csv(
        tmp_path,
        "payments,w1,alice@example.com,2026-03-02T09:00:00+01:00,2026-03-09T09:00:00+01:00,,\n"
        'payments,w2,alice@example.com,2026-03-09T09:00:00+01:00,2026-03-16T09:00:00+01:00,,"a\n'
        'multi-line note"\n'
        "payments,w3,alice@example.com,2026-03-16 09:00,2026-03-09T09:00:00+01:00,,\n"
        "payments,w4,carol@example.com,2026-03-16T09:00:00+01:00,2026-03-23T09:00:00+01:00,boss,\n",
    )
    result = run("import", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "Error: line 5: starts_at: must be an RFC 3339 date-time" in lines[0]
    assert lines[1:] == [
        "Error: line 6: role: must be one of primary, secondary, override, shadow",
        "Error: line 6: user_email: no user has this email address",
        "Error: nothing was imported: 3 problems on 2 lines.",
    ]
    assert shift_count(app) == 0


def test_import_json_bad_items_name_index_and_line(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """JSON problems name the item's index and the line where the item starts."""
    items = [
        week("w1", "alice@example.com", 0),
        "not an object",
        week("w3", "alice@example.com", 2, colour="red"),
        {**week("w4", "alice@example.com", 3), "ends_at": "2026-03-23T09:00:00"},
    ]
    result = run("import", str(write_json(tmp_path, items)))
    assert result.exit_code == 1
    # With indent=2 an object takes a line per field plus two; the string item one line.
    assert result.stderr.splitlines() == [
        "Error: line 9: [1]: must be an object",
        "Error: line 10: [2].colour: unknown field",
        "Error: line 18: [3].ends_at: must be an RFC 3339 date-time with an offset, "
        "e.g. 2026-03-01T09:00:00Z",
        "Error: nothing was imported: 3 problems on 3 lines.",
    ]
    assert shift_count(app) == 0


def test_import_unknown_schedule_writes_nothing(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """A row naming a schedule that doesn't exist fails the import and says how to create it."""
    items = [week("w1", "alice@example.com", 0), week("x1", "alice@example.com", 0, "billing")]
    result = run("import", str(write_json(tmp_path, items)))
    assert result.exit_code == 1
    assert (
        "Error: line 9: [1].schedule: no schedule 'billing'; create it first "
        "(PUT /api/v1/schedules/billing)"
    ) in result.stderr
    assert shift_count(app) == 0


def test_import_duplicate_external_ids_are_refused(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """The same (schedule, external id) twice is ambiguous; the same id in two schedules is not."""
    body = (
        "payments,w1,alice@example.com,2026-03-02T09:00:00Z,2026-03-09T09:00:00Z,,\n"
        "search,w1,alice@example.com,2026-03-02T09:00:00Z,2026-03-09T09:00:00Z,,\n"
        "payments,w1,bob@example.com,2026-03-02T09:00:00Z,2026-03-09T09:00:00Z,,\n"
    )
    result = run("import", str(write_csv(tmp_path, body)))
    assert result.exit_code == 1
    assert "Error: line 4: external_id: 'w1' is already on line 2" in result.stderr
    assert shift_count(app) == 0


def test_import_file_errors(run: Run, team: None, tmp_path: Path) -> None:
    """Broken JSON, an unknown CSV column, an empty file: exit 1 with the place named."""
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"schedule": "payments",}\n]')
    result = run("import", str(broken))
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: line 2: not valid JSON: Expecting property name enclosed in double quotes "
        "(column 27)\n",
    )
    columns = tmp_path / "columns.csv"
    columns.write_text("schedule,external_id,user,starts_at,ends_at\n")
    assert run("import", str(columns)).stderr.splitlines() == [
        "Error: line 1: user: unknown column",
        "Error: line 1: user_email: column is missing from the header",
    ]
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    assert run("import", str(empty)).stderr == f"Error: {empty} is empty\n"
    assert run("import", str(tmp_path / "missing.json")).exit_code == 2


def test_import_format_from_content_or_option(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """Without a known extension, a leading '[' means JSON; --format overrides."""
    as_text = write_json(tmp_path, [week("w1", "alice@example.com", 0)], name="shifts.txt")
    assert run("import", str(as_text)).exit_code == 0
    csv_named_json = tmp_path / "export.json"
    csv_named_json.write_text(
        CSV_HEADER + "payments,w2,bob@example.com,2026-03-09T08:00:00Z,2026-03-16T08:00:00Z,,\n"
    )
    result = run("import", "--format", "csv", str(csv_named_json))
    assert result.exit_code == 0, result.output
    assert set(live_shifts(app)) == {"w1", "w2"}


def test_import_dry_run_writes_nothing(run: Run, app: Flask, team: None, tmp_path: Path) -> None:
    """--dry-run counts what would happen and rolls back."""
    path = write_json(tmp_path, [week("w1", "alice@example.com", 0)])
    result = run("import", "--dry-run", str(path))
    assert result.stdout == (
        "Dry run, nothing was written. Would import 1 shift: 1 created, 0 updated, 0 unchanged.\n"
    )
    assert shift_count(app) == 0


def test_import_window_replaces_the_schedules_shifts(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """With --window, shifts of the named schedules in the window that the file omits are
    deleted; other schedules are left alone; rows outside the window are refused."""
    first = [
        week("w1", "alice@example.com", 0),
        week("w2", "bob@example.com", 1),
        week("s1", "bob@example.com", 0, schedule="search"),
    ]
    assert run("import", str(write_json(tmp_path, first))).exit_code == 0
    window = "2026-03-01T00:00:00Z/2026-04-01T00:00:00Z"
    path = write_json(tmp_path, [week("w1", "alice@example.com", 0)], name="march.json")
    result = run("import", "--window", window, str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Imported 1 shift into 1 schedule: 0 created, 0 updated, 1 unchanged, 1 deleted.\n"
    )
    assert set(live_shifts(app)) == {"w1", "s1"}

    late = write_json(tmp_path, [week("w9", "alice@example.com", 8)], name="late.json")
    outside = run("import", "--window", window, str(late))
    assert outside.exit_code == 1
    assert "Error: line 2: [0].starts_at: shift lies outside --window" in outside.stderr
    bad_window = run("import", "--window", "2026-03-01T00:00:00Z", str(late))
    assert bad_window.exit_code == 2
    assert "give FROM/TO" in bad_window.stderr


def test_import_notifies_listeners_after_commit(
    run: Run, app: Flask, team: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the API, the importer tells push sync whose calendars changed, and only then."""
    heard: list[tuple[set[int], int]] = []

    def create_app_with_listener(config: Any = None) -> Flask:
        cli_app = real_create_app(config)

        def listener(user_ids: set[int]) -> None:
            heard.append((user_ids, shift_count(app)))  # committed rows are visible

        notify.add_listener(cli_app, listener)
        return cli_app

    real_create_app = helpers.create_app
    monkeypatch.setattr(helpers, "create_app", create_app_with_listener)
    path = write_json(tmp_path, [week("w1", "alice@example.com", 0)])
    assert run("import", str(path)).exit_code == 0
    with session_of(app) as session:
        alice = accounts.get_user_by_email(session, "alice@example.com")
    assert heard == [({alice.id}, 1)]
    assert run("import", str(path)).exit_code == 0
    assert len(heard) == 1  # nothing changed, nobody to tell


def test_unchanged_reimport_writes_nothing_and_queues_no_sync(
    run: Run, app: Flask, team: None, tmp_path: Path
) -> None:
    """Statements counted: the same file again sends no INSERT, UPDATE or DELETE, and push
    sync gets no nudge; the first import nudged Alice's connection once for all her rows."""
    people = ("alice@example.com", "bob@example.com")
    items = [week(f"w{n}", people[n % 2], n) for n in range(30)]
    items += [week(f"s{n}", "alice@example.com", n, schedule="search") for n in range(10)]
    path = write_json(tmp_path, items)
    with get_database(app).session() as session:
        alice = accounts.get_user_by_email(session, "alice@example.com")
        session.add(CalendarConnection(user_id=alice.id, provider="google"))
    huey = get_queue(app).huey

    def queued() -> int:
        return int(huey.pending_count()) + int(huey.scheduled_count())

    assert run("import", str(path)).exit_code == 0
    assert queued() == 1
    huey.flush()
    with get_database(app).session() as session:
        session.execute(update(CalendarConnection).values(dirty_since=None))

    # On the class: the command builds its own app and engine.
    with recorded(Engine) as sent:
        result = run("import", str(path))
    assert result.stdout.endswith("0 created, 0 updated, 40 unchanged.\n")
    assert "SELECT" in sent.verbs
    assert sent.writes == []
    assert queued() == 0
    with session_of(app) as session:
        assert session.scalar(select(CalendarConnection.dirty_since)) is None


# ---------------------------------------------------------------- demo


def test_demo_no_serve_seeds_once_and_prints_how_to_sign_in(
    run: Run, app: Flask, app_config: dict[str, Any]
) -> None:
    """`demo --no-serve` twice: the same password, and the second run changes nothing."""
    # Frozen (but ticking) so both runs see the same day and so the same demo window.
    with freeze_time("2026-03-25 12:00:00", tick=True):
        first = run("demo", "--no-serve")
        second = run("demo", "--no-serve")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    password = (Path(app_config["INSTANCE_PATH"]) / "demo_password").read_text().strip()
    for result in (first, second):
        assert "Sign in at http://127.0.0.1:8000/login" in result.stdout
        assert "  email:    demo@oncal.example\n" in result.stdout
        assert f"  password: {password}\n" in result.stdout
    assert "8 users (8 new), 3 schedules (3 new)" in first.stdout
    assert ", 0 updated, 0 unchanged, 0 deleted" in first.stdout
    assert "8 users (0 new), 3 schedules (0 new)" in second.stdout
    assert ": 0 created, 0 updated, " in second.stdout
    assert "Robin Demo's calendar feed" in first.stdout
    feed_lines = [line for line in first.stdout.splitlines() if "/feeds/" in line]
    assert [line.split("/feeds/")[0] for line in feed_lines] == [
        "  http://127.0.0.1:8000",
        "  webcal://127.0.0.1:8000",
    ]
    assert feed_lines == [line for line in second.stdout.splitlines() if "/feeds/" in line]
    with session_of(app) as session:
        user = accounts.get_user_by_email(session, "demo@oncal.example")
        assert accounts.check_password(user, password)


def test_worker_says_when_its_metrics_port_is_taken(run: Run) -> None:
    """A port in use is a clear message and exit status 1, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("worker", "--metrics-port", str(port))
    assert result.exit_code == 1
    assert f"Can't serve metrics on 127.0.0.1:{port}: Address already in use." in result.output
