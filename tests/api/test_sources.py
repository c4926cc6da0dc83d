"""The sources API: create, list, get, update, delete, poll now; errors; secrets never returned."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from oncal_feed.db import utcnow
from tests.api import ALICE, PAYMENTS, assert_error, assert_valid, openapi_document
from tests.sources.conftest import relative_feed
from tests.sources.feed_server import FeedServer

SECRET_PATH = "/private/Zq81hUsecret/feed/PI7DH85.ics"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """The feed server on loopback may be fetched."""
    return {**app_config, "SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32", "SOURCE_TIMEOUT": 2}


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    """A running feed server."""
    with FeedServer() as server:
        yield server


@pytest.fixture
def payments(api: FlaskClient) -> str:
    """Alice and a `payments` schedule, through the API."""
    assert api.post("/api/v1/users", json=ALICE).status_code == 201
    assert api.put("/api/v1/schedules/payments", json=PAYMENTS).status_code == 201
    return "/api/v1/schedules/payments/sources"


def test_crud_and_poll(api: FlaskClient, payments: str, feeds: FeedServer) -> None:
    """Every answer matches the documented schema; the URL never comes back."""
    start = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    feeds.put(SECRET_PATH, relative_feed(start, ["alice@example.com", "bob@example.com"]))
    body = {"kind": "ics", "name": "Grafana OnCall", "url": feeds.url(SECRET_PATH)}
    created = api.post(payments, json=body)
    assert created.status_code == 201, created.get_json()
    assert_valid(created.get_json(), "Source")
    source = created.get_json()
    assert source["address"] == "http://127.0.0.1/…"
    assert source["status"]["state"] == "new"
    assert source["poll_interval"] == 60

    polled = api.post(f"{payments}/{source['id']}/poll")
    assert polled.status_code == 200, polled.get_json()
    assert_valid(polled.get_json(), "PollResult")
    assert polled.get_json()["poll"]["outcome"] == "changed"
    status = polled.get_json()["source"]["status"]
    assert (status["state"], status["events_read"], status["shifts_mapped"]) == ("ok", 2, 1)
    assert status["unmatched"] == 1
    assert "[L1] bob" in status["unmatched_examples"][0]

    listed = api.get(payments)
    assert_valid(listed.get_json(), "SourceList")
    assert [s["id"] for s in listed.get_json()["sources"]] == [source["id"]]
    changed = api.patch(f"{payments}/{source['id']}", json={"poll_interval": 120})
    assert_valid(changed.get_json(), "Source")
    assert changed.get_json()["poll_interval"] == 120
    assert api.get(f"{payments}/{source['id']}").get_json()["poll_interval"] == 120

    for answer in (created, polled, listed, changed):
        assert "Zq81hUsecret" not in answer.get_data(as_text=True)
    alice = api.get("/api/v1/users?limit=1").get_json()["users"][0]["id"]
    window = f"from={start:%Y-%m-%dT%H:%M:%SZ}&to={start + timedelta(days=5):%Y-%m-%dT%H:%M:%SZ}"
    shifts = api.get(f"/api/v1/users/{alice}/shifts?{window}").get_json()["shifts"]
    assert [s["starts_at"] for s in shifts] == [f"{start:%Y-%m-%dT%H:%M:%SZ}"]

    assert api.delete(f"{payments}/{source['id']}").status_code == 204
    assert_error(api.get(f"{payments}/{source['id']}"), 404, "source_id")


def test_bad_input_names_the_field(api: FlaskClient, payments: str) -> None:
    """422 with the field named; nothing is created."""
    assert_error(api.post(payments, json={"kind": "ics", "name": "x"}), 422, "url")
    assert_error(
        api.post(payments, json={"kind": "ics", "name": "x", "url": "ftp://h/a.ics"}), 422, "url"
    )
    assert_error(api.post(payments, json={"kind": "rss", "name": "x"}), 422, "kind")
    assert_error(
        api.post(payments, json={"kind": "pagerduty", "name": "x"}),
        422,
        "api_token",
        "pagerduty_schedule_ids",
    )
    assert_error(
        api.post(payments, json={"kind": "ics", "name": "x", "url": "https://a.example/x",
                                 "poll_interval": 1}),
        422,
        "poll_interval",
    )  # fmt: skip
    assert_error(
        api.post(payments, json={"kind": "ics", "name": "x", "url": "https://a.example/x",
                                 "user_email": "nobody@example.com"}),
        404,
        "user_email",
    )  # fmt: skip
    assert_error(api.post(payments, json={"kind": "ics", "name": "x", "bogus": 1}), 422, "bogus")
    assert_error(api.get(f"{payments}/abc"), 422, "source_id")
    assert_error(api.get("/api/v1/schedules/nope/sources"), 404, "key")
    assert_error(api.post(f"{payments}/1/poll", json={"accept": "yes"}), 404, "source_id")
    assert api.get(payments).get_json() == {"sources": []}


def test_poll_body_is_checked(api: FlaskClient, payments: str, feeds: FeedServer) -> None:
    """`accept` must be a boolean."""
    created = api.post(payments, json={"kind": "ics", "name": "x", "url": feeds.url("/a.ics")})
    path = f"{payments}/{created.get_json()['id']}/poll"
    assert_error(api.post(path, json={"accept": "yes"}), 422, "accept")
    assert_error(api.post(path, json={"other": True}), 422, "body")
    failed = api.post(path)
    assert failed.get_json()["poll"] == {
        "outcome": "failed",
        "problem": "The feed answered HTTP 404 (the link or key may have expired or been revoked).",
    }
    assert failed.get_json()["source"]["status"]["state"] == "failing"


def test_refused_address_is_a_clear_status_not_a_500(api: FlaskClient, payments: str) -> None:
    """With no allow-list entry for it, a private address is refused by the poll, in words."""
    body = {"kind": "ics", "name": "x", "url": "http://169.254.169.254/latest/meta-data/"}
    created = api.post(payments, json=body)
    polled = api.post(f"{payments}/{created.get_json()['id']}/poll")
    assert polled.status_code == 200
    assert "link-local" in polled.get_json()["poll"]["problem"]
    assert "meta-data" not in polled.get_data(as_text=True)


def test_examples_validate() -> None:
    """The documented create example for PagerDuty is what parse_source accepts."""
    from oncal_feed.validation import parse_source

    examples = openapi_document()["paths"]["/schedules/{key}/sources"]["post"]["requestBody"]
    for example in examples["content"]["application/json"]["examples"].values():
        assert parse_source(example["value"]).kind in ("ics", "pagerduty")
