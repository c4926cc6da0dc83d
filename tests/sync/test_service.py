"""`sync_user_now`, leases lost mid-sync, and the `oncal-feed worker` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import update

from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.sync.service import use_providers
from oncal_feed.sync.tasks import get_queue, sync_user_now
from tests.sync.support import NOW, CountingProvider, World, live_uids


def alice(world: World) -> User:
    """Alice's row."""
    with world.database.sessionmaker() as session:
        user = session.get(User, world.user_id("alice"))
        assert user is not None
        session.expunge(user)
        return user


def test_sync_user_now_with_a_one_off_window(
    app: Flask, world: World, memory: MemoryProvider
) -> None:
    """`days` widens this run only; later syncs keep what it wrote (aged-out rules)."""
    use_providers(app, lambda c: memory)
    now = utcnow()
    offset = (now - NOW).total_seconds() / 86400
    world.put_shift("soon", offset + 2)
    world.put_shift("far", offset + 40)
    cid = world.connect(memory, window_days=14)
    with app.app_context():
        result = sync_user_now(alice(world), 60)
    assert (result["created"], result["failed"]) == (2, 0)
    assert [c["outcome"] for c in result["connections"]] == ["ok"]
    assert world.connection(cid).window_days == 14
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=utcnow(), full_check=True)
    assert (report.outcome, counting.writes) == ("ok", 0)
    assert len(live_uids(memory, world.connection(cid).calendar_id)) == 2


def test_sync_user_now_when_a_worker_holds_the_lease(
    app: Flask, world: World, memory: MemoryProvider
) -> None:
    """A busy connection is reported and nudged to run again right after."""
    use_providers(app, lambda c: memory)
    cid = world.connect(memory)
    held = utcnow() + timedelta(minutes=1)
    world.execute(update(CalendarConnection).values(lease_owner="w", lease_expires_at=held))
    with app.app_context():
        result = sync_user_now(alice(world))
    assert [c["outcome"] for c in result["connections"]] == ["busy"]
    assert world.connection(cid).dirty_since is not None
    assert get_queue(app).huey.pending_count() == 1
    get_queue(app).huey.flush()


def test_sync_user_now_without_connections(app: Flask, world: World) -> None:
    """Nothing connected: an empty answer, not an error."""
    with app.app_context():
        assert sync_user_now(alice(world)) == {
            "connections": [], "created": 0, "updated": 0, "deleted": 0, "failed": 0,
        }  # fmt: skip


class StealsTheLease(CountingProvider):
    """While its first batch runs, another worker takes the (expired) lease over."""

    def __init__(self, inner, world: World) -> None:
        super().__init__(inner)
        self.world = world

    def apply(self, calendar_id, operations):
        """Let another owner take the lease, then answer."""
        self.world.execute(update(CalendarConnection).values(lease_owner="another-worker"))
        return super().apply(calendar_id, operations)


def test_a_lost_lease_stops_the_sync_without_writing_status(
    world: World, memory: MemoryProvider
) -> None:
    """The next batch checks the lease; the new holder's sync owns the status columns."""
    for n in range(120):
        world.put_shift(f"s{n}", n / 2, hours=2)
    cid = world.connect(memory)
    report = world.sync(cid, StealsTheLease(memory, world), full_check=False)
    assert report.outcome == "lease_lost"
    connection = world.connection(cid)
    assert connection.lease_owner == "another-worker"
    assert connection.last_sync_at is None
    # What was sent is recorded: the first batch of 50 is in, and nothing more was sent.
    assert report.created == 50
    assert len(live_uids(memory, connection.calendar_id)) == 50


def test_worker_command_runs_and_stops_on_sigint(
    app: Flask, world: World, app_config: dict, tmp_path: Path
) -> None:
    """`oncal-feed worker` consumes the queue (a connection without a grant is paused)."""
    world.put_shift("a", (utcnow() - NOW).total_seconds() / 86400 + 1)
    cid = world.connect(MemoryProvider())  # no tokens: the live provider can't be built
    get_queue(app).nudge(cid, force=True)
    env = {
        **os.environ,
        "ONCAL_MODE": "test",
        "DATABASE_URL": app_config["DATABASE_URL"],
        "QUEUE_URL": app_config["QUEUE_URL"],
        "SECRET_KEY": app_config["SECRET_KEY"],
        "TOKEN_ENCRYPTION_KEYS": ",".join(app.config["TOKEN_ENCRYPTION_KEYS"]),
    }
    command = Path(sys.executable).with_name("oncal-feed")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(command), "worker", "--workers", "1", "--no-sweep"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while world.connection(cid).status != "needs_reauth":
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Push-sync worker: 1 thread(s), queue SqliteHuey, sweep off." in log.read_text()
    assert world.connection(cid).last_error.startswith("Google Calendar access was revoked")
    get_database(app).dispose()
