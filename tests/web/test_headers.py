"""Security headers on every response, and no caching of the page that shows the feed URL."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from oncal_feed import create_app
from oncal_feed.db import get_database
from oncal_feed.web.security import CSP


def _csp(value: str) -> dict[str, str]:
    directives = {}
    for part in value.split(";"):
        name, _, rest = part.strip().partition(" ")
        directives[name] = rest
    return directives


def test_the_policy_allows_no_inline_script_and_no_framing() -> None:
    directives = _csp(CSP)
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in CSP
    assert "unsafe-eval" not in CSP
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"


@pytest.mark.parametrize("path", ["/login", "/settings", "/healthz", "/api/v1/users", "/nope"])
def test_every_response_carries_the_security_headers(member_client: FlaskClient, path: str) -> None:
    response = member_client.get(path)
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    # The test app's BASE_URL is https.
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_no_hsts_over_plain_http(app_config: dict[str, Any]) -> None:
    application = create_app({**app_config, "BASE_URL": "http://127.0.0.1:8000"})
    try:
        response = application.test_client().get("/login")
        assert "Strict-Transport-Security" not in response.headers
        assert response.headers["Content-Security-Policy"] == CSP
    finally:
        get_database(application).dispose()


def test_pages_are_not_stored_but_static_files_may_be(member_client: FlaskClient) -> None:
    assert member_client.get("/settings").headers["Cache-Control"] == "no-store"
    assert member_client.get("/login").headers["Cache-Control"] == "no-store"
    static = member_client.get("/assets/app.js")
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("Cache-Control", "")
    static.close()


def test_pages_load_script_and_style_only_from_files(member_client: FlaskClient) -> None:
    page = member_client.get("/settings").text
    assert '<script src="/assets/app.js" defer></script>' in page
    assert "<script>" not in page
    assert " onclick=" not in page
    assert " style=" not in page
    assert "<style" not in page


def test_feed_answers_carry_the_headers_too(client: FlaskClient) -> None:
    response = client.get("/feeds/garbage.ics")
    assert response.status_code == 404
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
