"""Push-sync benchmark against the fake Google and Microsoft servers.

    .venv/bin/python benchmarks/sync.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                        [--shifts 500] [--idle 10000]
    .venv/bin/python benchmarks/sync.py --chaos [--seed 2026] [--shifts 500] [--changes 200]
                                        [--budget 120] [--database-url ...]

Builds a scratch database (a temporary SQLite file, or a fresh database on the given
PostgreSQL server, dropped at the end), starts the fake Google and Microsoft servers,
connects one user's Google and Outlook calendars through the real OAuth flows, and
syncs through the real adapters. For each provider it prints HTTP round trips (from the
fakes' counters), remote write operations and wall time for:

- initial: the first sync of --shifts shifts (batched: Google 50, Graph 20 per request);
- one change: one shift's notes edited (expect one round trip with one write);
- no change: nothing to do (expect no round trip at all).

Then, with the worker running (Huey's consumer, embedded), change-to-calendar latency:
--rounds times, one shift is moved and the time from its commit until each fake wrote the
moved event (the fake's own `updated` / `lastModifiedDateTime` stamp) is taken (median and
max per provider); and a burst of 10 moves 0.2 s apart, with the event writes it cost
(batching: far fewer than 10 per provider).

Then, with --idle connections (10,000 by default, each with a user and five synced
shifts), it times:

- the sweep when none is due: one indexed query (its plan is printed);
- the sweep plus the reconciles when every window has moved and nothing changed: the
  whole queue path (sweep → Huey nudges → lease, load, plan, release) with a provider
  that counts calls, which must stay at zero.

`--chaos` instead runs the scenario of tests/sync/chaos.py (the CI test's, with any seed
and size): both providers failing a fifth of their calls in every way, the worker
SIGKILLed twice mid-batch, churn, the user's edits and deletions and deleted calendars;
it prints how long exact convergence took after the last change with the faults on
(`--budget` seconds at most), each killed worker's take-over time, round trips per
change, and the writes while idle.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import selectinload

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed import accounts, create_app, shifts  # noqa: E402
from oncal_feed.db import fresh_database, get_database, utcnow  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.models import CalendarConnection, Shift, SyncRecord, User  # noqa: E402
from oncal_feed.notify import shifts_changed  # noqa: E402
from oncal_feed.providers.memory import MemoryProvider  # noqa: E402
from oncal_feed.rendering import RenderOptions, shift_event  # noqa: E402
from oncal_feed.shifts import shift_facts  # noqa: E402
from oncal_feed.sync.service import run_sync, use_providers  # noqa: E402
from oncal_feed.sync.tasks import (  # noqa: E402
    DEBOUNCE,
    get_queue,
    start_embedded_worker,
    sweep_due,
)
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput  # noqa: E402
from tests.fakes.google import FakeGoogle  # noqa: E402
from tests.fakes.microsoft import FakeMicrosoft  # noqa: E402
from tests.sync.remote import connect_both, connection, remote_events  # noqa: E402

BASE_URL = "https://oncal.example.test"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
ALICE = "alice@example.com"


def settings(google: FakeGoogle, microsoft: FakeMicrosoft) -> dict[str, Any]:
    """App settings pointing both providers at the fakes."""
    return {
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "GOOGLE_AUTH_URI": google.auth_uri,
        "GOOGLE_TOKEN_URI": google.token_uri,
        "GOOGLE_REVOKE_URI": google.revoke_uri,
        "GOOGLE_API_ENDPOINT": google.api_endpoint,
        "GOOGLE_BATCH_URI": google.batch_uri,
        "MICROSOFT_CLIENT_ID": CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": CLIENT_SECRET,
        "MICROSOFT_AUTHORITY_HOST": microsoft.authority_host,
        "GRAPH_ENDPOINT": microsoft.graph_endpoint,
        "MSAL_CLIENT_OPTIONS": {
            "instance_discovery": False,
            "validate_authority": False,
            "http_client": microsoft.loopback_http_client(),
        },
    }


def round_trips(fake: FakeGoogle | FakeMicrosoft) -> tuple[int, int]:
    """(calendar API round trips, write operations) counted by a fake since its reset."""
    stats = fake.stats.snapshot()
    if isinstance(fake, FakeGoogle):
        trips = stats.get("api_round_trips", 0)
        writes = sum(stats.get(f"events.{op}", 0) for op in ("insert", "update", "delete"))
    else:
        trips = stats.get("graph_round_trips", 0)
        writes = sum(stats.get(f"events.{op}", 0) for op in ("create", "update", "delete"))
    return trips, writes


def measure(app: Any, fake: FakeGoogle | FakeMicrosoft, connection_id: int) -> str:
    """Sync once; return round trips, writes and wall time as one line."""
    fake.reset_stats()
    started = time.perf_counter()
    report = run_sync(app, connection_id)
    elapsed = time.perf_counter() - started
    assert report.outcome == "ok", report
    trips, writes = round_trips(fake)
    return f"{trips:4d} round trips, {writes:4d} writes, {elapsed * 1000:8.1f} ms"


def provider_figures(app: Any, fakes: dict[str, Any], count: int) -> dict[str, int]:
    """Initial / one change / no change, for Google and Outlook."""
    ids = connect_both(app, app.test_client(), fakes)
    start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    items = [
        ShiftInput(f"s{n}", ALICE, at, at + timedelta(hours=3))
        for n, at in ((n, start + timedelta(hours=4 * n)) for n in range(count))
    ]  # fmt: skip
    with get_database(app).session() as session:
        schedule = shifts.get_schedule(session, "payments")
        shifts.import_window(
            session, schedule, items[0].starts_at, items[-1].ends_at, items, utcnow()
        )

    print(f"\n{count} shifts, one user, real adapters against the fakes ({describe(app)})")
    for provider, fake in fakes.items():
        name = "Google" if provider == "google" else "Outlook"
        print(f"  {name:8s} initial     {measure(app, fake, ids[provider])}")
    edited = ShiftInput("s7", ALICE, items[7].starts_at, items[7].ends_at, notes="swapped")
    with get_database(app).session() as session:
        shifts.upsert_shift(session, shifts.get_schedule(session, "payments"), edited, utcnow())
    for provider, fake in fakes.items():
        name = "Google" if provider == "google" else "Outlook"
        print(f"  {name:8s} one change  {measure(app, fake, ids[provider])}")
    for provider, fake in fakes.items():
        name = "Google" if provider == "google" else "Outlook"
        print(f"  {name:8s} no change   {measure(app, fake, ids[provider])}")
    return ids


def move_shift(app: Any, starts: Any) -> None:
    """Move the benchmark's shift as the API does: commit, then notify the sync queue."""
    with app.app_context():
        with get_database(app).session() as session:
            schedule = shifts.get_schedule(session, "payments")
            item = ShiftInput("latency", ALICE, starts, starts + timedelta(hours=3))
            touched = shifts.upsert_shift(session, schedule, item, utcnow()).touched_user_ids
        shifts_changed(touched)


def shown_at(app: Any, fakes: dict[str, Any], ids: dict[str, int], starts: Any) -> dict[str, float]:
    """The providers whose calendar shows the benchmark's shift starting at `starts`,
    with the moment (epoch seconds, the fake's own write stamp) it came to."""
    return {
        provider: event.written_at
        for provider, connection_id in ids.items()
        for event in remote_events(fakes, connection(app, connection_id))
        if event.start == starts and event.written_at is not None
    }


def latency_figures(app: Any, fakes: dict[str, Any], ids: dict[str, int], rounds: int) -> None:
    """Change → event in the fake with the worker running; then a burst's writes."""
    print(f"\nchange-to-calendar latency, worker running (debounce {DEBOUNCE.total_seconds()} s)")
    base = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    samples: dict[str, list[float]] = {provider: [] for provider in ids}
    stop = start_embedded_worker(app, workers=2)
    try:
        for n in range(rounds):
            starts = base + timedelta(minutes=15 * (n + 1))
            started = time.time()
            move_shift(app, starts)
            waiting = set(ids)
            while waiting:
                # Polled at a leisurely pace and timed by the fakes' write stamps: reading
                # both calendars whole holds each fake's lock, and polling them often would
                # slow the very writes being timed.
                time.sleep(0.1)
                assert time.time() - started < 60, f"not synced: {waiting}"
                for provider, written_at in shown_at(app, fakes, ids, starts).items():
                    if provider in waiting:
                        samples[provider].append(written_at - started)
                        waiting.discard(provider)
            time.sleep(0.3)  # let the run finish recording before the next change
        for provider, values in samples.items():
            name = "Google" if provider == "google" else "Outlook"
            print(
                f"  {name:8s} median {statistics.median(values):5.2f} s, "
                f"max {max(values):5.2f} s over {len(values)} changes"
            )
        for fake in fakes.values():
            fake.reset_stats()
        last = base
        for n in range(10):
            last = base + timedelta(days=1, minutes=5 * n)
            move_shift(app, last)
            time.sleep(0.2)
        started = time.perf_counter()
        while set(shown_at(app, fakes, ids, last)) != set(ids):
            assert time.perf_counter() - started < 120, "the burst never synced"
            time.sleep(0.05)
        for provider, fake in fakes.items():
            name = "Google" if provider == "google" else "Outlook"
            _trips, writes = round_trips(fake)
            print(f"  {name:8s} burst of 10 moves 0.2 s apart: {writes} event writes")
    finally:
        stop()


def describe(app: Any) -> str:
    """Which database the app uses."""
    return get_database(app).engine.dialect.name


def idle_connections(app: Any, count: int) -> None:
    """Time the sweep over `count` idle connections, and their no-op reconciles."""
    database = get_database(app)
    now = utcnow()
    calendar = MemoryProvider()
    calendar_id = calendar.create_calendar("On-call shifts", "UTC")
    started = time.perf_counter()
    with database.session() as session:
        schedule_id = shifts.get_schedule(session, "payments").id
        first_user = session.scalar(select(User.id).order_by(User.id.desc())) or 0
        users = [
            {"email": f"idle{n}@example.com", "display_name": f"Idle {n}", "time_zone": "UTC",
             "public_id": f"u_idle{n}", "calendar_version": 1,
             "created_at": now, "updated_at": now}
            for n in range(count)
        ]  # fmt: skip
        session.execute(insert(User), users)
        ids = list(session.scalars(select(User.id).where(User.id > first_user).order_by(User.id)))
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        session.execute(
            insert(Shift),
            [
                {"uid": f"idle-{uid}-{k}@bench", "schedule_id": schedule_id,
                 "external_id": f"idle-{uid}-{k}", "user_id": uid,
                 "starts_at": day + timedelta(days=k * 3, hours=9),
                 "ends_at": day + timedelta(days=k * 3, hours=17), "role": "primary",
                 "notes": "", "revision": 1, "created_at": now, "updated_at": now}
                for uid in ids
                for k in range(5)
            ],
        )  # fmt: skip
        session.execute(
            insert(CalendarConnection),
            [
                {"user_id": uid, "provider": "google", "status": "active",
                 "calendar_id": calendar_id, "owns_calendar": True, "use_primary": False,
                 "scopes": "", "window_days": 90, "id_generation": 1, "last_created": 0,
                 "last_updated": 0, "last_deleted": 0, "failure_count": 0,
                 "last_full_check_at": now, "last_success_at": now, "last_sync_at": now,
                 "sync_due_at": now + timedelta(hours=12), "created_at": now,
                 "updated_at": now}
                for uid in ids
            ],
        )  # fmt: skip
        connection_of = dict(
            session.execute(
                select(CalendarConnection.user_id, CalendarConnection.id).where(
                    CalendarConnection.user_id.in_(ids)
                )
            ).all()
        )
        options = RenderOptions(BASE_URL)
        rows = session.scalars(
            select(Shift).options(selectinload(Shift.schedule)).where(Shift.user_id.in_(ids))
        ).all()
        session.execute(
            insert(SyncRecord),
            [
                {"connection_id": connection_of[row.user_id], "shift_id": row.id,
                 "shift_uid": row.uid, "remote_id": f"r{row.id}", "state": "synced",
                 "content_hash": shift_event(shift_facts(row), options).content_hash,
                 "updated_at": now}
                for row in rows
            ],
        )  # fmt: skip
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    print(f"\n{count} idle connections (5 synced shifts each) set up in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip

    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert sweep_due(app, now) == []
        timings.append(time.perf_counter() - started)
    print(
        f"  sweep, none due:            {statistics.median(timings) * 1000:8.2f} ms (median of 20)"
    )
    explain(app, now)

    class Counting(MemoryProvider):
        calls = 0

        def __getattribute__(self, name: str) -> Any:
            if name in ("apply", "list_events", "find_event", "calendar_exists", "insert_event",
                        "update_event", "delete_event", "create_calendar"):  # fmt: skip
                type(self).calls += 1
            return super().__getattribute__(name)

    counting = Counting()
    use_providers(app, lambda connection: counting)
    # A day later every window has moved: each connection is due, none has anything to do.
    with database.session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.user_id.in_(ids))
            .values(sync_due_at=now - timedelta(minutes=5))
        )
    queue = get_queue(app)
    queue.huey.flush()  # the nudges queued by connecting, above
    queue.clock = lambda: now
    started = time.perf_counter()
    swept = 0
    while batch := queue.sweep.call_local():  # the sweep claims up to 5,000 at a time
        swept += batch
    sweep_time = time.perf_counter() - started
    ran = queue.drain(now)
    total = time.perf_counter() - started
    assert swept == count == ran, (swept, ran)
    assert Counting.calls == 0, Counting.calls
    print(
        f"  sweep, all due (window moved): {sweep_time * 1000:8.1f} ms to select and queue {swept}"
    )
    print(f"  ... and reconcile all, nothing to change: {total:8.1f} s "
          f"({total / count * 1000:.2f} ms each), remote calls: {Counting.calls}")  # fmt: skip
    queue.huey.flush()


def explain(app: Any, now: Any) -> None:
    """Print the sweep query's plan."""
    database = get_database(app)
    overdue = now - timedelta(seconds=30)
    with database.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            sql = ("EXPLAIN QUERY PLAN SELECT id FROM calendar_connections WHERE status IN "
                   "('active','error') AND (sync_due_at IS NULL OR sync_due_at <= :t OR "
                   "dirty_since <= :t) LIMIT 5000")  # fmt: skip
            rows = connection.execute(text(sql), {"t": overdue.replace(tzinfo=None)}).all()
            plan = "; ".join(str(row[-1]) for row in rows)
        else:
            sql = ("EXPLAIN SELECT id FROM calendar_connections WHERE status IN "
                   "('active','error') AND (sync_due_at IS NULL OR sync_due_at <= :t OR "
                   "dirty_since <= :t) LIMIT 5000")  # fmt: skip
            rows = connection.execute(text(sql), {"t": overdue.replace(tzinfo=None)}).all()
            plan = " | ".join(row[0].strip() for row in rows)
    print(f"  plan: {plan}")


def chaos_figures(url: str, folder: Path, chaos: Any) -> None:
    """Run the chaos scenario once and print its figures."""
    from tests.sync.chaos import Chaos, scenario_config
    from tests.sync.worker_process import worker_child

    with FakeGoogle() as google, FakeMicrosoft() as microsoft:
        fakes = {"google": google, "microsoft": microsoft}
        for provider, fake in fakes.items():
            fake.register_client(
                CLIENT_ID, CLIENT_SECRET, [f"{BASE_URL}/api/calendar/{provider}/callback"]
            )
        config = {
            "ONCAL_MODE": "test",
            "DATABASE_URL": url,
            "INSTANCE_PATH": str(folder),
            "BASE_URL": BASE_URL,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "QUEUE_URL": f"sqlite:///{folder / 'queue.sqlite'}",
            **settings(google, microsoft),
            **scenario_config(chaos),
        }
        app = create_app(config)
        upgrade(get_database(app))
        with worker_child(config, fakes, folder, periodic=True) as worker:
            figures = Chaos(app, app.test_client(), fakes, worker, chaos).run()
        print(f"\nchaos scenario ({describe(app)})")
        for line in figures.lines(chaos):
            print(f"  {line}")
        get_database(app).dispose()


def main() -> None:
    """Parse options, build the world, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--shifts", type=int, default=500)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15, help="latency samples")
    parser.add_argument("--chaos", action="store_true", help="run the chaos scenario only")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds, faults on")
    args = parser.parse_args()
    if args.chaos:
        from tests.sync.chaos import Settings

        chaos = Settings(
            seed=args.seed, shifts=args.shifts, changes=args.changes, budget=args.budget
        )
        with (
            fresh_database(args.database_url, "oncal_bench_chaos") as url,
            tempfile.TemporaryDirectory() as folder,
        ):
            chaos_figures(url, Path(folder), chaos)
        return
    with (
        fresh_database(args.database_url, "oncal_bench") as url,
        tempfile.TemporaryDirectory() as folder,
        FakeGoogle() as google,
        FakeMicrosoft() as microsoft,
    ):
        fakes = {"google": google, "microsoft": microsoft}
        for provider, fake in fakes.items():
            fake.register_client(
                CLIENT_ID, CLIENT_SECRET, [f"{BASE_URL}/api/calendar/{provider}/callback"]
            )
        app = create_app(
            {
                "ONCAL_MODE": "test",
                "DATABASE_URL": url,
                "INSTANCE_PATH": folder,
                "BASE_URL": BASE_URL,
                "SECRET_KEY": secrets.token_urlsafe(32),
                "QUEUE_URL": f"sqlite:///{Path(folder) / 'queue.sqlite'}",
                **settings(google, microsoft),
            }
        )
        database = get_database(app)
        upgrade(database)
        with database.session() as session:
            accounts.create_user(session, UserInput(ALICE, "Alice", "Europe/Berlin"), utcnow())
            shifts.upsert_schedule(
                session, "payments", ScheduleInput("Payments", "Europe/Berlin"), utcnow()
            )
        ids = provider_figures(app, fakes, args.shifts)
        if args.rounds:
            latency_figures(app, fakes, ids, args.rounds)
        if args.idle:
            idle_connections(app, args.idle)
        database.dispose()


if __name__ == "__main__":
    main()
