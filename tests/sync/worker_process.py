"""Run the push-sync worker in a process of its own, against the fakes (for fault tests).

    python -m tests.sync.worker_process CONFIG.json

CONFIG.json holds the app settings; `MSAL_REWRITES` (origin → fake URL) becomes the
msal `http_client` that routes Microsoft's hosts to the fake, which can't travel as
JSON, and `WORKER_PERIODIC` says whether the consumer runs the minute sweep. The process
runs Huey's consumer exactly as `oncal-feed worker` does, until it is killed.

`WorkerChild` starts such a process from a test and kills it with SIGKILL;
`worker_child` makes sure it is gone at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oncal_feed import create_app
from oncal_feed.sync.tasks import get_queue
from tests.fakes.microsoft import GRAPH_HOST, LoopbackSession

ROOT = Path(__file__).resolve().parents[2]


class WorkerChild:
    """`oncal-feed worker`'s consumer in a child process, to be killed with SIGKILL."""

    def __init__(
        self, app_config: dict[str, Any], fakes: dict[str, Any], folder: Path, *, periodic: bool
    ) -> None:
        config = {k: v for k, v in app_config.items() if k != "MSAL_CLIENT_OPTIONS"}
        microsoft = fakes["microsoft"]
        rewrites = {microsoft.authority_host: microsoft.url, GRAPH_HOST: microsoft.url}
        config["MSAL_REWRITES"] = rewrites
        config["WORKER_PERIODIC"] = periodic
        self.config_path = folder / "worker.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = folder / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        """Start a child and wait until it reports ready on the (shared) log."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.sync.worker_process", str(self.config_path)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started += 1
        deadline = time.monotonic() + 30
        while self.log_path.read_bytes().count(b"worker ready") < self.started:
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no cleanup, leases stay held, answers in flight are lost."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def worker_child(
    app_config: dict[str, Any], fakes: dict[str, Any], folder: Path, *, periodic: bool
) -> Iterator[WorkerChild]:
    """A `WorkerChild` (not started yet), killed at the end whatever happens."""
    child = WorkerChild(app_config, fakes, folder, periodic=periodic)
    try:
        yield child
    finally:
        if child.process is not None:
            child.kill()


def main(path: str) -> None:
    """Build the app from CONFIG.json and consume its queue."""
    with open(path) as handle:
        config = json.load(handle)
    rewrites = config.pop("MSAL_REWRITES")
    periodic = bool(config.pop("WORKER_PERIODIC", False))
    config["MSAL_CLIENT_OPTIONS"] = {
        "instance_discovery": False,
        "validate_authority": False,
        "http_client": LoopbackSession(rewrites, timeout=10),
    }
    app = create_app(config)
    print("worker ready", flush=True)
    get_queue(app).consumer(workers=2, periodic=periodic).run()


if __name__ == "__main__":
    main(sys.argv[1])
