"""Import benchmark: `oncal-feed import` of 1,000 to 100,000 shifts, and the API's window import.

    .venv/bin/python benchmarks/import.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                          [--sizes 1000,10000,100000] [--api-shifts 6000]
                                          [--format json|csv] [--timeout 900]

For each size it makes a fresh database (a temporary SQLite file by default; with
--database-url, a new database on that PostgreSQL server, dropped at the end), runs the
migrations, creates 50 users and 10 schedules, and writes a file of back-to-back 8-hour
shifts: in every schedule a primary and a secondary chain, people rotating, so nearly every
shift has a hand-over from and to someone else. Then it runs the real command, in a child
process as an operator would:

  first      `oncal-feed import FILE` into the empty schedules
  unchanged  the same file again: must print 0 created, 0 updated, and write no row

and prints, for each, the wall time of the whole command (process start-up included), the
start-up within it (importing and building the web app, the same for any file), the time of
the import itself (`oncal_feed.cli.main(["import", FILE])` once the modules are imported,
building its app included), the peak resident memory of the child process (VmHWM), the command's
counts, and how many shift and user rows differ from before the run (column by column).
A run that exceeds --timeout is stopped and reported as such.

`--api-shifts N` (0 to skip) then times `PUT /api/v1/schedules/KEY/shifts?from=..&to=..` with
N shifts in one body, first and unchanged, through the app's WSGI stack in a child process
(the request alone is timed; peak memory is the child's). 6,000 compact items are about the
largest body the default 1 MiB MAX_CONTENT_LENGTH admits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed.db import Database, fresh_database  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.models import Schedule, Shift, User  # noqa: E402

USERS = 50
SCHEDULES = 10
ROLES = ("primary", "secondary")
LENGTH = timedelta(hours=8)
FIRST_START = datetime(2026, 1, 5, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SECRET_KEY = "benchmark-secret-key-" + "x" * 32


def _stamp(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def shift_items(count: int, *, with_schedule: bool = True) -> list[dict[str, str]]:
    """`count` shifts spread over the schedules and roles, each chain back to back."""
    chains = [(s, role) for s in range(SCHEDULES if with_schedule else 1) for role in ROLES]
    items = []
    for n in range(count):
        schedule, role = chains[n % len(chains)]
        step = n // len(chains)
        start = FIRST_START + step * LENGTH
        item = {
            "external_id": f"s{n}",
            # The offset by chain keeps two chains from rotating the same people in step.
            "user_email": f"user{(step + 7 * (n % len(chains))) % USERS}@bench.example",
            "starts_at": _stamp(start),
            "ends_at": _stamp(start + LENGTH),
            "role": role,
        }
        if with_schedule:
            item = {"schedule": f"sched{schedule}", **item}
        items.append(item)
    return items


def write_file(folder: Path, count: int, file_format: str) -> Path:
    """Write the import file; return its path."""
    items = shift_items(count)
    path = folder / f"shifts-{count}.{file_format}"
    if file_format == "json":
        with path.open("w") as out:
            out.write("[\n")
            out.write(",\n".join(json.dumps(item) for item in items))
            out.write("\n]\n")
    else:
        columns = list(items[0])
        with path.open("w") as out:
            out.write(",".join(columns) + "\n")
            for item in items:
                out.write(",".join(item[c] for c in columns) + "\n")
    return path


def seed(database: Database, schedules: int = SCHEDULES) -> None:
    """Create the users and schedules the files name."""
    with database.session() as session:
        session.execute(
            insert(User),
            [
                {
                    "public_id": f"u_bench{n:06d}",
                    "email": f"user{n}@bench.example",
                    "display_name": f"User {n}",
                    "time_zone": "Europe/Berlin",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for n in range(USERS)
            ],
        )
        session.execute(
            insert(Schedule),
            [
                {
                    "key": f"sched{n}",
                    "name": f"Schedule {n}",
                    "time_zone": "Europe/Berlin",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for n in range(schedules)
            ],
        )


def snapshot(database: Database) -> dict[tuple[str, int], tuple[Any, ...]]:
    """Every shift and user row's written columns, to count the rows a run changed."""
    with database.sessionmaker() as session:
        rows: dict[tuple[str, int], tuple[Any, ...]] = {}
        for row in session.execute(
            select(
                Shift.id, Shift.revision, Shift.updated_at, Shift.deleted_at, Shift.user_id,
                Shift.starts_at, Shift.ends_at, Shift.handover_from, Shift.handover_to,
            )
        ):  # fmt: skip
            rows["shift", row[0]] = tuple(row[1:])
        for row in session.execute(select(User.id, User.calendar_version, User.updated_at)):
            rows["user", row[0]] = tuple(row[1:])
        return rows


def changed_rows(
    before: dict[tuple[str, int], tuple[Any, ...]], after: dict[tuple[str, int], tuple[Any, ...]]
) -> int:
    """How many rows were added or differ."""
    return sum(1 for key, value in after.items() if before.get(key) != value)


def environment(url: str, folder: Path) -> dict[str, str]:
    """The settings the child processes run with."""
    return {
        **os.environ,
        "ONCAL_MODE": "test",
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "BASE_URL": "https://oncal.bench.example",
        "QUEUE_URL": f"sqlite:///{folder / 'queue.sqlite'}",
    }


def peak_mib() -> float:
    """This process's peak resident memory in MiB, since it started its program.

    VmHWM, not `ru_maxrss`: Linux carries a forked child's maximum over from its parent
    (the benchmark, holding snapshots of 100,000 rows), so only VmHWM is the child's own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


def run_child(command: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run `command`; return its wall time, output, and whether it finished in `timeout`."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        try:
            process.wait(timeout)
            finished = True
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            finished = False
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if finished and process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{stderr}")
    return {"seconds": seconds, "finished": finished, "stdout": stdout.strip()}


def report(label: str, outcome: dict[str, Any], changed: int | None) -> None:
    """Print one measured run."""
    if not outcome["finished"]:
        print(f"  {label:<10} NOT FINISHED after {outcome['seconds']:.0f} s (stopped)")
        return
    tail = outcome["stdout"].splitlines()[-1] if outcome["stdout"] else ""
    written = "" if changed is None else f"  rows changed {changed:>6}"
    work = (
        f" (start-up {outcome['startup']:4.2f} s, import {outcome['work']:6.2f} s)"
        if "work" in outcome
        else ""
    )
    print(
        f"  {label:<10} {outcome['seconds']:7.2f} s{work}  peak {outcome['peak_mib']:6.0f} MiB"
        f"{written}  | {tail}"
    )


def bench_cli(server_url: str | None, count: int, file_format: str, timeout: float) -> None:
    """First import and unchanged re-import of `count` shifts with the CLI."""
    with (
        tempfile.TemporaryDirectory(prefix="oncal-import-") as name,
        fresh_database(server_url, "oncal_bench_import") as url,
    ):
        folder = Path(name)
        database = Database(url)
        try:
            upgrade(database)
            seed(database)
            path = write_file(folder, count, file_format)
            env = environment(url, folder)
            print(f"{count:,} shifts ({path.stat().st_size / 2**20:.1f} MiB {file_format}):")
            for label in ("first", "unchanged"):
                before = snapshot(database)
                outcome = run_child(
                    [sys.executable, __file__, "--cli-child", str(path)], env, timeout
                )
                changed = changed_rows(before, snapshot(database)) if outcome["finished"] else None
                if outcome["finished"]:
                    output, _, timing = outcome["stdout"].rpartition("\n")
                    outcome.update(json.loads(timing))
                    outcome["stdout"] = output
                report(label, outcome, changed)
                if not outcome["finished"]:
                    break
        finally:
            database.dispose()


def bench_api(server_url: str | None, count: int, timeout: float) -> None:
    """The API's window import of `count` shifts, first and unchanged."""
    with (
        tempfile.TemporaryDirectory(prefix="oncal-import-") as name,
        fresh_database(server_url, "oncal_bench_import") as url,
    ):
        folder = Path(name)
        database = Database(url)
        try:
            upgrade(database)
            seed(database, schedules=1)
            body = folder / "body.json"
            body.write_text(json.dumps(shift_items(count, with_schedule=False)))
            env = environment(url, folder)
            size = body.stat().st_size
            print(f"API window import, {count:,} shifts ({size:,} bytes of JSON):")
            for label in ("first", "unchanged"):
                before = snapshot(database)
                outcome = run_child(
                    [sys.executable, __file__, "--api-child", str(body)], env, timeout
                )
                changed = changed_rows(before, snapshot(database)) if outcome["finished"] else None
                if outcome["finished"]:
                    # The child prints the request's own time; the process's is start-up too.
                    child = json.loads(outcome["stdout"])
                    outcome.update(seconds=child["seconds"], peak_mib=child["peak_mib"])
                    outcome["stdout"] = json.dumps(child["counts"])
                report(label, outcome, changed)
        finally:
            database.dispose()


def cli_child(path: Path) -> None:
    """In the child: run `oncal-feed import PATH`; print its output, then its time as JSON.

    The app is built once first, untimed by "work": that is start-up (importing the whole
    web app, about a second whatever the file holds), printed as "startup". The time printed
    as "work" is then the command itself, building its app again included; the parent's
    wall time is the whole process, start-up and all.
    """
    from oncal_feed import cli, create_app

    started = time.perf_counter()
    create_app()
    startup = time.perf_counter() - started
    started = time.perf_counter()
    cli.main(["import", str(path)], standalone_mode=False)
    work = time.perf_counter() - started
    print(json.dumps({"work": work, "startup": startup, "peak_mib": peak_mib()}))


def api_child(body_path: Path) -> None:
    """In the child: create an API key, PUT the body, print the request's time and counts."""
    from oncal_feed import accounts, create_app
    from oncal_feed.db import get_database, utcnow

    app = create_app()
    with app.app_context(), get_database(app).session() as session:
        _, secret = accounts.create_api_key(session, "bench", utcnow())
    body = body_path.read_bytes()
    window = f"from={_stamp(FIRST_START)}&to={_stamp(FIRST_START + timedelta(days=3 * 365))}"
    client = app.test_client()
    started = time.perf_counter()
    response = client.put(
        f"/api/v1/schedules/sched0/shifts?{window}",
        data=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"HTTP {response.status_code}: {response.get_data(as_text=True)[:500]}")
    print(json.dumps({"seconds": seconds, "counts": response.get_json(), "peak_mib": peak_mib()}))


def main() -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--api-shifts", type=int, default=6000)
    parser.add_argument("--format", dest="file_format", choices=["json", "csv"], default="json")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--api-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cli-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_child is not None:
        cli_child(args.cli_child)
        return
    if args.api_child is not None:
        api_child(args.api_child)
        return
    print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}")
    for size in (int(s) for s in args.sizes.split(",") if s):
        bench_cli(args.database_url, size, args.file_format, args.timeout)
    if args.api_shifts:
        bench_api(args.database_url, args.api_shifts, args.timeout)


if __name__ == "__main__":
    main()
