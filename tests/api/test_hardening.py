"""Issue 13's edges of the JSON API: repeated parameters, loose emails, error floods,
caching of answers and what the document says of whitespace."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncal_feed.errors_http import MAX_LISTED_ERRORS
from tests.api import ALICE, PAYMENTS, SHIFT, assert_error, openapi_document, table_state

WINDOW = "from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z"


@pytest.fixture
def payments(api: FlaskClient) -> None:
    """Alice, the payments schedule and one shift of hers in March."""
    assert api.post("/api/v1/users", json=ALICE).status_code == 201
    assert api.put("/api/v1/schedules/payments", json=PAYMENTS).status_code == 201
    assert api.put("/api/v1/schedules/payments/shifts/w10", json=SHIFT).status_code == 201


@pytest.mark.usefixtures("payments")
def test_a_repeated_parameter_on_a_deleting_call_changes_nothing(
    app: Flask, api: FlaskClient
) -> None:
    """Issue 13.8: `from=A&to=B&from=C` took the first `from` and deleted shifts."""
    before = table_state(app)
    response = api.put(
        f"/api/v1/schedules/payments/shifts?{WINDOW}&from=2026-01-01T00:00:00Z", json=[]
    )
    body = assert_error(response, 422, "from")
    assert body["errors"] == [{"field": "from", "problem": "must be given at most once"}]
    assert table_state(app) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users?limit=1&limit=2",
        "/api/v1/users?after=a&after=b",
        f"/api/v1/users/u_x/shifts?{WINDOW}&to=2026-05-01T00:00:00Z",
    ],
)
@pytest.mark.usefixtures("payments")
def test_every_api_view_refuses_a_repeated_parameter(api: FlaskClient, path: str) -> None:
    field = path.rsplit("&", 1)[1].split("=")[0]
    assert_error(api.get(path), 422, field)


def test_the_calendar_routes_refuse_a_repeated_parameter_too(client: FlaskClient) -> None:
    response = client.get("/api/calendar/status?x=1&x=2")
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": "x", "problem": "must be given at most once"}
    ]


@pytest.mark.parametrize(
    "email", ["<a@example.com>", "a@-example.com", "a..b@example.com", "a@example..com"]
)
def test_loose_emails_are_refused(app: Flask, api: FlaskClient, email: str) -> None:
    """Issue 13.9: all four were accepted as users' emails."""
    before = table_state(app)
    body = assert_error(api.post("/api/v1/users", json={**ALICE, "email": email}), 422, "email")
    assert "email address" in body["errors"][0]["problem"]
    assert table_state(app) == before


def test_emails_are_stored_in_lower_case(api: FlaskClient) -> None:
    created = api.post("/api/v1/users", json={**ALICE, "email": "Alice.B@Example.COM"})
    assert created.get_json()["email"] == "alice.b@example.com"


@pytest.mark.usefixtures("payments")
def test_a_flood_of_invalid_items_lists_the_first_hundred(api: FlaskClient) -> None:
    """Issue 13.6: 100,000 bad items answered with a 26 MB list of problems."""
    items = [{"external_id": f"x{n}"} for n in range(2000)]  # 3 problems each
    response = api.put(f"/api/v1/schedules/payments/shifts?{WINDOW}", json=items)
    body = assert_error(response, 422, "[0].user_email")
    assert len(body["errors"]) == MAX_LISTED_ERRORS == 100
    assert body["more_errors"] == 3 * 2000 - 100
    assert "6000 invalid fields; the first 100 are listed" in body["message"]
    assert len(response.data) < 20_000


def test_a_few_problems_are_all_listed_without_a_count(api: FlaskClient) -> None:
    body = assert_error(api.post("/api/v1/users", json={"email": "x"}), 422, "email")
    assert "more_errors" not in body


@pytest.mark.usefixtures("payments")
@pytest.mark.parametrize(
    "path", ["/api/v1/users", "/api/v1/schedules/payments", "/api/v1/users?limit=0"]
)
def test_api_answers_are_not_stored_by_caches(api: FlaskClient, path: str) -> None:
    """Issue 13.13: the /api/v1 answers carried no Cache-Control at all."""
    assert api.get(path).headers["Cache-Control"] == "no-store"


def test_the_document_says_which_strings_lose_surrounding_whitespace() -> None:
    """Issue 13.14: names and notes are stripped; the document now says so on each."""
    schemas = openapi_document()["components"]["schemas"]
    for schema, field in [
        ("ShiftInput", "notes"),
        ("ShiftItem", "notes"),
        ("UserCreate", "display_name"),
        ("UserUpdate", "display_name"),
        ("ScheduleInput", "name"),
    ]:
        description = schemas[schema]["properties"][field]["description"]
        assert "whitespace" in description, (schema, field)
        assert "removed" in description, (schema, field)


@pytest.mark.usefixtures("payments")
def test_notes_lose_surrounding_whitespace_as_documented(api: FlaskClient) -> None:
    shift = {**SHIFT, "notes": "  call Bob \n"}
    body = api.put("/api/v1/schedules/payments/shifts/w11", json=shift).get_json()
    assert body["notes"] == "call Bob"
