"""Seeded fault injection shared by the fakes (tests/fakes/faults.py)."""

from __future__ import annotations

import time

import pytest

from tests.fakes.faults import FAULT_KINDS, Faults, run_with_fault
from tests.fakes.server import DropConnection, Response, empty_response


def _error(fault: object) -> Response:
    return empty_response(599)


def test_set_rates_spreads_a_total_over_every_kind_reproducibly() -> None:
    """20 % over all kinds injects each kind, and the same seed gives the same sequence."""

    def sequence(seed: int) -> list[str | None]:
        faults = Faults(seed=seed, targets={"api"})
        faults.set_rates(0.2)
        decided = [faults.decide("api") for _ in range(3000)]
        return [None if fault is None else fault.kind for fault in decided]

    first = sequence(11)
    assert first == sequence(11)
    assert first != sequence(12)
    injected = [kind for kind in first if kind is not None]
    assert 0.17 < len(injected) / len(first) < 0.23
    assert set(injected) == set(FAULT_KINDS)


def test_set_rates_limits_faults_to_the_kinds_given() -> None:
    """Kinds left out of ``set_rates`` stay off."""
    faults = Faults(seed=1, targets={"api"})
    faults.set_rates(0.5, ["error", "hang"])
    kinds = {fault.kind for fault in (faults.decide("api") for _ in range(500)) if fault}
    assert kinds == {"error", "hang"}
    assert faults.hang_rate == pytest.approx(0.25)
    assert faults.drop_rate == 0.0


def test_hang_waits_then_drops_without_processing() -> None:
    """A hang holds the call for its delay and never lets it land."""
    faults = Faults(targets={"api"})
    faults.fail_next(kind="hang", delay=0.2)
    landed: list[int] = []
    started = time.monotonic()
    with pytest.raises(DropConnection):
        run_with_fault(faults.decide("api"), lambda: landed.append(1) or empty_response(), _error)
    assert time.monotonic() - started >= 0.2
    assert landed == []
    assert faults.injected["hang"] == 1


def test_commit_then_drop_lands_and_then_drops() -> None:
    """drop_after_commit runs the write and loses the answer."""
    faults = Faults(targets={"api"})
    faults.fail_next(kind="drop_after_commit")
    landed: list[int] = []
    with pytest.raises(DropConnection):
        run_with_fault(faults.decide("api"), lambda: landed.append(1) or empty_response(), _error)
    assert landed == [1]


def test_faults_skip_requests_outside_their_targets() -> None:
    """A target not listed is never faulted, and reset turns every rate off."""
    faults = Faults(targets={"api"})
    faults.set_rates(1.0)
    assert faults.decide("token") is None
    assert faults.decide("api") is not None
    faults.reset()
    assert all(faults.decide("api") is None for _ in range(100))
