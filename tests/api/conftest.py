"""Fixtures of the API tests: people, a schedule, and a recording push-sync listener."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncal_feed.notify import add_listener
from tests.api import ALICE, BOB, PAYMENTS


@pytest.fixture
def people(api: FlaskClient) -> dict[str, dict[str, Any]]:
    """Alice and Bob, created through the API; their JSON by email."""
    created = {}
    for data in (ALICE, BOB):
        response = api.post("/api/v1/users", json=data)
        assert response.status_code == 201, response.get_json()
        created[data["email"]] = response.get_json()
    return created


@pytest.fixture
def schedule(api: FlaskClient, people: dict[str, Any]) -> dict[str, Any]:
    """The `payments` schedule (Alice and Bob exist too)."""
    response = api.put("/api/v1/schedules/payments", json=PAYMENTS)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def notified(app: Flask) -> list[set[int]]:
    """Every call the push-sync hook makes after a write, in order."""
    calls: list[set[int]] = []
    add_listener(app, calls.append)
    return calls
