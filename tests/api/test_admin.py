"""The admin operations of the JSON API: API keys, roles, password links, connections."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.admin.conftest import add_connection
from tests.api import assert_error, assert_valid

PREFIX = "/api/v1"


def test_api_keys_list_create_and_revoke_at_once(
    app: Flask, api: FlaskClient, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The secret is in the create answer only; after DELETE it gets 401 on the next call."""
    with caplog.at_level(logging.DEBUG):
        created = api.post(f"{PREFIX}/api-keys", json={"name": " pager tool "})
    assert created.status_code == 201
    body = created.get_json()
    assert_valid(body, "ApiKeyCreated")
    secret = body["secret"]
    assert body["name"] == "pager tool"
    assert secret.startswith(body["prefix"])
    assert secret not in caplog.text
    listing = api.get(f"{PREFIX}/api-keys").get_json()
    assert_valid(listing, "ApiKeyList")
    assert [k["name"] for k in listing["api_keys"]] == ["pager tool", "tests"]
    assert secret not in str(listing)
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    assert other.get(f"{PREFIX}/users").status_code == 200
    assert api.delete(f"{PREFIX}/api-keys/{body['id']}").status_code == 204
    assert_error(other.get(f"{PREFIX}/users"), 401, "Authorization")
    assert api.delete(f"{PREFIX}/api-keys/{body['id']}").status_code == 204  # still revoked
    revoked = api.get(f"{PREFIX}/api-keys").get_json()["api_keys"]
    assert [k["revoked"] for k in revoked] == [False, True]


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"name": 3}, "name"),
     ([], "body"), ({"name": "a", "scope": "all"}, "scope")],
)  # fmt: skip
def test_bad_key_input_names_the_field(api: FlaskClient, body: Any, field: str) -> None:
    """422 with the field; nothing created."""
    assert_error(api.post(f"{PREFIX}/api-keys", json=body), 422, field)
    assert len(api.get(f"{PREFIX}/api-keys").get_json()["api_keys"]) == 1


def test_unknown_key_ids_are_404(api: FlaskClient) -> None:
    """An id that isn't a key, or isn't a number."""
    assert_error(api.delete(f"{PREFIX}/api-keys/424242"), 404, "id")
    assert_error(api.delete(f"{PREFIX}/api-keys/abc"), 404, "path")


def test_roles_are_set_and_the_last_admin_stays(
    api: FlaskClient, people: dict[str, dict[str, Any]]
) -> None:
    """admin/member only; demoting the only admin is a 409."""
    alice = people["alice@example.com"]["id"]
    assert people["alice@example.com"]["role"] == "member"
    made = api.put(f"{PREFIX}/users/{alice}/role", json={"role": "admin"})
    assert made.status_code == 200
    assert made.get_json()["role"] == "admin"
    assert_error(api.put(f"{PREFIX}/users/{alice}/role", json={"role": "member"}), 409, "role")
    assert_error(api.put(f"{PREFIX}/users/{alice}/role", json={"role": "owner"}), 422, "role")
    assert_error(api.put(f"{PREFIX}/users/{alice}/role", json={}), 422, "role")
    assert_error(api.put(f"{PREFIX}/users/u_nobody/role", json={"role": "admin"}), 404, "id")
    bob = people["bob@example.com"]["id"]
    assert api.put(f"{PREFIX}/users/{bob}/role", json={"role": "admin"}).status_code == 200
    assert api.put(f"{PREFIX}/users/{alice}/role", json={"role": "member"}).status_code == 200


def test_password_links_are_made_for_automation(
    app: Flask, api: FlaskClient, people: dict[str, dict[str, Any]]
) -> None:
    """The link opens the password page; kinds are checked."""
    alice = people["alice@example.com"]["id"]
    made = api.post(f"{PREFIX}/users/{alice}/password-links", json={})
    assert made.status_code == 201
    body = made.get_json()
    assert_valid(body, "PasswordLink")
    assert (body["kind"], body["mailed"]) == ("invite", False)
    page = app.test_client().get(body["url"].removeprefix(app.config["BASE_URL"]))
    assert "alice@example.com" in page.text
    bad = api.post(f"{PREFIX}/users/{alice}/password-links", json={"kind": "magic"})
    assert_error(bad, 422, "kind")


def test_connections_are_listed_with_state_and_paged_by_user(
    app: Flask, api: FlaskClient, people: dict[str, dict[str, Any]]
) -> None:
    """Every user's connections, filterable by state; never a token."""
    add_connection(app, "alice@example.com", "google", "needs_reauth", token_ciphertext="SECRET")
    add_connection(app, "alice@example.com", "microsoft", "active")
    add_connection(app, "bob@example.com", "google", "error", last_error="Google said 500.")
    everything = api.get(f"{PREFIX}/connections").get_json()
    assert_valid(everything, "ConnectionList")
    assert [(c["user_email"], c["provider"], c["status"]) for c in everything["connections"]] == [
        ("alice@example.com", "google", "needs_reauth"),
        ("alice@example.com", "microsoft", "active"),
        ("bob@example.com", "google", "error"),
    ]
    assert "SECRET" not in str(everything)
    failing = api.get(f"{PREFIX}/connections?state=error").get_json()["connections"]
    assert [c["last_error"] for c in failing] == ["Google said 500."]
    first = api.get(f"{PREFIX}/connections?limit=1").get_json()
    assert first["next_after"] == "alice@example.com"
    assert len(first["connections"]) == 2
    rest = api.get(f"{PREFIX}/connections?limit=1&after=alice@example.com").get_json()
    assert [c["user_email"] for c in rest["connections"]] == ["bob@example.com"]
    assert_error(api.get(f"{PREFIX}/connections?state=sad"), 422, "state")
    assert_error(api.get(f"{PREFIX}/connections?limit=0"), 422, "limit")


def test_admin_operations_need_a_key(client: FlaskClient) -> None:
    """No key, no admin action."""
    assert_error(client.get(f"{PREFIX}/api-keys"), 401, "Authorization")
    assert_error(client.get(f"{PREFIX}/connections"), 401, "Authorization")
