"""Fake Graph calendars and events, driven by requests."""

from __future__ import annotations

import requests

from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.microsoft.clients import ALICE, new_event


def test_graph_requires_bearer_token(fake: FakeMicrosoft) -> None:
    """No token -> 401 InvalidAuthenticationToken with a WWW-Authenticate challenge."""
    response = requests.get(f"{fake.graph_endpoint}/me/calendars", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_calendars_create_and_duplicate_name(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """POST /me/calendars creates; the same name again is 409 ErrorFolderExists."""
    created = graph.post(f"{fake.graph_endpoint}/me/calendars", json={"name": "On call"}, timeout=5)
    assert created.status_code == 201
    cal = created.json()
    assert cal["name"] == "On call"
    assert cal["isDefaultCalendar"] is False
    again = graph.post(f"{fake.graph_endpoint}/me/calendars", json={"name": "on call"}, timeout=5)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ErrorFolderExists"
    listed = graph.get(f"{fake.graph_endpoint}/me/calendars", timeout=5).json()["value"]
    assert sorted(c["name"] for c in listed) == ["Calendar", "On call"]
    default = graph.get(f"{fake.graph_endpoint}/me/calendar", timeout=5).json()
    assert default["isDefaultCalendar"] is True
    assert [c["id"] for c in fake.calendars(ALICE)] == [default["id"], cal["id"]]


def test_transaction_id_makes_create_idempotent(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """A second POST with the same transactionId returns the first event."""
    cal = graph.post(f"{fake.graph_endpoint}/me/calendars", json={"name": "Shifts"}, timeout=5)
    url = f"{fake.graph_endpoint}/me/calendars/{cal.json()['id']}/events"
    first = graph.post(url, json=new_event(transactionId="tx-1"), timeout=5)
    second = graph.post(url, json=new_event("changed", transactionId="tx-1"), timeout=5)
    other = graph.post(url, json=new_event(transactionId="tx-2"), timeout=5)

    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["subject"] == "On call"
    assert first.json()["transactionId"] == "tx-1"
    assert other.json()["id"] != first.json()["id"]
    assert len(fake.events(ALICE, cal.json()["id"])) == 2


def test_patch_normalises_times_and_body(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """PATCH then GET: times come back in UTC, a text body as HTML, a new etag."""
    created = graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5).json()
    url = f"{fake.graph_endpoint}/me/events/{created['id']}"
    patched = graph.patch(
        url,
        json={
            "subject": "Moved",
            "start": {"dateTime": "2026-07-01T09:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2026-07-01T18:30:00", "timeZone": "Europe/Berlin"},
            "body": {"contentType": "text", "content": "a < b\nsecond line"},
        },
        headers={"If-Match": created["@odata.etag"]},
        timeout=5,
    )
    assert patched.status_code == 200, patched.text
    event = graph.get(url, timeout=5).json()

    assert event["subject"] == "Moved"
    assert event["start"] == {"dateTime": "2026-07-01T07:00:00.0000000", "timeZone": "UTC"}
    assert event["end"] == {"dateTime": "2026-07-01T16:30:00.0000000", "timeZone": "UTC"}
    assert event["originalStartTimeZone"] == "Europe/Berlin"
    assert event["body"]["contentType"] == "html"
    assert "a &lt; b<br>" in event["body"]["content"]
    assert event["body"]["content"].startswith("<html>")
    assert event["bodyPreview"] == "a < b second line"
    assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
    assert event["changeKey"] != created["changeKey"]
    assert event["lastModifiedDateTime"] > created["lastModifiedDateTime"]
    stale = graph.patch(
        url, json={"subject": "x"}, headers={"If-Match": created["@odata.etag"]}, timeout=5
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"


def test_invalid_bodies_are_rejected(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """Unknown properties, unknown zones and end-before-start are 400s, like Graph."""
    url = f"{fake.graph_endpoint}/me/events"
    typo = graph.post(url, json=new_event(subjet="x"), timeout=5)
    assert typo.status_code == 400
    assert typo.json()["error"]["code"] == "RequestBodyRead"
    zone = new_event(start={"dateTime": "2026-03-08T09:00:00", "timeZone": "Mars/Olympus"})
    assert graph.post(url, json=zone, timeout=5).json()["error"]["code"] == (
        "TimeZoneNotSupportedException"
    )
    backwards = new_event(end={"dateTime": "2026-03-08T08:00:00", "timeZone": "UTC"})
    assert graph.post(url, json=backwards, timeout=5).status_code == 400
    assert fake.events(ALICE) == []


def test_delete_twice_is_404(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """DELETE answers 204, then 404 ErrorItemNotFound; malformed ids are 400."""
    created = graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5).json()
    url = f"{fake.graph_endpoint}/me/events/{created['id']}"
    assert graph.delete(url, timeout=5).status_code == 204
    again = graph.delete(url, timeout=5)
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "ErrorItemNotFound"
    assert graph.get(url, timeout=5).status_code == 404
    assert graph.delete(f"{fake.graph_endpoint}/me/events/nope", timeout=5).status_code == 400


def test_calendar_view_returns_overlapping_events(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """calendarView needs a window and returns events overlapping it."""
    graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5)
    url = f"{fake.graph_endpoint}/me/calendarView"
    assert graph.get(url, timeout=5).status_code == 400
    inside = graph.get(
        url,
        params={"startDateTime": "2026-03-08T16:00:00Z", "endDateTime": "2026-03-09T00:00:00Z"},
        timeout=5,
    ).json()["value"]
    outside = graph.get(
        url,
        params={"startDateTime": "2026-03-08T17:00:00Z", "endDateTime": "2026-03-09T00:00:00Z"},
        timeout=5,
    ).json()["value"]
    assert len(inside) == 1
    assert outside == []
