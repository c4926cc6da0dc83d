"""Fake Google's Calendar API, driven by googleapiclient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from googleapiclient.errors import HttpError

from tests.fakes.google import (
    SCOPE_APP_CREATED,
    SCOPE_CALENDAR,
    SCOPE_EVENTS,
    FakeGoogle,
)
from tests.fakes.google.clients import ALICE, event_body


def test_api_endpoint_must_include_service_path(fake: FakeGoogle) -> None:
    token = fake.issue_token(ALICE)
    response = requests.get(
        f"{fake.url}/calendars/primary",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 404
    assert "/calendar/v3/" in response.json()["error"]["message"]


def test_calendar_insert_get_delete(service_factory: Callable[..., Any]) -> None:
    service = service_factory()
    created = (
        service.calendars()
        .insert(body={"summary": "On-call", "timeZone": "Europe/Berlin"})
        .execute()
    )
    assert created["id"].endswith("@group.calendar.google.com")
    assert created["kind"] == "calendar#calendar"
    assert created["etag"]
    fetched = service.calendars().get(calendarId=created["id"]).execute()
    assert fetched["timeZone"] == "Europe/Berlin"
    service.calendars().delete(calendarId=created["id"]).execute()
    with pytest.raises(HttpError) as err:
        service.calendars().get(calendarId=created["id"]).execute()
    assert err.value.resp.status == 404


def test_event_ids_duplicates_delete_and_restore(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    events = service.events()
    created = events.insert(calendarId="primary", body=event_body("shift0001")).execute()
    assert created["id"] == "shift0001"
    assert created["status"] == "confirmed"
    assert {"etag", "updated", "created", "htmlLink", "iCalUID", "sequence"} <= set(created)

    with pytest.raises(HttpError) as bad_id:
        events.insert(calendarId="primary", body=event_body("Shift_w")).execute()
    assert bad_id.value.resp.status == 400

    with pytest.raises(HttpError) as dup:
        events.insert(calendarId="primary", body=event_body("shift0001")).execute()
    assert dup.value.resp.status == 409
    assert dup.value.reason == "The requested identifier already exists."
    assert dup.value.error_details[0]["reason"] == "duplicate"

    events.delete(calendarId="primary", eventId="shift0001").execute()
    with pytest.raises(HttpError) as gone:
        events.delete(calendarId="primary", eventId="shift0001").execute()
    assert gone.value.resp.status == 410
    assert gone.value.error_details[0]["reason"] == "deleted"
    with pytest.raises(HttpError) as unknown:
        events.delete(calendarId="primary", eventId="nosuchevent").execute()
    assert unknown.value.resp.status == 404

    cancelled = events.get(calendarId="primary", eventId="shift0001").execute()
    assert cancelled["status"] == "cancelled"
    assert cancelled["etag"] != created["etag"]
    # A deleted id stays taken: re-inserting is still a 409, restoring is an update.
    with pytest.raises(HttpError) as dup_deleted:
        events.insert(calendarId="primary", body=event_body("shift0001")).execute()
    assert dup_deleted.value.resp.status == 409
    restored = events.update(
        calendarId="primary", eventId="shift0001", body=event_body(status="confirmed")
    ).execute()
    assert restored["status"] == "confirmed"
    assert [e["id"] for e in fake.events(ALICE)] == ["shift0001"]


def test_patch_merges_and_read_back_uses_calendar_zone(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    fake.add_user(ALICE, time_zone="America/Los_Angeles")
    service = service_factory()
    created = (
        service.events()
        .insert(
            calendarId="primary",
            body=event_body(
                "dstshift1",
                start={"dateTime": "2026-03-08T09:00:00.250Z"},
                end={"dateTime": "2026-03-08T11:00:00+00:00"},
                extendedProperties={"private": {"oncal": "1", "shift": "a"}},
            ),
        )
        .execute()
    )
    # Normalised like Google: calendar zone, offset form, DST-aware, no fraction.
    assert created["start"] == {"dateTime": "2026-03-08T01:00:00-08:00"}
    assert created["end"] == {"dateTime": "2026-03-08T04:00:00-07:00"}

    patched = (
        service.events()
        .patch(
            calendarId="primary",
            eventId="dstshift1",
            body={"summary": "Moved", "extendedProperties": {"private": {"shift": "b"}}},
        )
        .execute()
    )
    assert patched["summary"] == "Moved"
    assert patched["extendedProperties"]["private"] == {"oncal": "1", "shift": "b"}
    assert patched["sequence"] == created["sequence"]
    assert patched["etag"] != created["etag"]

    zoned = (
        service.events()
        .insert(
            calendarId="primary",
            body=event_body(
                start={"dateTime": "2026-07-01T09:00:00", "timeZone": "Europe/Berlin"},
                end={"dateTime": "2026-07-01T10:00:00", "timeZone": "Europe/Berlin"},
            ),
        )
        .execute()
    )
    assert zoned["start"] == {"dateTime": "2026-07-01T09:00:00+02:00", "timeZone": "Europe/Berlin"}

    with pytest.raises(HttpError) as naive:
        service.events().insert(
            calendarId="primary",
            body=event_body(start={"dateTime": "2026-07-01T09:00:00"}),
        ).execute()
    assert naive.value.resp.status == 400


def test_list_filters_by_private_property_and_pages(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    events = service.events()
    for i in range(7):
        props = {"private": {"oncal": "yes", "n": str(i)}}
        events.insert(
            calendarId="primary", body=event_body(f"mine{i:04d}", extendedProperties=props)
        ).execute()
    events.insert(calendarId="primary", body=event_body("notmine01")).execute()
    events.delete(calendarId="primary", eventId="mine0003").execute()

    fake.reset_stats()
    request = events.list(calendarId="primary", privateExtendedProperty="oncal=yes", maxResults=3)
    seen: list[str] = []
    while request is not None:
        page = request.execute()
        seen += [item["id"] for item in page["items"]]
        request = events.list_next(request, page)
    assert seen == ["mine0000", "mine0001", "mine0002", "mine0004", "mine0005", "mine0006"]
    assert fake.stats["events.list"] == 2
    assert "nextSyncToken" in page

    with_deleted = events.list(
        calendarId="primary",
        privateExtendedProperty=["oncal=yes", "n=3"],
        showDeleted=True,
    ).execute()
    assert [(e["id"], e["status"]) for e in with_deleted["items"]] == [("mine0003", "cancelled")]


def test_list_time_window_and_sync_token(service_factory: Callable[..., Any]) -> None:
    service = service_factory()
    events = service.events()
    for day in (1, 2, 3):
        events.insert(
            calendarId="primary",
            body=event_body(
                f"dai{day:05d}",
                start={"dateTime": f"2026-04-0{day}T09:00:00Z"},
                end={"dateTime": f"2026-04-0{day}T10:00:00Z"},
            ),
        ).execute()
    window = events.list(
        calendarId="primary", timeMin="2026-04-02T00:00:00Z", timeMax="2026-04-03T00:00:00Z"
    ).execute()
    assert [e["id"] for e in window["items"]] == ["dai00002"]

    sync_token = events.list(calendarId="primary").execute()["nextSyncToken"]
    events.delete(calendarId="primary", eventId="dai00001").execute()
    changes = events.list(calendarId="primary", syncToken=sync_token).execute()
    assert [(e["id"], e["status"]) for e in changes["items"]] == [("dai00001", "cancelled")]


def test_partial_response_fields_and_if_match(service_factory: Callable[..., Any]) -> None:
    service = service_factory()
    created = service.events().insert(calendarId="primary", body=event_body("field001")).execute()
    listed = (
        service.events()
        .list(calendarId="primary", fields="items(id,status),nextSyncToken")
        .execute()
    )
    assert listed["items"] == [{"id": "field001", "status": "confirmed"}]
    assert set(listed) == {"items", "nextSyncToken"}

    stale = service.events().patch(
        calendarId="primary", eventId="field001", body={"summary": "Later"}
    )
    stale.headers["If-Match"] = '"1"'
    with pytest.raises(HttpError) as err:
        stale.execute()
    assert err.value.resp.status == 412
    fresh = service.events().patch(
        calendarId="primary", eventId="field001", body={"summary": "Later"}
    )
    fresh.headers["If-Match"] = created["etag"]
    assert fresh.execute()["summary"] == "Later"


def test_scope_enforcement_app_created_vs_primary(service_factory: Callable[..., Any]) -> None:
    narrow = service_factory(scopes=(SCOPE_APP_CREATED,))
    own = narrow.calendars().insert(body={"summary": "Rota"}).execute()
    narrow.events().insert(calendarId=own["id"], body=event_body("appca101")).execute()
    with pytest.raises(HttpError) as denied:
        narrow.events().insert(calendarId="primary", body=event_body()).execute()
    assert denied.value.resp.status == 403
    assert denied.value.error_details[0]["reason"] == "insufficientPermissions"

    events_only = service_factory(scopes=(SCOPE_EVENTS,))
    events_only.events().insert(calendarId="primary", body=event_body("prima0001")).execute()
    with pytest.raises(HttpError) as no_calendars:
        events_only.calendars().insert(body={"summary": "Nope"}).execute()
    assert no_calendars.value.resp.status == 403

    # Calendars belong to the user whose token is used: another user gets 404.
    other_client = service_factory(scopes=(SCOPE_CALENDAR,), email="zed@example.com")
    with pytest.raises(HttpError) as foreign:
        other_client.calendars().get(calendarId=own["id"]).execute()
    assert foreign.value.resp.status == 404


def test_app_created_cannot_list_calendars_only_read_known_ones(
    service_factory: Callable[..., Any],
) -> None:
    """calendarList.list's documented scopes leave out calendar.app.created; .get allows it."""
    narrow = service_factory(scopes=(SCOPE_APP_CREATED,))
    own = narrow.calendars().insert(body={"summary": "Rota"}).execute()
    with pytest.raises(HttpError) as denied:
        narrow.calendarList().list().execute()
    assert denied.value.resp.status == 403
    assert denied.value.error_details[0]["reason"] == "insufficientPermissions"
    assert narrow.calendarList().get(calendarId=own["id"]).execute()["id"] == own["id"]

    full = service_factory(scopes=(SCOPE_CALENDAR,))
    listed = {item["id"] for item in full.calendarList().list().execute()["items"]}
    assert own["id"] in listed
