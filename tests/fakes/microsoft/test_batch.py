"""Fake Graph's JSON batching."""

from __future__ import annotations

import requests

from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.microsoft.clients import ALICE, new_event


def test_batch_of_21_is_rejected(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """More than 20 members -> 400 for the whole batch, nothing runs."""
    requests_ = [{"id": str(n), "method": "GET", "url": "/me"} for n in range(21)]
    response = graph.post(f"{fake.graph_endpoint}/$batch", json={"requests": requests_}, timeout=5)
    assert response.status_code == 400
    assert "20" in response.json()["error"]["message"]
    assert fake.stats["me.get"] == 0


def test_batch_member_429_keeps_envelope_200(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """A throttled member carries 429 + Retry-After; the others are processed."""
    members = [
        {
            "id": str(n),
            "method": "POST",
            "url": "/me/events",
            "headers": {"Content-Type": "application/json"},
            "body": new_event(f"b{n}", transactionId=f"batch-{n}"),
        }
        for n in range(3)
    ]
    fake.reset_stats()
    fake.fail_next(1, 429, retry_after=7)

    response = graph.post(f"{fake.graph_endpoint}/$batch", json={"requests": members}, timeout=5)

    assert response.status_code == 200
    by_id = {r["id"]: r for r in response.json()["responses"]}
    assert by_id["0"]["status"] == 429
    assert by_id["0"]["headers"]["Retry-After"] == "7"
    assert by_id["0"]["body"]["error"]["code"] == "ApplicationThrottled"
    assert by_id["1"]["status"] == by_id["2"]["status"] == 201
    assert by_id["1"]["body"]["subject"] == "b1"
    assert sorted(e["subject"] for e in fake.events(ALICE)) == ["b1", "b2"]
    assert fake.stats["graph_round_trips"] == 1
    assert fake.stats["batch_members"] == 3
    assert fake.stats["events.create"] == 2


def test_batch_members_patch_and_delete(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """Relative member urls with If-Match headers; a failed dependency gives 424."""
    created = graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5).json()
    members = [
        {
            "id": "patch",
            "method": "PATCH",
            "url": f"/me/events/{created['id']}",
            "headers": {"Content-Type": "application/json", "If-Match": '"stale"'},
            "body": {"subject": "x"},
        },
        {"id": "delete", "method": "DELETE", "url": f"/me/events/{created['id']}"},
        {"id": "after", "method": "GET", "url": "/me", "dependsOn": ["patch"]},
    ]
    response = graph.post(f"{fake.graph_endpoint}/$batch", json={"requests": members}, timeout=5)
    statuses = {r["id"]: r["status"] for r in response.json()["responses"]}
    assert statuses == {"patch": 412, "delete": 204, "after": 424}
    assert fake.events(ALICE) == []
