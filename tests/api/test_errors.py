"""Bad requests of every kind: each is a 4xx JSON error naming the field, and writes nothing.

The write endpoints are exercised one by one with the same bad bodies, headers and keys;
the tables are compared before and after every failing call.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.test import TestResponse

from oncal_feed.db import get_database, utcnow
from oncal_feed.models import ApiKey
from oncal_feed.notify import add_listener
from tests.api import PAYMENTS, SHIFT, assert_error, table_state

WINDOW = "from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z"
ITEM = {**SHIFT, "external_id": "w1"}

# Each write endpoint with a valid body for it (fixtures `schedule` and `people` exist).
WRITES = [
    ("POST", "/api/v1/users", {"email": "carol@example.com", "display_name": "Carol"}),
    ("PATCH", "/api/v1/users/{alice}", {"display_name": "Alice L."}),
    ("PUT", "/api/v1/schedules/payments", {**PAYMENTS, "name": "Payments EU"}),
    ("PUT", "/api/v1/schedules/payments/shifts/w1", SHIFT),
    ("PUT", f"/api/v1/schedules/payments/shifts?{WINDOW}", [ITEM]),
]


@pytest.fixture
def writes(schedule: dict[str, Any], people: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """WRITES with Alice's id filled in (the bad input of each test goes to all of them)."""
    alice = people["alice@example.com"]["id"]
    return [(method, url.format(alice=alice), body) for method, url, body in WRITES]


def send_raw(
    api: FlaskClient, method: str, url: str, data: bytes | str, content_type: str | None
) -> TestResponse:
    """Send a body exactly as given."""
    return api.open(url, method=method, data=data, content_type=content_type)


# ---------------------------------------------------------------- body level


def test_valid_bodies_of_the_write_list_are_accepted(
    api: FlaskClient, writes: list[tuple[str, str, Any]]
) -> None:
    """The baseline: each endpoint takes its valid body, so rejections below are the input's."""
    for method, url, body in writes:
        response = api.open(url, method=method, json=body)
        assert response.status_code in (200, 201), (method, url, response.get_json())


def test_body_over_the_default_limit_is_413(
    api: FlaskClient, app: Flask, writes: list[tuple[str, str, Any]]
) -> None:
    """Over MAX_CONTENT_LENGTH (1 MiB by default): 413 naming `body`, on every write."""
    assert app.config["MAX_CONTENT_LENGTH"] == 1_048_576
    before = table_state(app)
    too_big = "{" + " " * (1_048_576 + 1 - len("{}")) + "}"
    for method, url, _body in writes:
        response = send_raw(api, method, url, too_big, "application/json")
        assert response.status_code == 413, (method, url)
        assert "1048576" in assert_error(response, 413, "body")["errors"][0]["problem"]
    assert table_state(app) == before


@pytest.fixture
def small_body_limit(app_config: dict[str, Any]) -> None:
    """Lower MAX_CONTENT_LENGTH to 200 bytes for the app made after this fixture."""
    app_config["MAX_CONTENT_LENGTH"] = 200


def test_configured_body_limit_applies(small_body_limit: None, api: FlaskClient) -> None:
    """A smaller MAX_CONTENT_LENGTH is honoured; a body right at the limit passes."""
    body = '{"email": "carol@example.com", "display_name": "Carol"}'
    at_limit = body[:-1] + " " * (200 - len(body)) + "}"
    created = api.post("/api/v1/users", data=at_limit, content_type="application/json")
    assert created.status_code == 201
    response = api.post("/api/v1/users", data=at_limit + " ", content_type="application/json")
    assert "200 bytes" in assert_error(response, 413, "body")["errors"][0]["problem"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
    ids=["none", "text", "form", "multipart"],
)
def test_non_json_content_type_is_415(
    api: FlaskClient, app: Flask, writes: list[tuple[str, str, Any]], content_type: str | None
) -> None:
    """Only JSON bodies are read; others get 415 naming `Content-Type`."""
    before = table_state(app)
    for method, url, body in writes:
        response = send_raw(api, method, url, json.dumps(body), content_type)
        assert response.status_code == 415, (method, url)
        assert_error(response, 415, "Content-Type")
    assert table_state(app) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"email": "a@example.com",}',
        b"{'email': 'a@example.com'}",
        b"\xff\xfe\x00garbage",
        b'{"name": "\xc3\x28"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "truncated", "trailing-comma", "single-quotes", "binary", "bad-utf8", "deep"],
)
def test_invalid_json_is_422_naming_body(
    api: FlaskClient, app: Flask, writes: list[tuple[str, str, Any]], raw: bytes
) -> None:
    """A body that does not parse as JSON is 422 naming `body` (our choice over 400)."""
    before = table_state(app)
    for method, url, _body in writes:
        response = send_raw(api, method, url, raw, "application/json")
        assert response.status_code == 422, (method, url)
        assert_error(response, 422, "body")
    assert table_state(app) == before


@pytest.mark.parametrize("wrong", ["null", "42", '"text"', "true", "[]", "{}", "[{}]"])
def test_wrong_top_level_json_type(
    api: FlaskClient, app: Flask, writes: list[tuple[str, str, Any]], wrong: str
) -> None:
    """JSON of the wrong kind is 422 naming `body` (an item, or missing fields, as fits)."""
    before = table_state(app)
    for method, url, body in writes:
        if (isinstance(body, list) and wrong == "[]") or (method == "PATCH" and wrong == "{}"):
            continue  # an empty import and an empty update are valid requests
        response = send_raw(api, method, url, wrong, "application/json")
        assert response.status_code == 422, (method, url)
        errors = assert_error(response, 422)["errors"]
        if wrong in ("{}", "[{}]") and isinstance(body, list) == (wrong == "[{}]"):
            assert all(e["problem"] == "is required" for e in errors), errors
        else:
            assert [e["field"] for e in errors] == ["body"]
    assert table_state(app) == before


def test_lone_surrogate_in_a_string_is_refused(api: FlaskClient, app: Flask) -> None:
    """JSON may escape half a surrogate pair; no database can store it."""
    raw = '{"email": "carol@example.com", "display_name": "Carol \\ud800"}'
    response = api.post("/api/v1/users", data=raw, content_type="application/json")
    assert_error(response, 422, "display_name")
    assert table_state(app)["users"] == []


def test_json_with_charset_parameter_is_accepted(api: FlaskClient) -> None:
    """`application/json; charset=utf-8` is JSON too."""
    response = api.post(
        "/api/v1/users",
        data='{"email": "carol@example.com", "display_name": "Carol"}',
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 201


# ---------------------------------------------------------------- date-times in a shift


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("starts_at", "2026-03-02T09:00:00"),
        ("starts_at", "2026-03-02"),
        ("starts_at", "2026-03-02 09:00:00Z"),
        ("starts_at", "2026-03-02T09:00Z"),
        ("starts_at", "2026-03-02T09:00:00+0100"),
        ("starts_at", "next monday"),
        ("starts_at", ""),
        ("starts_at", 1772438400),
        ("starts_at", None),
        ("starts_at", "2026-02-30T09:00:00Z"),
        ("starts_at", "2026-03-02T24:00:00Z"),
        ("starts_at", "2026-03-02T09:00:60Z"),
        ("starts_at", "2026-03-02T09:00:00+25:00"),
        ("starts_at", "0001-01-01T00:30:00+01:00"),
        ("ends_at", "9999-12-31T23:59:59-01:00"),
        ("starts_at", "1899-12-31T23:00:00Z"),
        ("starts_at", "\u0662\u0660\u0662\u0666-03-02T09:00:00Z"),
        ("starts_at", "2026-03-02T09:00:00Z\n"),
        ("ends_at", "2026-03-02T09:00:00+01:00"),
        ("ends_at", "2026-03-01T09:00:00+01:00"),
        ("ends_at", "2026-04-02T09:00:01+01:00"),
    ],
    ids=[
        "naive", "date-only", "space-separator", "no-seconds", "offset-without-colon",
        "words", "empty", "epoch-number", "null", "february-30", "hour-24", "leap-second",
        "offset-25h", "year-1", "year-9999", "before-1900", "arabic-digits", "trailing-newline",
        "end-equals-start", "end-before-start", "over-31-days",
    ],
)  # fmt: skip
def test_bad_shift_times(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], field: str, value: Any
) -> None:
    """Each bad date-time, on the single PUT and as an item of an import, names its field."""
    before = table_state(app)
    bad = {**SHIFT, field: value}
    assert_error(api.put("/api/v1/schedules/payments/shifts/w1", json=bad), 422, field)
    items = [ITEM, {**bad, "external_id": "w2"}]
    url = f"/api/v1/schedules/payments/shifts?{WINDOW}"
    assert_error(api.put(url, json=items), 422, f"[1].{field}")
    assert table_state(app) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["user_email", "starts_at", "ends_at"]),
        ({**SHIFT, "colour": "red", "priority": 1}, ["colour", "priority"]),
        ({**SHIFT, "role": "boss"}, ["role"]),
        ({**SHIFT, "role": None}, ["role"]),
        ({**SHIFT, "notes": "x" * 4001}, ["notes"]),
        ({**SHIFT, "notes": "bell\x07"}, ["notes"]),
        ({**SHIFT, "notes": ["a"]}, ["notes"]),
        ({**SHIFT, "user_email": 5}, ["user_email"]),
        ({**SHIFT, "user_email": "alice"}, ["user_email"]),
    ],
    ids=[
        "empty", "unknown-fields", "unknown-role", "null-role", "long-notes", "control-in-notes",
        "notes-list", "email-number", "not-an-email",
    ],
)  # fmt: skip
def test_bad_shift_fields(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], body: Any, fields: list[str]
) -> None:
    """Missing, unknown and mistyped fields are each named."""
    before = table_state(app)
    assert_error(api.put("/api/v1/schedules/payments/shifts/w1", json=body), 422, *fields)
    assert table_state(app) == before


def test_notes_keep_line_breaks(api: FlaskClient, schedule: dict[str, Any]) -> None:
    """Notes are multi-line text: tabs and line breaks are not control characters there."""
    response = api.put(
        "/api/v1/schedules/payments/shifts/w1", json={**SHIFT, "notes": "line 1\r\n\tline 2"}
    )
    assert response.get_json()["notes"] == "line 1\r\n\tline 2"


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "ocf_abc", "Token ocf_abc"],
    ids=["absent", "empty", "no-key", "blank-key", "basic", "no-scheme", "other-scheme"],
)
def test_missing_or_malformed_key_is_401(client: FlaskClient, header: str | None) -> None:
    """No usable credentials: 401 naming `Authorization`, with a Bearer challenge."""
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/api/v1/users", headers=headers)
    assert_error(response, 401, "Authorization")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="oncal-feed"'


def test_unknown_key_is_401_and_writes_nothing(
    client: FlaskClient, app: Flask, writes: list[tuple[str, str, Any]]
) -> None:
    """A well-formed but unknown key: 401 with `error="invalid_token"`, nothing written."""
    before = table_state(app)
    headers = {"Authorization": "Bearer ocf_not-a-real-key"}
    for method, url, body in writes:
        response = client.open(url, method=method, json=body, headers=headers)
        assert response.status_code == 401, (method, url)
        assert_error(response, 401, "Authorization")
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert table_state(app) == before


def test_revoked_key_is_401(app: Flask, api: FlaskClient, api_key: str) -> None:
    """A key stops working the moment it is revoked."""
    assert api.get("/api/v1/users").status_code == 200
    with get_database(app).session() as session:
        session.execute(update(ApiKey).values(revoked_at=utcnow()))
    response = api.get("/api/v1/users")
    assert_error(response, 401, "Authorization")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_key_use_is_recorded_even_when_the_request_fails(app: Flask, api: FlaskClient) -> None:
    """last_used_at is committed on its own, so a rejected write still records the key's use."""
    with get_database(app).session() as session:
        session.execute(update(ApiKey).values(last_used_at=utcnow() - timedelta(days=1)))
    assert_error(api.post("/api/v1/users", json={}), 422, "email")
    with get_database(app).engine.connect() as connection:
        last_used = connection.execute(select(ApiKey.last_used_at)).scalar_one()
    assert last_used is not None
    assert utcnow() - last_used < timedelta(minutes=1)


def test_bearer_scheme_is_case_insensitive(client: FlaskClient, api_key: str) -> None:
    """RFC 7235: the auth scheme is case-insensitive."""
    response = client.get("/api/v1/users", headers={"Authorization": f"bearer {api_key}"})
    assert response.status_code == 200


# ---------------------------------------------------------------- routing


def test_unknown_route_under_api_is_json_404(api: FlaskClient) -> None:
    """No HTML error pages under /api."""
    assert_error(api.get("/api/v1/nothing-here"), 404, "path")
    assert_error(api.get("/api/v2/users"), 404, "path")


def test_wrong_method_is_json_405_with_allow(api: FlaskClient) -> None:
    """405 names `method`, lists the allowed ones and sends Allow."""
    response = api.delete("/api/v1/users")
    body = assert_error(response, 405, "method")
    assert body["errors"][0]["problem"] == "must be one of GET, POST"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert_error(api.post("/api/v1/schedules/payments"), 405, "method")


# ---------------------------------------------------------------- never a 500


def test_failing_listener_does_not_fail_a_committed_write(
    api: FlaskClient, app: Flask, schedule: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The write is committed before listeners run; the sync sweep catches up later."""

    def broken(_ids: set[int]) -> None:
        raise RuntimeError("queue down")

    add_listener(app, broken)
    response = api.put("/api/v1/schedules/payments/shifts/w1", json=SHIFT)
    assert response.status_code == 201
    assert len(table_state(app)["shifts"]) == 1
    assert "listener failed" in caplog.text


def test_concurrent_duplicate_is_409_not_500(app_config: dict[str, Any]) -> None:
    """An IntegrityError (two creates racing) becomes a 409 naming `body`."""
    from oncal_feed import create_app

    racing = create_app(app_config)

    # A GET: the settings pages' CSRF check would stop a POST to an app-level route first.
    @racing.get("/api/v1-test/race")
    def race() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    response = racing.test_client().get("/api/v1-test/race")
    assert assert_error(response, 409, "body")["error"] == "conflict"


def test_unexpected_error_is_json_500_without_details(app_config: dict[str, Any]) -> None:
    """The last resort answers the documented shape and leaks nothing of the exception."""
    from oncal_feed import create_app

    failing = create_app(app_config)

    @failing.get("/api/v1-test/boom")
    def boom() -> None:
        raise RuntimeError("secret-token-value")

    response = failing.test_client().get("/api/v1-test/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body == {
        "error": "internal_error",
        "message": "Something went wrong on our side.",
        "errors": [],
    }
    assert "secret-token-value" not in response.get_data(as_text=True)
