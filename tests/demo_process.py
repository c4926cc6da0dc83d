"""`oncal-feed demo` in a process of its own, on a temporary instance folder, for the
README, re-run and browser tests; and the README's curl block, read from the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from oncal_feed.config import DEFAULTS
from tests.processes import ROOT, _console_script, free_port, stop_process

__all__ = ["DemoServer", "demo_env", "readme_curl_block", "run_demo", "serve_demo"]


def demo_env(instance: Path) -> dict[str, str]:
    """The environment of a demo on `instance`: no settings of ours, no proxies."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in DEFAULTS and not key.lower().endswith("_proxy")
    }
    env["ONCAL_INSTANCE_PATH"] = str(instance)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_demo(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `oncal-feed demo ARGS` to the end; the finished process."""
    return subprocess.run(
        [_console_script("oncal-feed"), "demo", *args],
        cwd=ROOT,
        env=demo_env(instance),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class DemoServer:
    """A serving demo: where, its output so far, and the demo user's password."""

    base_url: str
    port: int
    process: subprocess.Popen[str]
    log: Path
    instance: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text()

    @property
    def password(self) -> str:
        """The demo user's password, as printed."""
        found = re.search(r"  password: (\S+)", self.output())
        assert found is not None, self.output()
        return found.group(1)


@contextmanager
def serve_demo(instance: Path, timeout: float = 90) -> Iterator[DemoServer]:
    """Start `oncal-feed demo --port P`, wait until it answers, stop it (SIGTERM) after."""
    port = free_port()
    log = instance.parent / f"demo-{port}.log"
    instance.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-u", _console_script("oncal-feed"), "demo", "--port", str(port)],
            cwd=ROOT,
            env=demo_env(instance),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = DemoServer(f"http://127.0.0.1:{port}", port, process, log, instance)
    deadline = time.monotonic() + timeout
    try:
        while "Running on" not in server.output():
            if process.poll() is not None:
                pytest.fail(f"the demo exited with {process.returncode}: {server.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not serve within {timeout:.0f} s: {server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        stop_process(process)


def readme_curl_block() -> str:
    """The README's API example: the sh block that starts with `export ONCAL_MODE=demo`."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```sh\n(export ONCAL_MODE=demo.*?)```", text, re.S)
    assert found is not None, "the README has no curl block"
    return found.group(1)
