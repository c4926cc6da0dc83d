"""Seeded fault injection and request counters shared by the fake cloud servers.

``Fault`` / ``Faults(seed=0, targets=())``
    Seeded, thread-safe fault injection.  Probabilities (0..1, checked in this
    order with a single random draw per request, so a seed gives a reproducible
    sequence): ``error_rate`` (status from ``error_statuses``, default 500/503),
    ``rate_limit_rate`` (429 with ``Retry-After: retry_after``), ``quota_rate``
    (provider's 403 throttling shape), ``drop_rate`` (drop before processing),
    ``drop_after_commit_rate`` (process, then drop: "committed but lost"),
    ``slow_rate`` (sleep ``slow_seconds`` before processing: the client may give up
    while the write still lands), ``hang_rate`` (hold the request ``hang_seconds``,
    then drop it unprocessed: a call that never lands).  ``drop_mode`` is
    ``"close"`` or ``"reset"``.  ``set_rates(total, kinds)`` spreads a total fault
    rate evenly over kinds.  ``fail_next(count=1, status=503, *, retry_after=None,
    kind=None, delay=None)`` queues deterministic faults that win over the random
    ones.  ``targets`` is the set of request classes (strings the fake defines, e.g.
    ``"api"``) that faults apply to; ``applies_to(target)``.  ``decide(target) ->
    Fault | None`` consumes one decision.  ``reset()`` clears rates and the queue;
    ``injected`` counts faults by kind, ``decided`` the decisions taken.  Fault kinds:
    ``"error"``, ``"rate_limit"``, ``"quota"``, ``"drop"``, ``"drop_after_commit"``,
    ``"slow"``, ``"hang"``.

``run_with_fault(fault, process, error_response, drop_mode="close") -> Response``
    Applies one decided fault around a ``process()`` callable: sleeps for slow,
    raises ``DropConnection`` before/after ``process()`` for the drop kinds (after a
    wait for hang), and returns ``error_response(fault)`` for the error kinds (the
    fake supplies the provider-specific error body).

``Stats``
    Thread-safe counter: ``incr(*keys, n=1)``, ``stats["key"]`` (0 if absent),
    ``snapshot() -> dict[str, int]``, ``reset()``.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from tests.fakes.server import DropConnection, DropMode, Response

FaultKind = Literal["error", "rate_limit", "quota", "drop", "drop_after_commit", "slow", "hang"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "error",
    "rate_limit",
    "quota",
    "drop",
    "drop_after_commit",
    "slow",
    "hang",
)


@dataclass(frozen=True)
class Fault:
    """One injected fault; ``status``/``retry_after`` only matter for error kinds."""

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0


class Faults:
    """Seeded, thread-safe fault injection shared by the fakes."""

    def __init__(self, seed: int = 0, targets: Iterable[str] = ()) -> None:
        """Create a fault source with every rate at zero (no faults)."""
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._queue: collections.deque[Fault] = collections.deque()
        self.targets: set[str] = set(targets)
        self.error_rate = 0.0
        self.error_statuses: tuple[int, ...] = (500, 503)
        self.rate_limit_rate = 0.0
        self.quota_rate = 0.0
        self.retry_after: float = 1
        self.drop_rate = 0.0
        self.drop_after_commit_rate = 0.0
        self.slow_rate = 0.0
        self.slow_seconds = 2.0
        self.hang_rate = 0.0
        self.hang_seconds = 2.0
        self.drop_mode: DropMode = "close"
        self.injected: collections.Counter[str] = collections.Counter()
        self.decided = 0  # decisions taken (requests and batch members subject to faults)

    def seed(self, seed: int) -> None:
        """Re-seed the random source (reproducible fault sequences)."""
        with self._lock:
            self._rng.seed(seed)

    def reset(self) -> None:
        """Turn every fault off and forget queued ones (targets and seed stay)."""
        with self._lock:
            self._queue.clear()
            self.error_rate = self.rate_limit_rate = self.quota_rate = 0.0
            self.drop_rate = self.drop_after_commit_rate = self.slow_rate = 0.0
            self.hang_rate = 0.0
            self.injected.clear()
            self.decided = 0

    def set_rates(self, total: float, kinds: Iterable[FaultKind] = FAULT_KINDS) -> None:
        """Spread a ``total`` fault probability evenly over ``kinds`` (others off)."""
        chosen = list(kinds)
        share = total / len(chosen) if chosen else 0.0
        with self._lock:
            for kind in FAULT_KINDS:
                setattr(self, f"{kind}_rate", share if kind in chosen else 0.0)

    def applies_to(self, target: str) -> bool:
        """Whether requests of class ``target`` are subject to faults."""
        return target in self.targets

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        kind: FaultKind | None = None,
        delay: float | None = None,
    ) -> None:
        """Queue ``count`` deterministic faults for the next targeted requests.

        Without ``kind`` the fault is a plain error with ``status``; 429 becomes
        ``rate_limit`` (with ``retry_after``, default ``self.retry_after``).  Give
        ``kind="quota"`` for a 403 throttle, or ``"drop"``, ``"drop_after_commit"``,
        ``"slow"`` (sleeping ``delay`` seconds, default ``slow_seconds``), ``"hang"``
        (waiting ``delay`` seconds, default ``hang_seconds``, then dropping).
        """
        if kind is None:
            kind = "rate_limit" if status == 429 else "error"
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "quota":
            status = 403
        if kind == "rate_limit":
            status = 429
            retry_after = self.retry_after if retry_after is None else retry_after
        fault = Fault(
            kind=kind,
            status=status if kind in ("error", "rate_limit", "quota") else None,
            retry_after=retry_after,
            delay=(self.hang_seconds if kind == "hang" else self.slow_seconds)
            if delay is None
            else delay,
        )
        with self._lock:
            self._queue.extend([fault] * count)

    @property
    def pending(self) -> int:
        """How many queued deterministic faults are left."""
        with self._lock:
            return len(self._queue)

    def decide(self, target: str | None = None) -> Fault | None:
        """Consume one fault decision for a request of class ``target``.

        Returns ``None`` when ``target`` is not in ``targets`` (pass ``None`` to
        skip that check).
        """
        if target is not None and not self.applies_to(target):
            return None
        with self._lock:
            self.decided += 1
            fault = self._queue.popleft() if self._queue else self._roll()
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _roll(self) -> Fault | None:
        # One draw per request keeps a seed's fault sequence independent of which
        # rates are zero, which makes reproductions across configs easier.
        draw = self._rng.random()
        threshold = 0.0
        for kind, rate in (
            ("error", self.error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("quota", self.quota_rate),
            ("drop", self.drop_rate),
            ("drop_after_commit", self.drop_after_commit_rate),
            ("slow", self.slow_rate),
            ("hang", self.hang_rate),
        ):
            threshold += rate
            if draw < threshold:
                if kind == "error":
                    return Fault("error", status=self._rng.choice(self.error_statuses))
                if kind == "rate_limit":
                    return Fault("rate_limit", status=429, retry_after=self.retry_after)
                if kind == "quota":
                    return Fault("quota", status=403)
                if kind == "slow":
                    return Fault("slow", delay=self.slow_seconds)
                if kind == "hang":
                    return Fault("hang", delay=self.hang_seconds)
                return Fault("drop" if kind == "drop" else "drop_after_commit")
        return None


def run_with_fault(
    fault: Fault | None,
    process: Callable[[], Response],
    error_response: Callable[[Fault], Response],
    drop_mode: DropMode = "close",
) -> Response:
    """Run ``process`` under ``fault`` (see the module docstring)."""
    if fault is None:
        return process()
    if fault.kind == "slow":
        time.sleep(fault.delay)
        return process()
    if fault.kind == "drop":
        raise DropConnection(drop_mode)
    if fault.kind == "hang":
        time.sleep(fault.delay)
        raise DropConnection(drop_mode)
    if fault.kind == "drop_after_commit":
        process()
        raise DropConnection(drop_mode)
    return error_response(fault)


class Stats:
    """Thread-safe named counters (requests by kind, for tests and benchmarks)."""

    def __init__(self) -> None:
        """Start with every counter at zero."""
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def incr(self, *keys: str, n: int = 1) -> None:
        """Add ``n`` to each of ``keys``."""
        with self._lock:
            for key in keys:
                self._counts[key] += n

    def __getitem__(self, key: str) -> int:
        """Current value of ``key`` (0 when never incremented)."""
        with self._lock:
            return self._counts[key]

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Zero all counters."""
        with self._lock:
            self._counts.clear()

    def __repr__(self) -> str:
        """Show the counters, sorted, for assertion messages."""
        return f"Stats({dict(sorted(self.snapshot().items()))})"
