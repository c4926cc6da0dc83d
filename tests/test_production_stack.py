"""The sync engine's crash test against the production setup: gunicorn and `oncal-feed worker`.

The processes are the ones a deployment runs: `gunicorn wsgi:app` with gunicorn.conf.py
(two workers) and the installed `oncal-feed worker` console script, configured through
their environment alone, on the suite's database (the SQLite file in the SQLite run,
PostgreSQL in the PostgreSQL run) and Redis as the queue. Shifts are written through
gunicorn's JSON API, so the sync work is queued on Redis by the web processes; both fake
calendar services fail about a quarter of their calls; the worker is SIGKILLed in the
middle of its syncs twice, with shifts changing in between. Once the faults end, a fresh
worker, set going by its sweep as it would be after the dead worker's leases ran out,
must leave each remote calendar holding exactly the desired events: none missing, no
duplicates, no orphans. The web side must stay healthy throughout.

Two settings differ from a real deployment, for the fakes' sake:

* `ONCAL_MODE=test`: the fakes speak plain http:// on loopback, which production mode
  refuses for OAuth endpoints. SECRET_KEY and TOKEN_ENCRYPTION_KEYS are still given
  explicitly, as production requires.
* msal accepts only an https:// authority, and a process configured by environment can't
  be handed the test's loopback `http_client`; so the worker keeps the real default
  authority and reaches the fake through `tests.https_proxy` (HTTPS_PROXY and a CA of
  the test's own).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from oncal_feed.config import DEFAULTS
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, SyncRecord
from oncal_feed.sync.service import run_sync
from oncal_feed.sync.tasks import SWEEP_GRACE, SyncQueue, get_queue
from tests.fakes.microsoft import FakeMicrosoft
from tests.https_proxy import InterceptingProxy
from tests.processes import (
    WorkerProcess,
    free_port,
    http_request,
    start_gunicorn,
    stop_process,
    wait_until_serving,
)
from tests.sync.remote import (
    connect_both,
    connection,
    desired_events,
    mismatch,
    remote_events,
    tomorrow_noon,
)
from tests.sync.support import World
from tests.sync.test_faults import assert_exact, inject_faults, leases_held

SHIFTS = 80
SHIFT_LENGTH = timedelta(hours=4)
# Each kill waits for a fresh worker to start, reach the fakes and write a little.
ROUND_TIMEOUT = 60.0
RECOVERY_TIMEOUT = 90.0


@pytest.fixture
def app_config(
    app_config: dict[str, Any], oauth_settings: dict[str, Any], redis_queue: dict[str, str]
) -> dict[str, Any]:
    """The in-process app (connect flows, assertions): the settings the processes get too.

    A short provider timeout turns the fakes' slow answers into timeouts, as in the
    in-process fault test; the token key must be shared, since the worker decrypts the
    tokens this app stores.
    """
    return {
        **app_config,
        **oauth_settings,
        **redis_queue,
        "PROVIDER_TIMEOUT": 1,
        "SECRET_KEY": "stack-test-secret-" + "s" * 40,
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }


@pytest.fixture
def microsoft_proxy(fake_microsoft: FakeMicrosoft, tmp_path: Path) -> Iterator[InterceptingProxy]:
    """An HTTPS proxy that hands Microsoft's sign-in host to the fake (see module docstring)."""
    host = urlsplit(fake_microsoft.authority_host).hostname
    fake = urlsplit(fake_microsoft.url)
    assert fake.hostname
    assert fake.port
    with InterceptingProxy({f"{host}:443": (fake.hostname, fake.port)}, tmp_path / "tls") as proxy:
        yield proxy


def stack_environment(
    config: dict[str, Any], proxy: InterceptingProxy, tmp_path: Path
) -> dict[str, str]:
    """The environment of gunicorn and the worker: the app's settings as variables.

    Settings this process inherited (a developer's DATABASE_URL, proxies) are dropped
    first, so only the test's own reach the children.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in DEFAULTS and not name.lower().endswith("_proxy")
    }
    env.update({name: str(config[name]) for name in DEFAULTS if config.get(name) is not None})
    env.update(proxy.environ())
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    # gunicorn.conf.py would make a temporary folder of its own, left behind afterwards.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return env


@dataclass
class Stack:
    """The running web server, its log, the worker, and an API key for it."""

    url: str
    web: subprocess.Popen[str]
    web_log: Path
    worker: WorkerProcess
    api_key: str

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the JSON API through gunicorn with the bearer key."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return http_request(method, f"{self.url}/api/v1{path}", body, headers)

    def stop_web(self) -> int:
        """SIGTERM gunicorn and return its exit code."""
        return stop_process(self.web)


@pytest.fixture
def stack(
    app: Flask,
    app_config: dict[str, Any],
    api_key: str,
    microsoft_proxy: InterceptingProxy,
    tmp_path: Path,
) -> Iterator[Stack]:
    """gunicorn (two workers) serving the app, and a worker ready to start; both are stopped
    at the end whatever happens (before `app` empties the database)."""
    env = stack_environment(app_config, microsoft_proxy, tmp_path)
    port = free_port()
    web_env = {**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"}
    web_log = tmp_path / "gunicorn.log"
    with web_log.open("w") as log:
        web = start_gunicorn(web_env, log)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, web, lambda: (web.wait(30), web_log.read_text())[1])
        yield Stack(url, web, web_log, worker, api_key)
    finally:
        worker.stop()
        stop_process(web)


# ---------------------------------------------------------------- helpers


def iso(instant: datetime) -> str:
    """An instant as the API takes it."""
    return instant.isoformat()


def shift_body(start: datetime, *, user: str = "alice", notes: str | None = None) -> dict[str, Any]:
    """A four-hour shift as the API takes it."""
    body = {
        "user_email": f"{user}@example.com",
        "starts_at": iso(start),
        "ends_at": iso(start + SHIFT_LENGTH),
    }
    if notes:
        body["notes"] = notes
    return body


def queued(queue: SyncQueue) -> int:
    """Tasks waiting on Redis under this test's queue name, due or scheduled."""
    return int(queue.huey.pending_count()) + int(queue.huey.scheduled_count())


def batch_members(fakes: dict[str, Any]) -> int:
    """Batched calendar calls that reached the fakes so far."""
    return sum(fake.stats.snapshot().get("batch_members", 0) for fake in fakes.values())


def kill_mid_sync(
    app: Flask, worker: WorkerProcess, fakes: dict[str, Any], rng: random.Random
) -> None:
    """Start a worker (the queue already holds its work) and SIGKILL it once it has made
    a few more batched calls; it must have died holding a lease."""
    threshold = batch_members(fakes) + rng.randrange(5, 40)
    worker.start()
    assert worker.process is not None
    deadline = time.monotonic() + ROUND_TIMEOUT
    while batch_members(fakes) < threshold:
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited by itself:\n{worker.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker made no {threshold} batched calls:\n{worker.log()[-4000:]}")
        time.sleep(0.002)
    worker.kill()
    assert leases_held(app) >= 1, "the worker was meant to die in the middle of a sync"


def expire_leases(app: Flask) -> None:
    """Let the dead worker's leases run out (as if their TTL had passed)."""
    with get_database(app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.lease_owner.is_not(None))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def make_overdue(app: Flask) -> None:
    """Leases run out and every connection overdue by the sweep's grace period: what the
    every-minute sweep finds a few minutes after a worker died mid-sync."""
    past = utcnow() - SWEEP_GRACE - timedelta(seconds=1)
    with get_database(app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.lease_owner.is_not(None))
            .values(lease_expires_at=past)
        )
        session.execute(update(CalendarConnection).values(sync_due_at=past))


def left_to_recover(app: Flask, fakes: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    """Per connection, how its calendar or its records differ from the goal (empty: none)."""
    alice = connection(app, ids["google"]).user_id
    expected = desired_events(app, alice, utcnow())
    found: dict[str, Any] = {}
    for provider, connection_id in ids.items():
        problems = mismatch(expected, remote_events(fakes, connection(app, connection_id)))
        with get_database(app).sessionmaker() as session:
            unsynced = session.scalar(
                select(func.count()).where(
                    SyncRecord.connection_id == connection_id, SyncRecord.state != "synced"
                )
            )
        if problems or unsynced:
            found[provider] = {"calendar": problems, "records not synced": unsynced}
    return found


def unsettled(app: Flask, ids: dict[str, int], since: datetime) -> dict[str, str]:
    """What each connection still lacks; empty once each has synced cleanly since `since`."""
    lacking = {}
    with get_database(app).sessionmaker() as session:
        for provider, connection_id in ids.items():
            row = session.get(CalendarConnection, connection_id)
            assert row is not None
            if row.lease_owner is not None:
                lacking[provider] = "being synced"
            elif row.status != "active":
                lacking[provider] = f"{row.status}: {row.last_error}"
            elif row.dirty_since is not None:
                lacking[provider] = "changes not synced yet"
            elif row.last_success_at is None or row.last_success_at < since:
                lacking[provider] = "no clean sync yet"
    return lacking


def wait_until_settled(
    app: Flask, ids: dict[str, int], since: datetime, worker: WorkerProcess
) -> None:
    """Wait (within RECOVERY_TIMEOUT) until the worker has synced every connection cleanly."""
    assert worker.process is not None
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while lacking := unsettled(app, ids, since):
        if worker.process.poll() is not None:
            pytest.fail(f"the recovering worker exited:\n{worker.log()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"no clean sync within {RECOVERY_TIMEOUT:.0f} s: {lacking}\n{worker.log()[-4000:]}"
            )
        time.sleep(0.2)


def first_traceback(log: str) -> str:
    """The log from the line before its first traceback (which names the failure), shortened."""
    lines = log.splitlines()
    first = next(n for n, line in enumerate(lines) if "Traceback" in line)
    return "\n".join(lines[max(first - 1, 0) : first + 60])


# ---------------------------------------------------------------- the test


def test_exact_calendars_after_faults_and_killed_workers_behind_gunicorn(
    app: Flask,
    client: FlaskClient,
    fakes: dict[str, Any],
    stack: Stack,
    microsoft_proxy: InterceptingProxy,
) -> None:
    """gunicorn + Redis + `oncal-feed worker`, ≥20% faults, SIGKILL twice: exact calendars."""
    rng = random.Random(2025)
    World(app)  # Alice, Bob and the `payments` schedule
    ids = connect_both(app, client, fakes)
    queue = get_queue(app)
    assert type(queue.huey).__name__ == "RedisHuey"
    # As if connected yesterday: both calendars in step (empty) and their connections clean,
    # so the next shift write is what queues their syncs. The connect flow's own nudges go.
    for connection_id in ids.values():
        assert run_sync(app, connection_id).outcome == "ok"
    queue.huey.flush()

    # The rota arrives through gunicorn: one window import, one nudge per connection.
    start = tomorrow_noon() - timedelta(days=5)
    at = [start + timedelta(hours=7 * n) for n in range(SHIFTS)]
    window = urlencode({"from": iso(at[0]), "to": iso(at[-1] + SHIFT_LENGTH)})
    rota = [{"external_id": f"s{n}", **shift_body(at[n])} for n in range(SHIFTS)]
    status, body = stack.api("PUT", f"/schedules/payments/shifts?{window}", rota)
    assert (status, body.get("created")) == (200, SHIFTS), body
    assert queued(queue) == len(ids), "a web process queues one sync per connection on Redis"

    # Round 1: the first sync under faults, killed part way. httplib2 replays a request
    # whose connection closed after the write ("close"): Google sees a 409 for its insert.
    inject_faults(fakes, seed=1, drop_mode="close")
    kill_mid_sync(app, stack.worker, fakes, rng)

    # Changes while no worker runs, through gunicorn, four at a time so both of its worker
    # processes take some: edits, reassignments, new shifts, deletions.
    expire_leases(app)
    waiting = queued(queue)
    numbers = rng.sample(range(SHIFTS), 35)
    calls = (
        [("PUT", f"s{n}", shift_body(at[n] + timedelta(hours=1), notes="moved"), 200)
         for n in numbers[:15]]
        + [("PUT", f"s{n}", shift_body(at[n], user="bob"), 200) for n in numbers[15:25]]
        + [("PUT", f"new{n}", shift_body(at[n] + timedelta(hours=5)), 201) for n in range(10)]
        + [("DELETE", f"s{n}", None, 204) for n in numbers[25:35]]
    )  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda call: stack.api(call[0], f"/schedules/payments/shifts/{call[1]}", call[2]),
                calls,
            )
        )
    assert [status for status, _ in answers] == [call[3] for call in calls], answers
    assert queued(queue) > waiting, "the web processes queued the changes' syncs"

    # Round 2: a fresh worker takes the queued work up and is killed too; connections
    # now reset rather than close.
    inject_faults(fakes, seed=2, drop_mode="reset")
    kill_mid_sync(app, stack.worker, fakes, rng)
    assert sum(sum(fake.faults.injected.values()) for fake in fakes.values()) > 0

    # Recovery once the outage is over: a fresh worker, and the sweep it runs every minute
    # finds the dead worker's connections once their leases ran out. (With the faults left
    # on, each failed sync backs off exponentially in real time, from failure counts the
    # rounds already ran up: minutes. tests/sync/test_faults.py recovers under faults.)
    # Time is moved, not waited for, and the sweep is queued at once, not at the minute.
    # A call still in flight when the worker died (a slow fault) lands: let it, first.
    for fake in fakes.values():
        fake.faults.reset()
        fake.wait_idle()
    assert left_to_recover(app, fakes, ids), "the kills were meant to leave work undone"
    since = utcnow()
    make_overdue(app)
    metrics_port = free_port()
    stack.worker.start("--metrics-port", str(metrics_port))
    queue.sweep()
    wait_until_settled(app, ids, since, stack.worker)
    assert_exact(app, fakes, ids, utcnow())

    # The worker serves its own Prometheus metrics: the syncs it just ran are counted.
    status, scraped = http_request("GET", f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200, (scraped, stack.worker.log()[-4000:])
    runs = {
        sample.labels["provider"]: sample.value
        for family in text_string_to_metric_families(scraped.decode())
        for sample in family.samples
        if sample.name == "oncal_sync_runs_total" and sample.labels["outcome"] == "ok"
    }
    assert runs.get("google", 0) >= 1
    assert runs.get("microsoft", 0) >= 1

    # The worker really went through Microsoft's sign-in (the fake behind the proxy), and
    # tried to reach nothing else over https.
    assert microsoft_proxy.tunnels >= 1
    assert (microsoft_proxy.refused, microsoft_proxy.errors) == ([], [])

    # The web side stayed healthy, and stops cleanly.
    status, body = http_request("GET", f"{stack.url}/readyz")
    assert status == 200, body
    assert stack.stop_web() == 0
    web_log = stack.web_log.read_text()
    assert "PUT /api/v1/schedules/payments/shifts" in web_log  # the access log is here
    assert "Traceback" not in web_log, first_traceback(web_log)
    assert stack.worker.stop() == 0, stack.worker.log()[-4000:]
    assert "Traceback" not in stack.worker.log(), first_traceback(stack.worker.log())
