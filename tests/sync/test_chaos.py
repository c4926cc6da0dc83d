"""The chaos scenario (tests/sync/chaos.py) with a fixed seed: exact on both providers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.sync.chaos import FAULT_RATES, Chaos, Settings, scenario_config
from tests.sync.worker_process import WorkerChild, worker_child

SETTINGS = Settings()


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """The test app on the fakes, with the scenario's short timeout and lease."""
    return {**app_config, **oauth_settings, **scenario_config(SETTINGS)}


@pytest.fixture
def worker(
    app_config: dict[str, Any], fakes: dict[str, Any], tmp_path: Path
) -> Iterator[WorkerChild]:
    """`oncal-feed worker`'s consumer (with its minute sweep), killed at the end."""
    with worker_child(app_config, fakes, tmp_path, periodic=True) as child:
        yield child


def test_push_sync_converges_exactly_through_chaos(
    app: Flask, client: FlaskClient, fakes: dict[str, Any], worker: WorkerChild
) -> None:
    """500 shifts, 200 changes, a fifth of all calls failing, two SIGKILLs: exact.

    Exact with the faults on if that comes within the budget, else once they stop; the
    time it takes is a figure of `benchmarks/sync.py --chaos`, not a pass mark here.
    """
    figures = Chaos(app, client, fakes, worker, SETTINGS).run()
    print("\n".join(figures.lines(SETTINGS)))
    assert figures.problems == {}
    assert figures.states == {"synced"}
    # Every kind of fault happened, and they were at least a fifth of the calls.
    kinds = {name.removesuffix("_rate") for name in FAULT_RATES}
    assert set(figures.injected) == kinds, figures.injected
    assert sum(figures.injected.values()) >= 0.17 * figures.calls  # 20 % give or take luck
    assert len(figures.resumes) == 2
    assert max(figures.resumes) <= SETTINGS.lease_seconds + 10
    assert set(figures.changes) == {"create", "move", "reassign", "delete", "notes", "window"}
    assert (figures.idle_writes, figures.idle_runs) == (0, 0)
