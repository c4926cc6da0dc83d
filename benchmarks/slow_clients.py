"""Slow-client benchmark: how many stalled connections the production gunicorn config
holds while /healthz and a feed still answer within a second.

    python benchmarks/slow_clients.py [--steps 100,250,500,1000,2000] [--interval 1.5]
                                      [--database-url URL] [--workers N]
                                      [--gunicorn-args "--worker-class gthread --threads 4"]

Starts `gunicorn wsgi:app` with gunicorn.conf.py (the production settings; `--gunicorn-args
"--worker-class gthread --threads 4"` shows the old setup for comparison) on a fresh SQLite
database (or a PostgreSQL server's fresh database with --database-url), creates one user
with a year of weekly shifts, then opens slow connections in steps: each sends a request
line and then one header line every `--interval` seconds, never finishing its headers (a
slowloris); one the server closes is opened again, so the count holds. After each step it
times five fresh `GET /healthz` and five fresh feed fetches and prints the
slowest of each; it stops at the first step where one took over a second (or failed).
Goal: at least 500. Measured on 2 CPUs (5 workers, the config's default there): gthread
with 4 threads failed at 10 slow connections (/healthz timed out); gevent held 2000 with
/healthz under 30 ms and the feed under 75 ms. gevent drops a connection whose headers take
over 5 s (gunicorn's keepalive), which the reopened count shows. Everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oncal_feed import accounts, create_app  # noqa: E402
from oncal_feed.db import fresh_database, get_database  # noqa: E402
from oncal_feed.feeds.store import first_feed  # noqa: E402
from oncal_feed.feeds.tokens import feed_links  # noqa: E402
from oncal_feed.migrate import upgrade  # noqa: E402
from oncal_feed.shifts import import_window, upsert_schedule  # noqa: E402
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput  # noqa: E402

SECRET_KEY = "slow-clients-benchmark-" + "s" * 40
LIMIT_SECONDS = 1.0
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(database_url: str, instance: Path) -> str:
    """Create one user with a year of weekly shifts; return the path of their feed."""
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, "ONCAL_MODE": "test",
         "INSTANCE_PATH": str(instance), "FEED_USER_CACHE_ENTRIES": 0}
    )  # fmt: skip
    database = get_database(app)
    upgrade(database)
    now = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    start, end = now - timedelta(days=30), now + timedelta(days=365)
    with app.app_context(), database.session() as session:
        user = accounts.create_user(session, UserInput("slow@example.com", "Slow", "UTC"), now)
        schedule, _, _ = upsert_schedule(session, "ops", ScheduleInput("Ops", "UTC"), now)
        weeks = [
            ShiftInput(f"w{n}", user.email, start + timedelta(weeks=n),
                       start + timedelta(weeks=n, days=7))
            for n in range((end - start).days // 7)
        ]  # fmt: skip
        import_window(session, schedule, start, end + timedelta(days=7), weeks, now)
        session.flush()
        path = feed_links(first_feed(session, user)).https.removeprefix(app.config["BASE_URL"])
    database.dispose()
    return path


class SlowClients:
    """Slowloris connections, all driven by one thread with non-blocking sockets."""

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.sockets: list[socket.socket] = []
        self.dropped = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        conn.setblocking(False)
        return conn

    def open(self, count: int) -> None:
        """Open `count` more connections, each with its request line sent."""
        for _ in range(count):
            conn = self._connect()
            with self.lock:
                self.sockets.append(conn)

    def _trickle(self) -> None:
        number = 0
        while not self.stop.wait(self.interval):
            number += 1
            with self.lock:
                alive = []
                for conn in self.sockets:
                    try:
                        conn.send(f"X-Slow-{number}: 1\r\n".encode())
                        alive.append(conn)
                    except (BlockingIOError, InterruptedError):
                        alive.append(conn)
                    except OSError:
                        # The server gave up on it (its deadline for a request's
                        # headers): an attacker opens another, and so do we.
                        self.dropped += 1
                        conn.close()
                        with suppress(OSError):
                            alive.append(self._connect())
                self.sockets = alive

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self.stop.set()
        self.thread.join(timeout=10)
        for conn in self.sockets:
            conn.close()


def slowest(url: str, times: int = 5) -> float:
    """The slowest of `times` fresh GETs of `url`, in seconds (inf on a failure)."""
    worst = 0.0
    for _ in range(times):
        started = time.perf_counter()
        try:
            with _direct.open(url, timeout=LIMIT_SECONDS * 5) as response:
                response.read()
                if response.status != 200:
                    return float("inf")
        except (urllib.error.URLError, OSError):
            return float("inf")
        worst = max(worst, time.perf_counter() - started)
    return worst


def main() -> None:
    """Run the steps and print one line per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,250,500,1000,2000")
    parser.add_argument("--interval", type=float, default=1.5)
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--gunicorn-args", help="GUNICORN_CMD_ARGS, overriding the config")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: the config's)")
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # gunicorn inherits it

    with tempfile.TemporaryDirectory(prefix="oncal-slow-") as folder, fresh_database(
        args.database_url, "oncal_slow_bench"
    ) as database_url:  # fmt: skip
        work = Path(folder)
        feed = seed(database_url, work / "instance")
        port = free_port()
        env = {
            **os.environ,
            "BIND": f"127.0.0.1:{port}",
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET_KEY,
            "QUEUE_URL": f"sqlite:///{work / 'queue.sqlite'}",
            "RATELIMIT_STORAGE_URI": f"sqlite:///{work / 'ratelimit.sqlite'}",
            "PROMETHEUS_MULTIPROC_DIR": str(work),
            "ONCAL_MODE": "production",
        }
        if args.workers:
            env["WEB_CONCURRENCY"] = str(args.workers)
        if args.gunicorn_args:
            env["GUNICORN_CMD_ARGS"] = args.gunicorn_args
        log = (work / "gunicorn.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        clients = SlowClients(port, args.interval)
        try:
            for _ in range(300):
                if slowest(base + "/healthz", 1) < 5:
                    break
                time.sleep(0.2)
            config = args.gunicorn_args or "gunicorn.conf.py (gevent)"
            print(f"gunicorn: {config}; workers: {args.workers or 'config default'}; "
                  f"header line every {args.interval} s; limit {LIMIT_SECONDS} s")  # fmt: skip
            print(f"{'slow conns':>10} {'healthz max ms':>15} {'feed max ms':>12} {'result':>7}")
            held = 0
            for step in steps:
                clients.open(step - held)
                held = step
                time.sleep(max(3.0, 2 * args.interval))  # accepted, a line or two in
                health = slowest(base + "/healthz")
                body = slowest(base + feed)
                ok = health <= LIMIT_SECONDS and body <= LIMIT_SECONDS
                print(f"{step:>10} {health * 1000:>15.1f} {body * 1000:>12.1f} "
                      f"{'ok' if ok else 'FAILED':>7}", flush=True)  # fmt: skip
                if not ok:
                    break
            print(f"slow connections the server closed (and we reopened): {clients.dropped}")
        finally:
            clients.close()
            server.terminate()
            server.wait(timeout=60)
            log.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
