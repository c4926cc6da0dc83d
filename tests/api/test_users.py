"""Users through the API: create, get, list with paging, partial update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time

from tests.api import ALICE, BOB, SHIFT, assert_error, assert_valid, table_state, user_ids

T1 = datetime(2026, 2, 1, 12, tzinfo=UTC)


def test_create_user(api: FlaskClient) -> None:
    """201 with the documented shape; email lower-cased, zone defaults to UTC."""
    carol = {"email": " Carol@Example.COM ", "display_name": "Carol"}
    response = api.post("/api/v1/users", json=carol)
    assert response.status_code == 201
    body = response.get_json()
    assert_valid(body, "User")
    assert (body["email"], body["display_name"], body["time_zone"]) == (
        "carol@example.com",
        "Carol",
        "UTC",
    )
    assert body["id"].startswith("u_")
    assert api.get(f"/api/v1/users/{body['id']}").get_json() == body


def test_email_taken_is_409_whatever_the_case(
    api: FlaskClient, app: Flask, people: dict[str, Any]
) -> None:
    """Emails are unique case-insensitively; the clash names `email` and writes nothing."""
    before = table_state(app)
    response = api.post("/api/v1/users", json={**BOB, "email": "ALICE@example.com"})
    assert assert_error(response, 409, "email")["error"] == "conflict"
    assert table_state(app) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["email", "display_name"]),
        ({"display_name": "Carol"}, ["email"]),
        ({**ALICE, "admin": True}, ["admin"]),
        ({**ALICE, "email": "not-an-email"}, ["email"]),
        ({**ALICE, "email": "alice@example.com\nbcc@example.net"}, ["email"]),
        ({**ALICE, "email": ["alice@example.com"]}, ["email"]),
        ({**ALICE, "display_name": "   "}, ["display_name"]),
        ({**ALICE, "display_name": "x" * 201}, ["display_name"]),
        ({**ALICE, "display_name": "Al\x00ice"}, ["display_name"]),
        ({**ALICE, "display_name": None}, ["display_name"]),
        ({**ALICE, "time_zone": "Mars/Olympus_Mons"}, ["time_zone"]),
        ({**ALICE, "time_zone": "localtime"}, ["time_zone"]),
        ({**ALICE, "time_zone": 1}, ["time_zone"]),
        ([ALICE], ["body"]),
        ("null", ["body"]),
    ],
    ids=[
        "empty", "missing-email", "unknown-field", "bad-email", "email-newline", "email-list",
        "blank-name", "long-name", "nul-in-name", "null-name", "unknown-zone", "localtime-zone",
        "zone-number", "array", "null",
    ],
)  # fmt: skip
def test_create_user_rejects_bad_input(
    api: FlaskClient, app: Flask, body: Any, fields: list[str]
) -> None:
    """Each bad body is a 422 naming the field; no user is created."""
    # A JSON null is sent as text: the test client reads `json=None` as "no body".
    response = (
        api.post("/api/v1/users", data=body, content_type="application/json")
        if body == "null"
        else api.post("/api/v1/users", json=body)
    )
    assert_error(response, 422, *fields)
    assert table_state(app)["users"] == []


def test_get_unknown_or_malformed_user(api: FlaskClient) -> None:
    """Unknown ids are 404 naming `id`; ids that cannot exist are 422 naming `id`."""
    assert_error(api.get("/api/v1/users/u_nobody"), 404, "id")
    assert_error(api.get("/api/v1/users/u%20nobody"), 422, "id")
    assert_error(api.get("/api/v1/users/" + "u" * 41), 422, "id")
    assert_error(api.patch("/api/v1/users/u_nobody", json={"display_name": "X"}), 404, "id")


def test_list_users_pages_by_email(api: FlaskClient) -> None:
    """`limit` bounds the page; `next_after` continues it; the last page has none."""
    for name in ("dave", "carol", "erin", "bob", "alice"):
        api.post("/api/v1/users", json={"email": f"{name}@example.com", "display_name": name})
    first = api.get("/api/v1/users?limit=2").get_json()
    assert_valid(first, "UserList")
    assert [u["display_name"] for u in first["users"]] == ["alice", "bob"]
    second = api.get(f"/api/v1/users?limit=2&after={first['next_after']}").get_json()
    assert [u["display_name"] for u in second["users"]] == ["carol", "dave"]
    last = api.get(f"/api/v1/users?limit=2&after={second['next_after']}").get_json()
    assert [u["display_name"] for u in last["users"]] == ["erin"]
    assert "next_after" not in last
    assert len(api.get("/api/v1/users").get_json()["users"]) == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("limit=%C2%B2", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("after=%00", "after"),
    ],
    ids=["zero", "over-max", "word", "negative", "superscript-two", "huge", "nul"],
)
def test_list_users_rejects_bad_paging(api: FlaskClient, query: str, field: str) -> None:
    """Paging parameters are checked, never passed to the database raw."""
    assert_error(api.get(f"/api/v1/users?{query}"), 422, field)


def test_patch_changes_only_given_fields(api: FlaskClient, people: dict[str, Any]) -> None:
    """Fields left out keep their values."""
    alice = people["alice@example.com"]
    response = api.patch(f"/api/v1/users/{alice['id']}", json={"time_zone": "America/New_York"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["time_zone"], body["display_name"], body["email"]) == (
        "America/New_York",
        "Alice",
        "alice@example.com",
    )


def test_same_patch_twice_changes_nothing(api: FlaskClient, app: Flask) -> None:
    """updated_at moves only when something changed."""
    with freeze_time(T1) as clock:
        alice = api.post("/api/v1/users", json=ALICE).get_json()
        clock.tick(timedelta(hours=1))
        first = api.patch(f"/api/v1/users/{alice['id']}", json={"display_name": "Alice L."})
        clock.tick(timedelta(hours=1))
        before = table_state(app)
        second = api.patch(f"/api/v1/users/{alice['id']}", json={"display_name": "Alice L."})
    assert first.get_json()["updated_at"] == "2026-02-01T13:00:00Z"
    assert second.get_json() == first.get_json()
    assert table_state(app) == before


def test_patch_email_to_a_taken_one_is_409(
    api: FlaskClient, app: Flask, people: dict[str, Any]
) -> None:
    """Changing an email to another user's is a conflict and changes nothing."""
    before = table_state(app)
    bob = people["bob@example.com"]
    response = api.patch(f"/api/v1/users/{bob['id']}", json={"email": "alice@example.com"})
    assert_error(response, 409, "email")
    assert table_state(app) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "u_other"}, "id"),
        ({"email": None}, "email"),
        ({"display_name": ""}, "display_name"),
        ({"time_zone": "Europe/Atlantis"}, "time_zone"),
        ([], "body"),
    ],
    ids=["read-only-id", "null-email", "empty-name", "unknown-zone", "array"],
)
def test_patch_rejects_bad_input(
    api: FlaskClient, app: Flask, people: dict[str, Any], body: Any, field: str
) -> None:
    """A bad PATCH names the field and changes nothing."""
    before = table_state(app)
    alice = people["alice@example.com"]
    assert_error(api.patch(f"/api/v1/users/{alice['id']}", json=body), 422, field)
    assert table_state(app) == before


def test_rename_notifies_the_colleague_whose_handover_changed(
    api: FlaskClient, app: Flask, people: dict[str, Any], notified: list[set[int]]
) -> None:
    """Bob's shift names Alice as the one handing over; renaming her changes his calendar."""
    api.put("/api/v1/schedules/payments", json={"name": "Payments", "time_zone": "UTC"})
    url = "/api/v1/schedules/payments/shifts"
    with freeze_time(datetime(2026, 3, 1, tzinfo=UTC)):
        api.put(f"{url}/w0", json=SHIFT)
        following = {
            **SHIFT,
            "user_email": "bob@example.com",
            "starts_at": SHIFT["ends_at"],
            "ends_at": "2026-03-16T09:00:00+01:00",
        }
        api.put(f"{url}/w1", json=following)
        notified.clear()
        alice = people["alice@example.com"]
        api.patch(f"/api/v1/users/{alice['id']}", json={"display_name": "Alice Liddell"})
    assert api.get(f"{url}/w1").get_json()["handover_from"] == "Alice Liddell"
    assert user_ids(app)["bob@example.com"] in notified[0]


def test_a_new_address_reaches_the_colleagues_on_call_beside_them(
    api: FlaskClient, app: Flask, people: dict[str, Any], notified: list[set[int]]
) -> None:
    """Bob's secondary shift beside Alice's lists her address; when it changes, his shift
    (and his calendar) says the new one."""
    api.put("/api/v1/schedules/payments", json={"name": "Payments", "time_zone": "UTC"})
    url = "/api/v1/schedules/payments/shifts"
    with freeze_time(datetime(2026, 3, 1, tzinfo=UTC)):
        api.put(f"{url}/w0", json=SHIFT)
        api.put(f"{url}/s0", json={**SHIFT, "user_email": "bob@example.com", "role": "secondary"})
        assert api.get(f"{url}/s0").get_json()["also_on_call"] == [
            {"name": people["alice@example.com"]["display_name"], "role": "primary",
             "email": "alice@example.com"},
        ]  # fmt: skip
        notified.clear()
        alice = people["alice@example.com"]
        api.patch(f"/api/v1/users/{alice['id']}", json={"email": "alice@new.example.com"})
    assert api.get(f"{url}/s0").get_json()["also_on_call"][0]["email"] == "alice@new.example.com"
    assert user_ids(app)["bob@example.com"] in notified[0]
