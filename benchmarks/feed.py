"""Feed benchmark: a 1,000-shift personal feed and a 1,000-shift schedule feed (everyone's
shifts of one schedule) through the Flask test client.

    .venv/bin/python benchmarks/feed.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                        [--big] [--shifts 1000] [--samples 300]

Builds a database (a temporary SQLite file by default; with --database-url, a fresh
database created on that PostgreSQL server and dropped at the end), runs the migrations
and loads one user with --shifts shifts inside the default feed window, and a schedule of
--shifts shifts taken in turn by ten people, which the user follows with a schedule feed.
Then it measures, for each of the two feeds:

- cold: the first request of a fresh process (empty caches: every event rendered);
- event-warm: a new body joined from cached event bytes (what a shift change costs);
- warm: a 200 with the body from the cache (targets: <= 5 ms median);
- from scratch: the same calendar built as icalendar.Calendar + 1,000 Events + to_ical,
  and its ratio to warm (target >= 50x);
- 304: a conditional request with If-None-Match (target <= 1 ms median);
- raw and gzip body sizes; SQL statements per warm and 304 request;
- the floor: a 404 for a malformed token (no database work), i.e. what the Flask test
  client and the app's request handling cost by themselves on this machine.

On PostgreSQL the feed user cache is on, as in production (FEED_USER_CACHE_ENTRIES): once
its listener listens, warm and 304 requests take the user row from memory.

--big then adds 10,000 users and 1,000,000 shifts (bulk Core executemany, ANALYZE) and
measures again: per-feed figures must not move, since every query is an index range
scan. The shift query's plan (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE) is printed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import Connection, event, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed import create_app  # noqa: E402
from oncal_feed.db import Database, fresh_database, get_database, utcnow  # noqa: E402
from oncal_feed.feeds.tokens import feed_links  # noqa: E402
from oncal_feed.feeds.views import feed_service  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.models import Feed, Schedule, Shift, User, first_feed_row  # noqa: E402
from oncal_feed.rendering import EventSpec, RenderOptions, shift_event  # noqa: E402
from oncal_feed.rendering.ics import PRODID, vevent  # noqa: E402
from oncal_feed.shifts import shift_facts, shifts_for_schedule, shifts_for_user  # noqa: E402

BASE_URL = "https://oncal.example.test"
CHUNK = 20_000
BIG_USERS = 10_000
BIG_SHIFTS = 1_000_000
SCHEDULES = [("payments", "Payments", "Europe/Berlin"), ("search", "Search", "America/New_York")]
INDEX = {"personal": "ix_shifts_user_id_starts_at", "schedule": "ix_shifts_schedule_id_starts_at"}
TEAM = ("team", "Payments API", "Europe/Berlin")
TEAM_SIZE = 10


def build_app(url: str, folder: Path) -> Flask:
    """A fresh app (so fresh caches) on the benchmark database."""
    return create_app(
        {
            "ONCAL_MODE": "test",
            "DATABASE_URL": url,
            "INSTANCE_PATH": str(folder),
            "SECRET_KEY": "benchmark-" + "k" * 40,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "QUEUE_URL": f"sqlite:///{folder / 'queue.sqlite'}",
            "BASE_URL": BASE_URL,
        }
    )


def today() -> datetime:
    """Midnight UTC today: the feed window's reference."""
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def seed_user(connection: Connection, shifts: int) -> int:
    """Schedules plus the benchmark user with `shifts` shifts inside the default window."""
    now = utcnow()
    for key, name, zone in SCHEDULES:
        connection.execute(
            insert(Schedule.__table__).values(
                key=key, name=name, time_zone=zone, revision=1, created_at=now, updated_at=now
            )
        )
    schedule_ids = list(connection.scalars(select(Schedule.id).order_by(Schedule.id)))
    user_id = connection.execute(
        insert(User.__table__)
        .values(
            public_id="u_benchmark",
            email="bench@example.com",
            display_name="Bench Marker",
            time_zone="Europe/Berlin",
            calendar_version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(User.id)
    ).scalar_one()
    connection.execute(insert(Feed.__table__), [first_feed_row(user_id, "u_benchmark", now)])
    # One 8-hour shift every 9 hours from 29 days ago: 1,000 of them fit in 375 days.
    first = today() - timedelta(days=29)
    rows = [
        _shift_row(n, f"bench-{n}", schedule_ids[n % len(schedule_ids)], user_id,
                   first + timedelta(hours=9 * n), timedelta(hours=8), now)
        for n in range(shifts)
    ]  # fmt: skip
    connection.execute(insert(Shift.__table__), rows)
    return user_id


def seed_team(connection: Connection, user_id: int, shifts: int) -> str:
    """A schedule of `shifts` shifts taken in turn by the user and nine colleagues, and the
    user's schedule feed of it; returns that feed's public id."""
    now = utcnow()
    key, name, zone = TEAM
    schedule_id = connection.execute(
        insert(Schedule.__table__)
        .values(key=key, name=name, time_zone=zone, revision=1, created_at=now, updated_at=now)
        .returning(Schedule.id)
    ).scalar_one()
    people = [user_id]
    for n in range(1, TEAM_SIZE):
        people.append(
            connection.execute(
                insert(User.__table__)
                .values(
                    public_id=f"u_team{n}",
                    email=f"team{n}@example.com",
                    display_name=f"Colleague {n}",
                    time_zone="UTC",
                    calendar_version=1,
                    created_at=now,
                    updated_at=now,
                )
                .returning(User.id)
            ).scalar_one()
        )
    connection.execute(
        insert(Feed.__table__),
        [first_feed_row(person, f"u_team{n}", now) for n, person in enumerate(people) if n],
    )
    first = today() - timedelta(days=29)
    rows = [
        _shift_row(n, f"team-{n}", schedule_id, people[n % TEAM_SIZE],
                   first + timedelta(hours=9 * n), timedelta(hours=8), now)
        for n in range(shifts)
    ]  # fmt: skip
    connection.execute(insert(Shift.__table__), rows)
    row = first_feed_row(user_id, "f_benchmark_team", now)
    row.update(name="Team", kind="schedule", schedule_id=schedule_id)
    connection.execute(insert(Feed.__table__), [row])
    return "f_benchmark_team"


def _shift_row(
    n: int, external_id: str, schedule_id: int, user_id: int, start: datetime,
    length: timedelta, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    return {
        "uid": f"bench-{n}-{external_id}@oncal-feed",
        "schedule_id": schedule_id,
        "external_id": external_id,
        "user_id": user_id,
        "starts_at": start,
        "ends_at": start + length,
        "role": "primary",
        "notes": "Runbook: https://runbooks.example.com/oncall — escalate after 15 minutes.",
        "revision": 1,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }


def seed_crowd(connection: Connection) -> float:
    """10,000 more users and shifts up to 1,000,000 in all, over the same two years."""
    started = time.perf_counter()
    now = utcnow()
    users = [
        {
            "public_id": f"u_crowd{n}",
            "email": f"crowd{n}@example.com",
            "display_name": f"Crowd {n}",
            "time_zone": "UTC",
            "calendar_version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(BIG_USERS)
    ]
    connection.execute(insert(User.__table__), users)
    user_ids = list(
        connection.scalars(select(User.id).where(User.email.like("crowd%")).order_by(User.id))
    )
    connection.execute(
        insert(Feed.__table__),
        [first_feed_row(uid, f"u_crowd{n}", now) for n, uid in enumerate(user_ids)],
    )
    schedule_ids = list(connection.scalars(select(Schedule.id)))
    existing = connection.scalar(select(Shift.id).order_by(Shift.id.desc()).limit(1)) or 0
    origin = today() - timedelta(days=365)
    step = timedelta(days=730) / (BIG_SHIFTS // BIG_USERS)
    batch: list[dict[str, Any]] = []
    for n in range(BIG_SHIFTS - existing):
        user_id = user_ids[n % BIG_USERS]
        start = origin + step * (n // BIG_USERS) + timedelta(minutes=n % 997)
        batch.append(
            _shift_row(n, f"crowd-{n}", schedule_ids[n % len(schedule_ids)], user_id, start,
                       timedelta(hours=12), now)
        )  # fmt: skip
        if len(batch) == CHUNK:
            connection.execute(insert(Shift.__table__), batch)
            batch.clear()
    if batch:
        connection.execute(insert(Shift.__table__), batch)
    connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def timed(call: Callable[[], Any], samples: int) -> list[float]:
    """Milliseconds of `samples` calls."""
    result = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        result.append((time.perf_counter() - started) * 1000)
    return result


def scratch_icalendar(specs: list[EventSpec]) -> bytes:
    """The same feed the obvious way: one Calendar of Events, serialized whole."""
    calendar = icalendar.Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", PRODID)
    calendar.add("x-wr-calname", "On-call — Bench Marker")
    for spec in specs:
        calendar.add_component(vevent(spec))
    return calendar.to_ical()


class Counter:
    """Counts SQL statements; keeps the last one that read shifts, with its parameters."""

    def __init__(self) -> None:
        self.count = 0
        self.shift_query: tuple[str, Any] | None = None

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        """`before_cursor_execute` listener."""
        self.count += 1
        if "FROM shifts" in statement:
            self.shift_query = (statement, parameters)


def measure(url: str, user_id: int, feed_id: str, samples: int, folder: Path) -> dict[str, Any]:
    """Every figure of the feed `feed_id` (of `user_id`), on a fresh app."""
    app = build_app(url, folder)
    database = get_database(app)
    counter = Counter()
    event.listen(database.autocommit_engine, "before_cursor_execute", counter)
    service = feed_service(app)
    with database.session() as session:
        feed = session.scalars(select(Feed).where(Feed.public_id == feed_id)).one()
        kind, schedule_id = feed.kind, feed.schedule_id
        with app.app_context():
            path = feed_links(feed).https.removeprefix(BASE_URL)
    client = app.test_client()
    agent = {"User-Agent": "Google-Calendar-Importer"}

    def get(headers: dict[str, str] | None = None, expect: int = 200) -> Any:
        response = client.get(path, headers={**agent, **(headers or {})})
        assert response.status_code == expect, response.status_code
        return response

    figures: dict[str, Any] = {"user_cache": "off (SQLite)", "kind": kind}
    if service.users is not None:
        # PostgreSQL: a running server's listener has long been listening; wait for this one.
        get()
        for _ in range(1000):
            if service.users.epoch() is not None:
                break
            time.sleep(0.01)
        else:
            raise SystemExit("the feed user listener did not start")
        figures["user_cache"] = "on (PostgreSQL, listening)"
    cold = []
    for _ in range(3):
        service.event_cache.clear()
        service.body_cache.clear()
        cold += timed(get, 1)
    figures["cold"] = statistics.median(cold)

    def event_warm() -> None:
        service.body_cache.clear()
        get()

    figures["event_warm"] = statistics.median(timed(event_warm, max(5, samples // 20)))
    raw = get()
    figures["raw_bytes"] = len(raw.get_data())
    zipped = get({"Accept-Encoding": "gzip"})
    figures["gzip_bytes"] = len(zipped.get_data())
    assert gzip.decompress(zipped.get_data()) == raw.get_data()

    tag = raw.headers["ETag"]
    kinds: dict[str, Callable[[], Any]] = {
        # The test client's own cost: a request refused before any database work.
        "floor": lambda: client.get("/feeds/not-a-token.ics", headers=agent),
        "warm": get,
        "warm_gzip": lambda: get({"Accept-Encoding": "gzip"}),
        "not_modified": lambda: get({"If-None-Match": tag}, expect=304),
    }
    # Interleaved, so a burst of load elsewhere on the machine hits every kind alike.
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(samples):
        for name, call in kinds.items():
            times[name] += timed(call, 1)
    for name, values in times.items():
        figures[name] = statistics.median(values)
        figures[name + "_p10"] = statistics.quantiles(values, n=10)[0]
    for name, headers, expect in (
        ("sql_warm", {}, 200), ("sql_304", {"If-None-Match": tag}, 304),
    ):  # fmt: skip
        before = counter.count
        get(headers, expect)
        figures[name] = counter.count - before

    with database.session() as session:
        window_start = today() - timedelta(days=30)
        window_end = today() + timedelta(days=366)

        def read() -> list[Shift]:
            if schedule_id is not None:
                return shifts_for_schedule(
                    session, schedule_id, window_start, window_end, deleted_since=today()
                )
            return shifts_for_user(
                session, user_id, window_start, window_end, deleted_since=today()
            )

        team = schedule_id is not None
        options = RenderOptions(base_url=BASE_URL, team=team)
        specs = [
            shift_event(shift_facts(s, s.user.display_name if team else ""), options)
            for s in read()
        ]
        figures["events"] = len(specs)
        figures["scratch"] = statistics.median(timed(lambda: scratch_icalendar(specs), 3))
        started = time.perf_counter()
        for _ in range(20):
            read()
        figures["query"] = (time.perf_counter() - started) * 1000 / 20
    figures["ratio"] = figures["scratch"] / figures["warm"]
    figures["plan"] = explain(database, counter.shift_query)
    event.remove(database.autocommit_engine, "before_cursor_execute", counter)
    if service.users is not None:
        service.users.close()
    database.dispose()
    return figures


def explain(database: Database, query: tuple[str, Any] | None) -> list[str]:
    """The plan of the feed's shift query, as the database would run it."""
    assert query is not None, "no shift query was seen"
    statement, parameters = query
    with database.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return [str(row[-1]) for row in rows]
        rows = connection.exec_driver_sql("EXPLAIN ANALYZE " + statement, parameters)
        return [str(row[0]) for row in rows]


def report(title: str, figures: dict[str, Any]) -> None:
    """Print one block of figures with their targets."""

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"\n== {title}")
    print(f"  kind of feed                   {figures['kind']:>10}")
    print(f"  events in feed                 {figures['events']:>10}")
    print(f"  feed user cache                {figures['user_cache']:>10}")
    print(
        f"  test-client floor (404, no DB) {figures['floor']:>10.3f} ms"
        f"   (p10 {figures['floor_p10']:.3f})"
    )
    print(f"  shift query alone              {figures['query']:>10.2f} ms")
    print(f"  cold first render              {figures['cold']:>10.1f} ms")
    print(f"  new body from cached events    {figures['event_warm']:>10.1f} ms")
    print(
        f"  warm feed (median)             {figures['warm']:>10.3f} ms"
        f"   (p10 {figures['warm_p10']:.3f})"
        f"   target <= 5 ms: {verdict(figures['warm'] <= 5)}"
    )
    print(f"  warm feed, gzip (median)       {figures['warm_gzip']:>10.3f} ms")
    print(f"  icalendar from scratch         {figures['scratch']:>10.1f} ms")
    print(
        f"  from scratch / warm            {figures['ratio']:>10.0f} x"
        f"   target >= 50x: {verdict(figures['ratio'] >= 50)}"
    )
    print(
        f"  304 (median)                   {figures['not_modified']:>10.3f} ms"
        f"   (p10 {figures['not_modified_p10']:.3f})"
        f"   target <= 1 ms: {verdict(figures['not_modified'] <= 1)}"
    )
    sizes = f"{figures['raw_bytes']:>10,} / {figures['gzip_bytes']:,}"
    print(f"  body raw / gzip                {sizes} bytes")
    print(f"  SQL statements: warm 200 / 304 {figures['sql_warm']:>10} / {figures['sql_304']}")
    print("  shift query plan:")
    for line in figures["plan"]:
        print(f"    {line}")
    index = INDEX[figures["kind"]]
    uses_index = any(index in line for line in figures["plan"])
    print(f"  uses {index}: {verdict(uses_index)}")


def main() -> None:
    """Parse arguments, build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: temporary SQLite)")
    parser.add_argument("--big", action="store_true", help="also measure among 1,000,000 shifts")
    parser.add_argument("--shifts", type=int, default=1000, help="the user's shifts (1000)")
    parser.add_argument("--samples", type=int, default=300, help="requests per median (300)")
    args = parser.parse_args()

    with (
        fresh_database(args.database_url, "oncal_bench") as url,
        tempfile.TemporaryDirectory() as folder,
    ):
        database = Database(url)
        upgrade(database)
        print(f"database: {database.engine.dialect.name}, {sys.version.split()[0]}, "
              f"icalendar {icalendar.__version__}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        with database.engine.begin() as connection:
            user_id = seed_user(connection, args.shifts)
            team_feed = seed_team(connection, user_id, args.shifts)
        feeds = (
            ("u_benchmark", f"{args.shifts} shifts, one user's feed"),
            (team_feed, f"{args.shifts} shifts, a schedule feed ({TEAM_SIZE} people)"),
        )
        for feed_id, title in feeds:
            report(title, measure(url, user_id, feed_id, args.samples, Path(folder)))
        if args.big:
            with database.engine.begin() as connection:
                took = seed_crowd(connection)
            with database.engine.connect() as connection:
                total = connection.scalar(text("SELECT count(*) FROM shifts"))
                users = connection.scalar(text("SELECT count(*) FROM users"))
            print(f"\nloaded {users:,} users, {total:,} shifts in {took:.1f} s")
            for feed_id, title in feeds:
                report(
                    f"{title}, among {total:,}",
                    measure(url, user_id, feed_id, args.samples, Path(folder)),
                )
        database.dispose()


if __name__ == "__main__":
    main()
