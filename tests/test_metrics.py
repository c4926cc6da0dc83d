"""Prometheus metrics: closed label sets, no secrets, and multiprocess mode as gunicorn runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from oncal_feed.metrics import record_error, record_run, record_write, serve_metrics
from oncal_feed.providers.base import (
    AuthorizationLost,
    PermanentError,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.providers.registry import provider_names
from tests.processes import free_port
from tests.sync.support import ScriptedErrors, World

ROOT = Path(__file__).resolve().parent.parent


def sample(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics body, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


# ---------------------------------------------------------------- label values


@pytest.mark.parametrize("provider", provider_names())
def test_every_provider_a_connection_can_have_is_a_label(provider: str) -> None:
    """The metrics' closed set of providers keeps up with the connections package's list."""
    before = sample("oncal_sync_runs_total", provider=provider, outcome="ok")
    record_run(provider, "ok")
    assert sample("oncal_sync_runs_total", provider=provider, outcome="ok") == before + 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthorizationLost("invalid_grant", 400), "auth"),
        (RateLimited("slow down", 429, retry_after=5), "throttled"),
        (TransientError("bad gateway", 502), "transient"),
        (RemoteNotFound("gone", 410), "not_found"),
        (RemoteConflict("taken", 409), "conflict"),
        (PermanentError("bad request", 400), "permanent"),
        (ProviderError("something else", 418), "other"),
    ],
)
def test_errors_are_counted_by_their_class(error: ProviderError, kind: str) -> None:
    """Each class of the provider error tree has its own kind; anything else is `other`."""
    before = sample("oncal_sync_errors_total", provider="microsoft", kind=kind)
    record_error("microsoft", error)
    assert sample("oncal_sync_errors_total", provider="microsoft", kind=kind) == before + 1


def test_unexpected_label_values_collapse_to_other() -> None:
    """A provider, outcome or kind outside the closed sets never becomes a series of its own."""
    runs_before = sample("oncal_sync_runs_total", provider="other", outcome="other")
    writes_before = sample("oncal_sync_actions_total", provider="unknown", kind="other")
    record_run("alice@example.com", "Token ya29.secret expired")
    record_write(None, "https://example.test/event/1")
    assert sample("oncal_sync_runs_total", provider="other", outcome="other") == runs_before + 1
    assert sample("oncal_sync_actions_total", provider="unknown", kind="other") == writes_before + 1
    raw = {"provider": "alice@example.com", "outcome": "Token ya29.secret expired"}
    assert REGISTRY.get_sample_value("oncal_sync_runs_total", raw) is None


def test_error_messages_never_reach_metrics(app: Flask, client: FlaskClient) -> None:
    """A failure whose message names the user and a token shows only as its kind."""
    world = World(app)
    memory = MemoryProvider()
    world.put_shift("a", 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next(
        "insert_event", PermanentError("refused for alice@example.com, token ya29.SECRET", 400)
    )
    before = sample("oncal_sync_errors_total", provider="google", kind="permanent")
    assert world.sync(cid, scripted).outcome == "failed"
    body = client.get("/metrics").get_data(as_text=True)
    assert sample("oncal_sync_errors_total", provider="google", kind="permanent") == before + 1
    for secret in ("alice@example.com", "ya29", "SECRET", "refused"):
        assert secret not in body


# ---------------------------------------------------------------- multiprocess mode

# A sync in a process of its own, as `oncal-feed worker` runs one, writing its samples to
# PROMETHEUS_MULTIPROC_DIR; prometheus_client reads that variable when it is imported.
_WORKER = """
import json, sys
from oncal_feed import create_app
from oncal_feed.providers.memory import MemoryProvider
from tests.sync.support import World

world = World(create_app(json.loads(sys.argv[1])))
world.put_shift("a", 1)
world.put_shift("b", 2)
memory = MemoryProvider()
connection_id = world.connect(memory)
print(world.sync(connection_id, memory).outcome)
"""


def sync_in_a_process_of_its_own(app_config: dict[str, Any], tmp_path: Path) -> Path:
    """Run `_WORKER` (one Google sync that creates two events); return its metrics folder."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, json.dumps(app_config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    return metrics_dir


def test_multiprocess_metrics_merge_a_worker_process_sync_counts(
    app: Flask, app_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts of a sync run in another process show in /metrics, with the scrape's lag."""
    metrics_dir = sync_in_a_process_of_its_own(app_config, tmp_path)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    body = app.test_client().get("/metrics").get_data(as_text=True)
    found = samples(body)
    runs = {("provider", "google"), ("outcome", "ok")}
    assert found[("oncal_sync_runs_total", frozenset(runs))] == 1
    creates = {("provider", "google"), ("kind", "create")}
    assert found[("oncal_sync_actions_total", frozenset(creates))] == 2
    # Measured by this scrape, once: the connection was just synced, so nothing waits.
    assert body.count("# TYPE oncal_queue_lag_seconds gauge") == 1
    assert found[("oncal_queue_lag_seconds", frozenset())] == 0


def test_a_file_left_empty_by_a_killed_process_does_not_fail_the_scrape(
    app: Flask, app_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed between creating its file and sizing it leaves an empty file for
    good; /metrics and the worker's own endpoint still merge everyone else's samples."""
    metrics_dir = sync_in_a_process_of_its_own(app_config, tmp_path)
    for name in ("counter_4000001.db", "histogram_4000002.db"):
        (metrics_dir / name).touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    runs = ("oncal_sync_runs_total", frozenset({("provider", "google"), ("outcome", "ok")}))

    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert samples(response.get_data(as_text=True))[runs] == 1

    port = free_port()
    stop = serve_metrics("127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert samples(answer.read().decode())[runs] == 1
    finally:
        stop()


def test_a_worker_serves_its_own_metrics() -> None:
    """`serve_metrics` (behind `oncal-feed worker --metrics-port`) answers Prometheus."""
    port = free_port()
    stop = serve_metrics("127.0.0.1", port)
    try:
        record_run("google", "ok")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        stop()
    families = {family.name: family for family in text_string_to_metric_families(body)}
    runs = {tuple(sorted(s.labels.items())): s.value for s in families["oncal_sync_runs"].samples}
    assert runs[(("outcome", "ok"), ("provider", "google"))] == sample(
        "oncal_sync_runs_total", provider="google", outcome="ok"
    )
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # stopped
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
