"""Fixtures for push-sync tests."""

from __future__ import annotations

import pytest
from flask import Flask

from oncal_feed.providers.memory import MemoryProvider
from tests.sync.support import World


@pytest.fixture
def world(app: Flask) -> World:
    """Alice and Bob, a `payments` schedule, and shortcuts to shifts and connections."""
    return World(app)


@pytest.fixture
def memory() -> MemoryProvider:
    """An in-memory calendar service with Google's id semantics."""
    return MemoryProvider()
