"""Query benchmark: a user's shifts overlapping a one-year window, among a million shifts.

    .venv/bin/python benchmarks/query.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                         [--users 10000] [--shifts-per-user 100] [--samples 200]

Builds a database (a temporary SQLite file by default; with --database-url, a fresh database
created on that PostgreSQL server and dropped at the end), runs the migrations, and bulk-loads
users and shifts with SQLAlchemy Core executemany in chunks: each user gets about 100 shifts
(8 hours to a week long) spread over six years, in one or two of a dozen schedules, about 1%
of them deleted (tombstones). Then it times `oncal_feed.shifts.shifts_for_user` — the query
behind every feed and push sync — for random users over one year, warm, and prints the median
and 95th percentile, the query plan (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on
PostgreSQL) with whether the (user_id, starts_at) index is used, and the build times.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed.db import Database, fresh_database  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.models import Schedule, Shift, User  # noqa: E402
from oncal_feed.shifts import shifts_for_user  # noqa: E402

INDEX = "ix_shifts_user_id_starts_at"
HISTORY_START = datetime(2021, 1, 4, tzinfo=UTC)
HISTORY_DAYS = 6 * 365
WINDOW = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
LENGTHS = (timedelta(hours=8), timedelta(hours=12), timedelta(days=1), timedelta(days=7))
SCHEDULES = 12
CHUNK = 20_000
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@contextmanager
def scratch_database(server_url: str | None) -> Iterator[Database]:
    """A new empty database: a temporary SQLite file, or a fresh one on a PostgreSQL server."""
    with fresh_database(server_url, "oncal_bench") as url:
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


def user_rows(count: int) -> Iterator[dict[str, Any]]:
    """Users with the columns a real row has."""
    for n in range(count):
        yield {
            "public_id": f"u_bench{n:08d}",
            "email": f"user{n}@bench.example",
            "display_name": f"User {n}",
            "time_zone": "Europe/Berlin",
            "calendar_version": 1,
            "created_at": NOW,
            "updated_at": NOW,
        }


def shift_rows(
    rng: random.Random, user_ids: list[int], schedule_ids: list[int], per_user: int
) -> Iterator[dict[str, Any]]:
    """About `per_user` shifts per user, one in each equal slice of six years, none overlapping."""
    slot = HISTORY_DAYS / per_user
    for user_id in user_ids:
        schedules = rng.sample(schedule_ids, rng.choice((1, 2)))
        for index in range(per_user):
            day = int(index * slot + rng.random() * (slot - 7))
            starts = HISTORY_START + timedelta(days=day, hours=rng.choice((0, 8, 16)))
            yield {
                "uid": f"{uuid.UUID(int=rng.getrandbits(128), version=4)}@oncal-feed",
                "schedule_id": rng.choice(schedules),
                "external_id": f"u{user_id}-{index}",
                "user_id": user_id,
                "starts_at": starts,
                "ends_at": starts + rng.choice(LENGTHS),
                "role": "primary",
                "notes": "",
                "revision": 1,
                "created_at": NOW,
                "updated_at": NOW,
                "deleted_at": NOW if rng.random() < 0.01 else None,
            }


def insert_chunks(database: Database, table: Any, rows: Iterator[dict[str, Any]]) -> int:
    """executemany in chunks of CHUNK rows, one transaction per chunk; return the row count."""
    total = 0
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            with database.engine.begin() as connection:
                connection.execute(insert(table), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        with database.engine.begin() as connection:
            connection.execute(insert(table), chunk)
        total += len(chunk)
    return total


def build(database: Database, users: int, per_user: int, seed: int) -> dict[str, float]:
    """Migrate and load the data set; return the seconds each step took."""
    rng = random.Random(seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    upgrade(database)
    timings["migrations"] = time.perf_counter() - started

    mark = time.perf_counter()
    schedule_rows = (
        {"key": f"team-{n}", "name": f"Team {n}", "time_zone": "Europe/Berlin", "revision": 1,
         "created_at": NOW, "updated_at": NOW}
        for n in range(SCHEDULES)
    )  # fmt: skip
    insert_chunks(database, Schedule.__table__, schedule_rows)
    insert_chunks(database, User.__table__, user_rows(users))
    timings["users and schedules"] = time.perf_counter() - mark

    with database.engine.connect() as connection:
        user_ids = list(connection.scalars(text("SELECT id FROM users ORDER BY id")))
        schedule_ids = list(connection.scalars(text("SELECT id FROM schedules ORDER BY id")))
    mark = time.perf_counter()
    count = insert_chunks(
        database, Shift.__table__, shift_rows(rng, user_ids, schedule_ids, per_user)
    )
    timings[f"{count:,} shifts"] = time.perf_counter() - mark

    # Fresh planner statistics, as autovacuum / a periodic ANALYZE would have made them.
    mark = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    timings["ANALYZE"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return timings


def captured_query(database: Database, user_id: int) -> tuple[str, Any]:
    """The SQL and parameters `shifts_for_user` really sends (so EXPLAIN shows the real plan)."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.sessionmaker() as session:
            shifts_for_user(session, user_id, *WINDOW)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    return next((s, p) for s, p in sent if "FROM shifts" in s)


def explain(database: Database, user_id: int) -> list[str]:
    """The query plan of the feed query for one user."""
    statement, parameters = captured_query(database, user_id)
    if database.engine.dialect.name == "sqlite":
        prefix = "EXPLAIN QUERY PLAN "
    else:
        prefix = "EXPLAIN (ANALYZE, BUFFERS) "
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    if database.engine.dialect.name == "sqlite":
        return [f"{row[-1]}" for row in rows]
    return [row[0] for row in rows]


def measure(database: Database, user_ids: list[int]) -> tuple[list[float], list[int]]:
    """Seconds per call and rows returned, for each user, after one warm-up pass."""
    for user_id in user_ids:
        with database.sessionmaker() as session:
            shifts_for_user(session, user_id, *WINDOW)
    seconds, found = [], []
    for user_id in user_ids:
        with database.sessionmaker() as session:
            started = time.perf_counter()
            rows = shifts_for_user(session, user_id, *WINDOW)
            seconds.append(time.perf_counter() - started)
            found.append(len(rows))
    return seconds, found


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite temp file)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--shifts-per-user", type=int, default=100)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with scratch_database(args.database_url) as database:
        engine = database.engine
        version_query = (
            "SELECT sqlite_version()" if engine.dialect.name == "sqlite" else "SHOW server_version"
        )
        with engine.connect() as connection:
            version = connection.scalar(text(version_query))
        print(f"database: {engine.dialect.name} {version}")
        timings = build(database, args.users, args.shifts_per_user, args.seed)
        print("build:")
        for step, seconds in timings.items():
            print(f"  {step:<24} {seconds:8.1f} s")
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar() or 0
                size = pages * (connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
            else:
                size = connection.scalar(text("SELECT pg_database_size(current_database())")) or 0
        print(f"  database size            {size / 2**20:8.0f} MiB")

        rng = random.Random(args.seed + 1)
        with engine.connect() as connection:
            user_ids = list(connection.scalars(text("SELECT id FROM users")))
        sample = rng.sample(user_ids, min(args.samples, len(user_ids)))
        seconds, found = measure(database, sample)
        # Figures from a shared machine mean little without how busy it was.
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(
            f"shifts_for_user, one-year window {WINDOW[0]:%Y-%m-%d}..{WINDOW[1]:%Y-%m-%d}, "
            f"{len(sample)} random users, warm:"
        )
        print(f"  median {statistics.median(seconds) * 1000:7.2f} ms")
        print(f"  p95    {percentile(seconds, 0.95) * 1000:7.2f} ms")
        print(f"  max    {max(seconds) * 1000:7.2f} ms")
        print(f"  rows   {statistics.mean(found):7.1f} per user on average")
        print(f"  load average during the run: {load} ({os.cpu_count()} CPUs)")

        plan = explain(database, sample[0])
        print("query plan:")
        for line in plan:
            print(f"  {line}")
        used = any(INDEX in line for line in plan)
        print(f"index {INDEX} used: {'yes' if used else 'NO'}")
        if not used:
            sys.exit(1)


if __name__ == "__main__":
    main()
