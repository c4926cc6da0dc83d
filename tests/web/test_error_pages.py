"""Browsers get error pages in the product's look; API clients get JSON."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_an_unknown_page_is_a_404_page_for_browsers(client: FlaskClient) -> None:
    """HTML with the site's stylesheet, no werkzeug text."""
    response = client.get("/no/such/page", headers=BROWSER)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Page not found" in response.text
    assert "app.css" in response.text
    assert "The requested URL" not in response.text


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_api_clients_and_curl_still_get_json(client: FlaskClient, accept: str | None) -> None:
    """Without a preference for HTML the answer is the JSON error shape."""
    headers = {"Accept": accept} if accept else {}
    response = client.get("/no/such/page", headers=headers)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_the_api_answers_json_even_to_browsers(client: FlaskClient) -> None:
    """/api/ is for programs: JSON whatever the Accept header says."""
    response = client.get("/api/v1/nope", headers=BROWSER)
    assert response.status_code == 404
    assert response.mimetype == "application/json"


def test_a_dead_feed_link_in_a_browser_is_a_page(app: Flask, client: FlaskClient) -> None:
    """The same words as the feed's JSON 404, as a page; calendar apps still get JSON."""
    path = "/feeds/not-a-real-token.ics"
    page = client.get(path, headers=BROWSER)
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "This feed link does not work" in page.text
    assert "not-a-real-token" not in page.text
    calendar_app = client.get(path, headers={"Accept": "text/calendar, */*"})
    assert calendar_app.status_code == 404
    assert calendar_app.mimetype == "application/json"


def test_a_wrong_method_on_a_page_is_a_page(client: FlaskClient) -> None:
    """405 for browsers keeps its Allow header."""
    response = client.put("/login", headers=BROWSER)
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "GET" in response.headers["Allow"]
