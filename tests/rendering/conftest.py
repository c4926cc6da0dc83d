"""Fixtures for rendering tests: plain `ShiftFacts` to render, and the feed checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oncal_feed.rendering import ShiftFacts
from tests.rendering.ics_checks import keep_feed

__all__ = ["BASE_FACTS", "keep_feed", "make_facts"]

# A Monday morning in Berlin winter time, updated a day before it was created + 1 h.
BASE_FACTS = ShiftFacts(
    uid="0b1c7e0e-2f1e-4a53-9d0e-6a1d1c2b3a4f@oncal-feed",
    schedule_key="payments",
    schedule_name="Payments",
    schedule_zone="Europe/Berlin",
    schedule_url="https://runbooks.example.com/payments",
    role="primary",
    notes="",
    starts_at=datetime(2026, 3, 2, 8, tzinfo=UTC),
    ends_at=datetime(2026, 3, 9, 8, tzinfo=UTC),
    revision=3,
    created_at=datetime(2026, 2, 1, 10, tzinfo=UTC),
    updated_at=datetime(2026, 2, 1, 10, tzinfo=UTC) + timedelta(hours=1, seconds=7),
)


@pytest.fixture
def make_facts() -> Callable[..., ShiftFacts]:
    """Return `BASE_FACTS` with the given fields replaced."""

    def make(**changes: Any) -> ShiftFacts:
        return replace(BASE_FACTS, **changes)

    return make
