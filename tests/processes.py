"""Run the production processes in tests: gunicorn with gunicorn.conf.py, `oncal-feed worker`.

Both run from the top of the checkout (where `wsgi.py` and `gunicorn.conf.py` are) and
listen or connect on 127.0.0.1 only. Whoever starts a process stops it, in a fixture's
teardown or a `finally`, so a failing test leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

__all__ = [
    "ROOT",
    "WorkerProcess",
    "free_port",
    "http_request",
    "start_gunicorn",
    "stop_process",
    "wait_until_serving",
]

ROOT = Path(__file__).resolve().parent.parent

# urllib follows *_proxy variables from the environment; loopback calls must not.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_request(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """Send a request without proxies; return the status and the body (parsed when JSON).

    Error statuses are answers like any other, for the caller to assert on.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _direct.open(request, timeout=timeout) as response:
            status, raw, kind = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        with error:
            status, raw, kind = error.code, error.read(), error.headers
    if raw and kind.get_content_type() == "application/json":
        return status, json.loads(raw)
    return status, raw


def start_gunicorn(env: Mapping[str, str], output: IO[Any] | int) -> subprocess.Popen[str]:
    """Start `gunicorn wsgi:app` (settings from gunicorn.conf.py and `env`), stdout+stderr to
    `output`; it is not answering yet (see `wait_until_serving`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "wsgi:app"],
        cwd=ROOT,
        env=dict(env),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_serving(
    url: str, process: subprocess.Popen[Any], output: Callable[[], str], timeout: float = 90
) -> None:
    """Wait until `url`/healthz answers; else kill the server and fail with its `output()`.

    The default is generous: each gunicorn worker imports the whole app, and CI machines
    may be busy.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}: {output()}")
        try:
            with _direct.open(url + "/healthz", timeout=5):
                return
        except OSError:  # refused, reset or timed out while workers boot
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"gunicorn did not answer within {timeout:.0f} s: {output()}")


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM, wait up to `timeout`, SIGKILL if it is still there; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


def _console_script(name: str) -> str:
    """The installed console script beside this interpreter (the venv's bin folder)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed beside {sys.executable}: run pip install -e .")
    return found


class WorkerProcess:
    """`oncal-feed worker`, the installed console script, in a process of its own.

    Output (its log, and Huey's) goes to `log_path`, appended across restarts.
    """

    READY = b"Push-sync worker:"

    def __init__(self, env: Mapping[str, str], log_path: Path, threads: int = 2) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str, timeout: float = 30) -> None:
        """Start it (with more command-line `options`) and wait until it has built the app
        and checked the schema."""
        assert self.process is None or self.process.poll() is not None, "already running"
        already = self.log_path.read_bytes().count(self.READY) if self.log_path.exists() else 0
        command = [_console_script("oncal-feed"), "worker", "--workers", str(self.threads)]
        command += options
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while self.log_path.read_bytes().count(self.READY) <= already:
            if self.process.poll() is not None:
                pytest.fail(f"oncal-feed worker exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"oncal-feed worker not ready within {timeout:.0f} s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no cleanup, leases stay held, answers in flight are lost."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL if needed); the exit code, or None if never started."""
        if self.process is None:
            return None
        return stop_process(self.process)

    def log(self) -> str:
        """Everything the worker processes wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
