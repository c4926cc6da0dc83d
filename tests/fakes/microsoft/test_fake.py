"""Fake Microsoft as a server: faults, seeds, the standalone entry point."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.microsoft.clients import ALICE, REPO_ROOT, new_event


def test_commit_then_drop_creates_event_but_client_errors(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """ "Committed but lost": the client sees a connection error, the event exists,
    and a retry with the same transactionId finds it instead of duplicating."""
    url = f"{fake.graph_endpoint}/me/events"
    fake.fail_next(kind="drop_after_commit")
    with pytest.raises(requests.ConnectionError):
        graph.post(url, json=new_event(transactionId="lost-1"), timeout=5)
    [stored] = fake.events(ALICE)
    assert stored["transactionId"] == "lost-1"

    retry = graph.post(url, json=new_event(transactionId="lost-1"), timeout=5)

    assert retry.status_code == 201
    assert retry.json()["id"] == stored["id"]
    assert len(fake.events(ALICE)) == 1


def test_drop_before_processing_creates_nothing(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """A plain drop loses the request: connection error and no event."""
    fake.fail_next(kind="drop")
    with pytest.raises(requests.ConnectionError):
        graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5)
    assert fake.events(ALICE) == []


def test_slow_answer_times_out(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """A slow fault outlasts a short client timeout."""
    fake.fail_next(kind="slow", delay=0.5)
    with pytest.raises(requests.Timeout):
        graph.get(f"{fake.graph_endpoint}/me", timeout=0.1)


def test_seeded_faults_are_reproducible(fake: FakeMicrosoft) -> None:
    """The same seed yields the same sequence of Graph statuses."""

    def run(seed: int) -> list[int]:
        with FakeMicrosoft(seed=seed) as server, requests.Session() as session:
            server.faults.error_rate = 0.3
            server.faults.rate_limit_rate = 0.2
            session.headers["Authorization"] = f"Bearer {server.access_token(ALICE)}"
            return [
                session.get(f"{server.graph_endpoint}/me", timeout=5).status_code for _ in range(20)
            ]

    first = run(3)
    assert first == run(3)
    assert {200, 429} <= set(first)


def test_runs_standalone_and_prints_settings() -> None:
    """`python -m tests.fakes.microsoft` serves and prints what to configure."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.microsoft", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert f"GRAPH_ENDPOINT={url}/v1.0" in [line.strip() for line in lines]
        config = requests.get(f"{url}/common/v2.0/.well-known/openid-configuration", timeout=5)
        assert config.json()["token_endpoint"].startswith("https://login.microsoftonline.com/")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
