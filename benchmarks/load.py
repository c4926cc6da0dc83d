"""Load benchmark: gunicorn (production config) on PostgreSQL, driven by wrk on 127.0.0.1.

    python benchmarks/load.py [--server-url postgresql://postgres@127.0.0.1:5432/test]
                              [--users 1000] [--duration 15] [--connections 32] [--repeat 2]
                              [--feed-cache-url redis://127.0.0.1:6379/2]

Creates a fresh database on the server, seeds users with realistic feeds (three weekly
rotations over a year), starts `gunicorn wsgi:app` with the shared feed cache in Redis
(as a deployment with several workers should run), fetches every feed once (the cold
renders, timed), and then runs wrk over every user's feed URL for 200s and for 304s
(If-None-Match with each feed's ETag). The same bytes served
by benchmarks/static_app.py under the same gunicorn config give the ceiling. Prints
requests/s, p50 and p99 latency, the share of the ceiling, and memory per worker. Needs
`wrk` (Debian package). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed import create_app  # noqa: E402
from oncal_feed.db import Database, fresh_database  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.models import Feed, Schedule, Shift, User, first_feed_row  # noqa: E402

SECRET_KEY = "load-benchmark-" + "s" * 40


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(database_url: str, users: int) -> None:
    """Insert users and three weekly rotations over the past month and the next year."""
    database = Database(database_url)
    upgrade(database)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=30)
    with database.engine.begin() as connection:
        connection.execute(
            insert(User),
            [
                {
                    "public_id": f"u_load{i}",
                    "email": f"user{i}@load.example",
                    "display_name": f"Load User {i}",
                    "time_zone": "Europe/Berlin",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(users)
            ],
        )
        # A bulk insert bypasses the ORM hook that gives each person a first feed.
        ids = connection.execute(text("SELECT id, public_id FROM users")).all()
        connection.execute(
            insert(Feed), [first_feed_row(user_id, public_id, now) for user_id, public_id in ids]
        )
        connection.execute(
            insert(Schedule),
            [
                {
                    "key": key,
                    "name": name,
                    "time_zone": "Europe/Berlin",
                    "created_at": now,
                    "updated_at": now,
                }
                for key, name in (
                    ("payments", "Payments"),
                    ("search", "Search"),
                    ("infra", "Infra"),
                )
            ],
        )
        user_ids = [row[0] for row in connection.execute(text("SELECT id FROM users ORDER BY id"))]
        schedule_ids = [row[0] for row in connection.execute(text("SELECT id FROM schedules"))]
        rows = []
        weeks = 56
        for schedule_index, schedule_id in enumerate(schedule_ids):
            for week in range(weeks):
                for slot in range(len(user_ids) // 5):
                    # Each user is on call every 5 weeks on each schedule: ~33 shifts a year.
                    user_id = user_ids[(week + slot * 5 + schedule_index * 2) % len(user_ids)]
                    begins = start + timedelta(weeks=week, hours=slot % 24)
                    rows.append(
                        {
                            "uid": f"{uuid.uuid4()}@oncal-feed",
                            "schedule_id": schedule_id,
                            "external_id": f"s{schedule_index}-w{week}-{slot}",
                            "user_id": user_id,
                            "starts_at": begins,
                            "ends_at": begins + timedelta(weeks=1),
                            "role": "primary",
                            "notes": "Runbook: https://runbooks.example/oncall — page twice.",
                            "revision": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
        for chunk in range(0, len(rows), 10_000):
            connection.execute(insert(Shift), rows[chunk : chunk + 10_000])
    database.dispose()
    print(f"seeded {users} users, {len(rows)} shifts")


def feed_paths(database_url: str, base_url: str) -> list[str]:
    """Return the path of every feed."""
    from oncal_feed.feeds.tokens import feed_links

    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, "BASE_URL": base_url})
    from oncal_feed.db import get_database

    paths = []
    with app.app_context(), get_database(app).session() as session:
        for feed in session.scalars(select(Feed).order_by(Feed.user_id, Feed.id)):
            paths.append(feed_links(feed).https.removeprefix(base_url))
    get_database(app).dispose()
    return paths


def start_gunicorn(target: str, env: dict[str, str], port: int) -> subprocess.Popen:
    """Start gunicorn with gunicorn.conf.py and wait until it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), target],
        cwd=ROOT,
        env={**os.environ, **env, "BIND": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn {target} did not start")


def fetch(url: str) -> tuple[str, int]:
    """GET a feed; return its ETag and body size."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.headers["ETag"], len(response.read())


def worker_rss_mib(master: subprocess.Popen) -> list[float]:
    """Resident memory of each gunicorn worker (children of the master), in MiB."""
    out = subprocess.run(
        ["ps", "-o", "rss=", "--ppid", str(master.pid)], capture_output=True, text=True
    ).stdout
    return [int(line) / 1024 for line in out.split()]


WRK_SCRIPT = """
local paths = {%(paths)s}
local etags = {%(etags)s}
local conditional = %(conditional)s
local counter = 0
request = function()
  counter = counter + 1
  local i = (counter %% #paths) + 1
  local headers = {}
  if conditional then headers["If-None-Match"] = etags[i] end
  return wrk.format("GET", paths[i], headers)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""


def run_wrk(port: int, paths: list[str], etags: list[str], conditional: bool, args) -> dict:
    """Run wrk over the paths; return requests/s, p50/p99 in ms and non-2xx/3xx count."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            WRK_SCRIPT
            % {
                "paths": ",".join(json.dumps(p) for p in paths),
                "etags": ",".join(json.dumps(e) for e in etags),
                "conditional": "true" if conditional else "false",
            }
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    assert match, out
    requests, micros, p50, p99, errors = map(int, match.groups())
    return {
        "rps": requests / (micros / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "errors": errors,
    }


def best_of(runs: int, measure: Callable[[], dict]) -> dict:
    """The run with the most requests/s: other load on a shared machine only ever slows."""
    return max((measure() for _ in range(runs)), key=lambda result: result["rps"])


def main() -> None:
    """Seed, serve, load, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, the best counts")
    parser.add_argument(
        "--feed-cache-url",
        default="redis://127.0.0.1:6379/2",
        help="FEED_CACHE_URL (empty: each worker renders for itself)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    with fresh_database(args.server_url, "oncal_load") as database_url:
        run(args, database_url)


def run(args: argparse.Namespace, database_url: str) -> None:
    """Seed, serve, load and print, on the given (fresh) database."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="oncal-load-"))
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "BASE_URL": base_url,
        "QUEUE_URL": f"sqlite:///{tmp / 'queue.sqlite'}",
        "FEED_CACHE_URL": args.feed_cache_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp),
    }
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    try:
        seed(database_url, args.users)
        paths = feed_paths(database_url, base_url)
        server = start_gunicorn("wsgi:app", env, port)
        try:
            # Calendar apps have been fetching these feeds all along: fetch each once, so
            # its body is in the shared cache, as in a running deployment. This is also
            # where the ETags are learnt.
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                first = list(pool.map(lambda path: fetch(base_url + path), paths))
            warm_up = time.perf_counter() - started
            etags = [etag for etag, _ in first]
            sizes = [size for _, size in first]
            body_file = tmp / "body.ics"
            with urllib.request.urlopen(base_url + paths[0], timeout=10) as response:
                body_file.write_bytes(response.read())
            run_wrk(port, paths, etags, False, argparse.Namespace(duration=3, connections=8))
            full = best_of(args.repeat, lambda: run_wrk(port, paths, etags, False, args))
            not_modified = best_of(args.repeat, lambda: run_wrk(port, paths, etags, True, args))
            rss = worker_rss_mib(server)
        finally:
            server.terminate()
            server.wait(timeout=60)

        static = start_gunicorn(
            "benchmarks.static_app:app", {**env, "STATIC_BODY_FILE": str(body_file)}, port
        )
        try:
            static_full = best_of(args.repeat, lambda: run_wrk(port, paths, etags, False, args))
            static_304 = best_of(
                args.repeat, lambda: run_wrk(port, paths, ['"static"'] * len(etags), True, args)
            )
        finally:
            static.terminate()
            static.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"feeds: {len(paths)} users, median body {sorted(sizes)[len(sizes) // 2]} bytes")
    print(
        f"first fetch of every feed (4 at a time, rendered cold): {warm_up:.1f} s, "
        f"{warm_up / len(paths) * 4 * 1000:.0f} ms each; shared cache: "
        f"{args.feed_cache_url or 'none'}"
    )
    for label, real, ceiling in (("200", full, static_full), ("304", not_modified, static_304)):
        share = real["rps"] / ceiling["rps"] * 100
        print(
            f"{label}: {real['rps']:8.0f} req/s  p50 {real['p50_ms']:.2f} ms  "
            f"p99 {real['p99_ms']:.2f} ms  errors {real['errors']}  | static ceiling "
            f"{ceiling['rps']:8.0f} req/s  p50 {ceiling['p50_ms']:.2f} ms  "
            f"-> {share:.0f}% of ceiling"
        )
    print("memory per worker (RSS MiB): " + ", ".join(f"{value:.1f}" for value in rss))


if __name__ == "__main__":
    main()
