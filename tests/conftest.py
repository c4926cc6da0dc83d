"""Shared fixtures: an app on a migrated test database, clients, Redis, and the loopback guard.

Set ONCAL_TEST_DATABASE_URL to a PostgreSQL URL to run the suite on PostgreSQL: a fresh
database is created on that server for the run and dropped afterwards. Without it, the
suite runs on a SQLite file in a temporary folder.

Tests of the Redis queue use the Redis on 127.0.0.1:6379, or else start a private
`redis-server` for the run; with neither they fail when `CI` is set, and are skipped
(saying what to install) elsewhere.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from oncal_feed import accounts, cli, create_app
from oncal_feed.db import Base, Database, fresh_database, get_database, normalise_url, utcnow
from oncal_feed.migrate import current_revision, upgrade
from tests.processes import free_port, stop_process

pytest_plugins: list[str] = ["tests.fakes.fixtures"]

# ---------------------------------------------------------------- loopback guard


class OutsideConnection(AssertionError):
    """A test tried to reach a host outside loopback."""


_violations: list[str] = []


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check_address(address: Any, family: int) -> None:
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets (PostgreSQL's) are local by nature.
    host = str(address[0])
    if not _is_loopback(host):
        _violations.append(host)
        raise OutsideConnection(f"test tried to connect to {host}, outside loopback")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address, self.family)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address, self.family)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    if not _is_loopback(name):
        _violations.append(name)
        raise OutsideConnection(f"test tried to resolve {name}, outside loopback")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Refuse (and fail the run on) any connection or lookup outside 127.0.0.0/8 and ::1."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def no_outside_connections() -> Iterator[None]:
    """Fail the test even when a library swallowed the guard's exception."""
    start = len(_violations)
    yield
    tried = _violations[start:]
    if tried:
        pytest.fail(f"test reached outside loopback: {', '.join(sorted(set(tried)))}")


# ---------------------------------------------------------------- database


@contextmanager
def _migrated_database(server_url: str | None, prefix: str) -> Iterator[str]:
    """`fresh_database`, with the schema migrated to the newest revision."""
    with fresh_database(server_url, prefix) as url:
        database = Database(url)
        upgrade(database)
        database.dispose()
        yield url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database for the whole run: PostgreSQL when configured, else SQLite."""
    server_url = os.environ.get("ONCAL_TEST_DATABASE_URL")
    with _migrated_database(server_url, f"oncal_test_{os.getpid()}") as url:
        yield url


LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_answers(url: str) -> bool:
    engine = create_engine(normalise_url(url), connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url(database_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database, for what only PostgreSQL does (notifications).

    The run's own database when the run is on PostgreSQL; else a fresh one on the server
    at ONCAL_TEST_POSTGRES_URL (default: the local one). Without a server CI fails, and
    elsewhere the tests that need it are skipped, as with Redis.
    """
    if make_url(database_url).get_backend_name() == "postgresql":
        yield database_url
        return
    server = os.environ.get("ONCAL_TEST_POSTGRES_URL", LOCAL_POSTGRES_URL)
    if not _postgres_answers(server):
        message = f"PostgreSQL does not answer at {server} (set ONCAL_TEST_POSTGRES_URL)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with _migrated_database(server, f"oncal_test_pg_{os.getpid()}") as url:
        yield url


def _empty_tables(database: Database) -> None:
    tables = [t for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Settings for a test app; tests may change them before using `app`."""
    return {
        "ONCAL_MODE": "test",
        "TESTING": True,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "BASE_URL": "https://oncal.example.test",
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite'}",
        # A change reaches the feed user cache when its notification arrives, a moment
        # after the commit; tests that read their writes at once would race it. Its own
        # tests (tests/feeds/test_user_cache.py) and the gunicorn ones turn it on.
        "FEED_USER_CACHE_ENTRIES": 0,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """A fresh app on the shared test database, emptied after each test."""
    application = create_app(app_config)
    yield application
    database = get_database(application)
    _empty_tables(database)
    database.dispose()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    """A session outside any request; the test commits what it wants others to see."""
    with get_database(app).sessionmaker() as session:
        yield session


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client with no credentials."""
    return app.test_client()


@pytest.fixture
def api_key(app: Flask) -> str:
    """The secret of a fresh API key."""
    with get_database(app).session() as session:
        _key, secret = accounts.create_api_key(session, "tests", utcnow())
    return secret


@pytest.fixture
def api(app: Flask, api_key: str) -> FlaskClient:
    """A test client that sends a valid API key with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return client


@contextmanager
def stamped(app: Flask, revision: str) -> Iterator[None]:
    """The test database's migration stamp set to `revision` for the block, as if an older
    or a newer release had migrated it; restored afterwards."""
    database = get_database(app)
    current = current_revision(database)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    try:
        yield
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})


# ---------------------------------------------------------------- Redis

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
NO_REDIS = (
    "these tests need Redis: nothing answers on 127.0.0.1:6379 and redis-server is not "
    "installed (Debian: apt-get install redis-server)"
)


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the run: the machine's on 127.0.0.1:6379, else a private redis-server.

    The private server keeps nothing on disk and is stopped at the end of the run. With
    neither, CI fails (a skipped queue test there would hide a broken setup); elsewhere
    the tests that need Redis are skipped with a message saying what to install.
    """
    if _redis_answers(LOCAL_REDIS_URL):
        yield LOCAL_REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if _in_ci():
            pytest.fail(NO_REDIS, pytrace=False)
        pytest.skip(NO_REDIS)
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = folder / "redis.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while not _redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def redis_queue(redis_url: str) -> Iterator[dict[str, str]]:
    """`QUEUE_URL` and `QUEUE_NAME` settings for a queue of this test's own on Redis.

    A fresh name per test keeps runs (and tests) that share one Redis apart; the
    queue's keys are deleted afterwards. The name is what Huey would keep of it
    (letters, digits and `_`), so the keys can be found by it.
    """
    name = f"oncal_test_{uuid.uuid4().hex}"
    yield {"QUEUE_URL": redis_url, "QUEUE_NAME": name}
    client = redis.Redis.from_url(redis_url)
    try:
        delete_keys(client, f"huey.*{name}*")
    finally:
        client.close()


def delete_keys(client: redis.Redis, pattern: str) -> None:
    """Delete the keys a test left in the shared Redis under `pattern` (a SCAN pattern)."""
    leftovers = list(client.scan_iter(pattern))
    if leftovers:
        client.delete(*leftovers)


# ---------------------------------------------------------------- command line

Run = Callable[..., Result]


@pytest.fixture
def run(
    app: Flask, app_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Run:
    """Run `oncal-feed ARGS...` with the test database's settings in the environment.

    Tests may set more environment variables (monkeypatch) before calling it.
    """
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    for name in ("ONCAL_MODE", "SECRET_KEY", "DATABASE_URL", "BASE_URL", "QUEUE_URL"):
        monkeypatch.setenv(name, str(app_config[name]))
    for name in ("TOKEN_ENCRYPTION_KEYS", "GOOGLE_CLIENT_ID", "MICROSOFT_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        obj = {"INSTANCE_PATH": app_config["INSTANCE_PATH"]}
        return runner.invoke(cli.main, list(args), input=input, obj=obj, catch_exceptions=False)

    return invoke
