"""Schedules through the API: PUT (create or replace) and GET by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time

from tests.api import PAYMENTS, SHIFT, assert_error, assert_valid, table_state, user_ids

T1 = datetime(2026, 2, 1, 12, tzinfo=UTC)
URL = "/api/v1/schedules/payments"


def test_put_creates_then_get_returns_it(api: FlaskClient) -> None:
    """201 on creation with the documented shape; GET returns the same."""
    link = "https://pager.example.com/s/payments"
    response = api.put(URL, json={**PAYMENTS, "url": link})
    assert response.status_code == 201
    body = response.get_json()
    assert_valid(body, "Schedule")
    assert (body["key"], body["name"], body["url"]) == ("payments", "Payments", link)
    assert body["revision"] == 1
    assert api.get(URL).get_json() == body


def test_same_put_twice_changes_nothing(
    api: FlaskClient, app: Flask, notified: list[set[int]]
) -> None:
    """Same revision and updated_at; 200, not 201; no notification."""
    with freeze_time(T1) as clock:
        first = api.put(URL, json=PAYMENTS)
        clock.tick(timedelta(hours=3))
        before = table_state(app)
        second = api.put(URL, json={**PAYMENTS, "url": None})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json() == first.get_json()
    assert table_state(app) == before
    assert notified == []


def test_changed_put_bumps_revision_and_notifies_people_on_it(
    api: FlaskClient, app: Flask, people: dict[str, Any], notified: list[set[int]]
) -> None:
    """Renaming a schedule changes every event of it, so its people are told."""
    with freeze_time(T1) as clock:
        api.put(URL, json=PAYMENTS)
        api.put(f"{URL}/shifts/w1", json=SHIFT)
        notified.clear()
        clock.tick(timedelta(hours=3))
        response = api.put(URL, json={**PAYMENTS, "name": "Payments EU"})
    body = response.get_json()
    assert (response.status_code, body["revision"], body["updated_at"]) == (
        200,
        2,
        "2026-02-01T15:00:00Z",
    )
    assert notified == [{user_ids(app)["alice@example.com"]}]


def test_unknown_schedule_is_404_naming_key(api: FlaskClient) -> None:
    """GET of a well-formed key that matches nothing."""
    body = assert_error(api.get("/api/v1/schedules/nope"), 404, "key")
    assert body["error"] == "not_found"


@pytest.mark.parametrize(
    "key",
    ["Payments", "-payments", "pay%20ments", "payments%0A", "x" * 65, "pay.ments", "caf%C3%A9"],
    ids=["upper-case", "leading-dash", "space", "trailing-newline", "too-long", "dot", "non-ascii"],
)
def test_bad_schedule_key_in_path(api: FlaskClient, app: Flask, key: str) -> None:
    """A malformed key is a 422 naming `key` on every route, and nothing is written."""
    assert_error(api.put(f"/api/v1/schedules/{key}", json=PAYMENTS), 422, "key")
    assert_error(api.get(f"/api/v1/schedules/{key}"), 422, "key")
    assert_error(api.put(f"/api/v1/schedules/{key}/shifts/w1", json=SHIFT), 422, "key")
    assert table_state(app)["schedules"] == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["name", "time_zone"]),
        ({**PAYMENTS, "key": "payments"}, ["key"]),
        ({**PAYMENTS, "time_zone": "Europe/Berln"}, ["time_zone"]),
        ({**PAYMENTS, "time_zone": "+01:00"}, ["time_zone"]),
        ({**PAYMENTS, "url": "ftp://example.com/x"}, ["url"]),
        ({**PAYMENTS, "url": "javascript:alert(1)"}, ["url"]),
        ({**PAYMENTS, "url": "https://"}, ["url"]),
        ({**PAYMENTS, "url": 7}, ["url"]),
        ({**PAYMENTS, "name": 7, "time_zone": None}, ["name", "time_zone"]),
        ({**PAYMENTS, "name": "Pay\nments"}, ["name"]),
        ("payments", ["body"]),
    ],
    ids=[
        "empty", "unknown-field", "unknown-zone", "offset-not-zone", "ftp-url", "script-url",
        "url-without-host", "url-number", "wrong-types", "newline-in-name", "string",
    ],
)  # fmt: skip
def test_put_rejects_bad_input(api: FlaskClient, app: Flask, body: Any, fields: list[str]) -> None:
    """Each bad body is a 422 naming the fields; no schedule is written."""
    assert_error(api.put(URL, json=body), 422, *fields)
    assert table_state(app)["schedules"] == []


def test_bad_replacement_leaves_the_schedule_alone(api: FlaskClient, app: Flask) -> None:
    """A rejected PUT on an existing schedule keeps it exactly as it was."""
    api.put(URL, json=PAYMENTS)
    before = table_state(app)
    assert_error(api.put(URL, json={**PAYMENTS, "name": ""}), 422, "name")
    assert table_state(app) == before
