"""Fixtures for push-sync tests."""

from __future__ import annotations

import pytest
from flask import Flask

from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.sync.engine import reset_batch_hints
from tests.sync.support import World


@pytest.fixture
def world(app: Flask) -> World:
    """Alice and Bob, a `payments` schedule, and shortcuts to shifts and connections."""
    return World(app)


@pytest.fixture
def memory() -> MemoryProvider:
    """An in-memory calendar service with Google's id semantics."""
    return MemoryProvider()


@pytest.fixture(autouse=True)
def _fresh_batch_hints() -> None:
    """Batch sizes learned by one test's flaky provider must not shrink the next test's."""
    reset_batch_hints()
