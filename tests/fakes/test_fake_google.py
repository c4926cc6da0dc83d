"""Drive the fake Google server with the real client libraries.

These tests pin down both the fake's behaviour and what the real libraries do
against it (httplib2's silent re-send, oauthlib's transport and scope checks,
BatchHttpRequest's parsing), because the app's sync engine depends on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import oauthlib.oauth2.rfc6749.errors as oauth_errors
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import id_token
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fakes.faults import Faults
from tests.fakes.google import (
    SCOPE_APP_CREATED,
    SCOPE_CALENDAR,
    SCOPE_EVENTS,
    FakeGoogle,
)

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/google/callback"
ALICE = "alice@example.com"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    """A started fake with the default client registered."""
    with FakeGoogle() as server:
        server.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        yield server
    assert server.server_errors == [], server.server_errors[0][1]


@pytest.fixture
def insecure_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib refuses http:// token URLs without this; the app needs it for loopback too."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def make_credentials(fake: FakeGoogle, token: dict[str, Any]) -> Credentials:
    """Credentials as the app would rebuild them from stored tokens."""
    expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=token["expires_in"])
    return Credentials(
        token=token["access_token"],
        expiry=expiry,  # google-auth wants naive UTC
        refresh_token=token.get("refresh_token"),
        token_uri=fake.token_uri,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scopes=token["scope"].split(),
    )


@pytest.fixture
def service_factory(fake: FakeGoogle) -> Iterator[Callable[..., Any]]:
    """Build googleapiclient services (static discovery) that are closed afterwards."""
    services: list[Any] = []

    def factory(
        creds: Credentials | None = None,
        *,
        scopes: tuple[str, ...] = (SCOPE_CALENDAR,),
        email: str = ALICE,
        timeout: float = 5,
    ) -> Any:
        if creds is None:
            creds = make_credentials(fake, fake.issue_token(email, scopes))
        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout))
        service = build(
            "calendar",
            "v3",
            http=http,
            static_discovery=True,
            client_options={"api_endpoint": fake.api_endpoint},
        )
        services.append(service)
        return service

    yield factory
    for service in services:
        service.close()


def event_body(event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A one-hour timed event."""
    body: dict[str, Any] = {
        "summary": "On call",
        "start": {"dateTime": "2026-03-09T09:00:00Z"},
        "end": {"dateTime": "2026-03-09T10:00:00Z"},
    }
    if event_id is not None:
        body["id"] = event_id
    body.update(extra)
    return body


def new_flow(fake: FakeGoogle, scopes: list[str] | None = None) -> Flow:
    """A Flow pointed at the fake, as the app would configure it."""
    return Flow.from_client_config(
        fake.client_config(CLIENT_ID),
        scopes=scopes or [SCOPE_CALENDAR],
        redirect_uri=REDIRECT_URI,
    )


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect Location."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


# ---------------------------------------------------------------------------- OAuth


@pytest.mark.usefixtures("insecure_transport")
def test_oauth_code_flow_with_pkce_returns_offline_tokens(fake: FakeGoogle) -> None:
    flow = new_flow(fake)
    auth_url, state = flow.authorization_url(access_type="offline", prompt="consent")
    assert auth_url.startswith(fake.auth_uri)
    assert "code_challenge_method=S256" in auth_url

    location = fake.consent(auth_url, email="bob@example.com")
    assert location.startswith(REDIRECT_URI)
    assert query_of(location)["state"] == state

    token = flow.fetch_token(authorization_response=location)
    assert token["refresh_token"]
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == [SCOPE_CALENDAR]
    assert fake.grants("bob@example.com")[0]["refresh_token"] == token["refresh_token"]
    assert fake.calendars("bob@example.com")[0]["id"] == "bob@example.com"


def test_oauth_requires_insecure_transport_flag_for_http(
    fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    flow = new_flow(fake)
    with pytest.raises(oauth_errors.InsecureTransportError):
        flow.authorization_url(access_type="offline")


@pytest.mark.usefixtures("insecure_transport")
def test_pkce_verifier_mismatch_and_code_reuse_are_invalid_grant(fake: FakeGoogle) -> None:
    flow = new_flow(fake)
    auth_url, _ = flow.authorization_url(access_type="offline")
    location = fake.consent(auth_url)
    real_verifier = flow.code_verifier
    flow.code_verifier = "x" * 64
    with pytest.raises(oauth_errors.InvalidGrantError, match="code verifier"):
        flow.fetch_token(authorization_response=location)

    # The failed attempt did not burn the code; the real verifier works once.
    flow.code_verifier = real_verifier
    flow.fetch_token(authorization_response=location)
    with pytest.raises(oauth_errors.InvalidGrantError):
        flow.fetch_token(authorization_response=location)


@pytest.mark.usefixtures("insecure_transport")
def test_refresh_token_only_for_offline_and_first_consent(fake: FakeGoogle) -> None:
    # Flow.authorization_url defaults to access_type=offline; ask for online.
    online = new_flow(fake)
    url, _ = online.authorization_url(access_type="online")
    assert "refresh_token" not in online.fetch_token(authorization_response=fake.consent(url))

    first = new_flow(fake)
    url, _ = first.authorization_url(access_type="offline")
    assert first.fetch_token(authorization_response=fake.consent(url))["refresh_token"]

    # Like Google: a repeat consent without prompt=consent yields no new refresh token.
    again = new_flow(fake)
    url, _ = again.authorization_url(access_type="offline")
    assert "refresh_token" not in again.fetch_token(authorization_response=fake.consent(url))

    forced = new_flow(fake)
    url, _ = forced.authorization_url(access_type="offline", prompt="consent")
    assert forced.fetch_token(authorization_response=fake.consent(url))["refresh_token"]


@pytest.mark.usefixtures("insecure_transport")
def test_deny_redirects_with_access_denied(fake: FakeGoogle) -> None:
    flow = new_flow(fake)
    url, state = flow.authorization_url(access_type="offline")
    params = query_of(fake.consent(url, allow=False))
    assert params == {"error": "access_denied", "state": state}


@pytest.mark.usefixtures("insecure_transport")
def test_unregistered_redirect_uri_is_refused_on_the_consent_page(fake: FakeGoogle) -> None:
    flow = Flow.from_client_config(
        fake.client_config(CLIENT_ID),
        scopes=[SCOPE_CALENDAR],
        redirect_uri="http://127.0.0.1:9/evil",
    )
    url, _ = flow.authorization_url()
    with pytest.raises(RuntimeError, match="redirect_uri_mismatch"):
        fake.consent(url)
    page = requests.get(fake.auth_uri, params={"client_id": "nope"}, timeout=5)
    assert page.status_code == 401


@pytest.mark.usefixtures("insecure_transport")
def test_consent_page_prefills_login_hint(fake: FakeGoogle) -> None:
    url, _ = new_flow(fake).authorization_url(login_hint="carol@example.com")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert 'value="carol@example.com"' in page.text
    assert 'action="/o/oauth2/approve"' in page.text
    assert query_of(fake.consent(url))["code"]
    assert fake.calendars("carol@example.com")


@pytest.mark.usefixtures("insecure_transport")
def test_partial_consent_trips_oauthlib_scope_check(fake: FakeGoogle) -> None:
    flow = new_flow(fake, [SCOPE_CALENDAR, SCOPE_EVENTS])
    url, _ = flow.authorization_url(access_type="offline")
    location = fake.consent(url, scopes=[SCOPE_EVENTS])
    assert query_of(location)["scope"] == SCOPE_EVENTS
    with pytest.raises(Warning, match="Scope has changed"):
        flow.fetch_token(authorization_response=location)


@pytest.mark.usefixtures("insecure_transport")
def test_openid_id_token_verifies_against_fake_certs(fake: FakeGoogle) -> None:
    flow = new_flow(fake, ["openid", "email"])
    url, _ = flow.authorization_url()
    token = flow.fetch_token(authorization_response=fake.consent(url, email="dave@example.com"))
    with requests.Session() as session:
        claims = id_token.verify_token(
            token["id_token"],
            GoogleAuthRequest(session),
            audience=CLIENT_ID,
            certs_url=fake.certs_uri,
        )
        assert claims["email"] == "dave@example.com"
        info = session.get(
            fake.userinfo_uri,
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=5,
        ).json()
    assert info["email"] == "dave@example.com"


def test_token_endpoint_rejects_bad_client_secret(fake: FakeGoogle) -> None:
    token = fake.issue_token(ALICE)
    response = requests.post(
        fake.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
        },
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_credentials_refresh_and_transparent_refresh_on_expiry(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    creds = make_credentials(fake, fake.issue_token(ALICE))
    old_token = creds.token
    with requests.Session() as session:
        creds.refresh(GoogleAuthRequest(session))
    assert creds.token != old_token
    assert creds.valid

    service = service_factory(creds)
    assert fake.expire_access_tokens(ALICE) >= 1
    fake.reset_stats()
    # AuthorizedHttp sees the 401, refreshes against the fake and retries.
    assert service.calendars().get(calendarId="primary").execute()["id"] == ALICE
    assert fake.stats["token:refresh_token"] == 1
    assert fake.stats["calendars.get"] == 2


def test_short_token_lifetime_makes_google_auth_refresh_before_each_call(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    # google-auth treats tokens expiring within its refresh threshold (minutes)
    # as already expired, so a tiny lifetime means a refresh per API call.
    fake.access_token_lifetime = 60
    service = service_factory(make_credentials(fake, fake.issue_token(ALICE)))
    fake.reset_stats()
    service.calendars().get(calendarId="primary").execute()
    service.calendars().get(calendarId="primary").execute()
    assert fake.stats["token:refresh_token"] == 2


def test_revoke_endpoint_kills_the_whole_grant(fake: FakeGoogle) -> None:
    token = fake.issue_token(ALICE)
    creds = make_credentials(fake, token)
    response = requests.post(fake.revoke_uri, data={"token": token["access_token"]}, timeout=5)
    assert response.status_code == 200
    assert fake.revoked_tokens == [token["access_token"]]
    assert fake.revocations[0]["kind"] == "access_token"

    with requests.Session() as session, pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(GoogleAuthRequest(session))
    again = requests.post(fake.revoke_uri, params={"token": token["refresh_token"]}, timeout=5)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_token"


def test_user_removing_access_breaks_api_and_refresh(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    token = fake.issue_token(ALICE)
    service = service_factory(make_credentials(fake, token))
    service.calendars().get(calendarId="primary").execute()
    assert fake.revoke_grants(ALICE) == 1

    raw = requests.get(
        f"{fake.api_endpoint}calendars/primary",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert raw.status_code == 401
    assert raw.json()["error"]["errors"][0]["reason"] == "authError"
    # Through AuthorizedHttp the 401 triggers a refresh, which now fails.
    with pytest.raises(RefreshError, match="invalid_grant"):
        service.calendars().get(calendarId="primary").execute()


# ----------------------------------------------------------------------- Calendar API


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


# ------------------------------------------------------------------------------ scopes


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


# ------------------------------------------------------------------------------- batch


def test_batch_inserts_with_one_failing_member(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    service.events().insert(calendarId="primary", body=event_body("taken001")).execute()
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def callback(request_id: str, response: Any, exception: HttpError | None) -> None:
        results[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=callback, batch_uri=fake.batch_uri)
    for event_id in ("batch0001", "batch0002", "taken001", "batch0003"):
        batch.add(service.events().insert(calendarId="primary", body=event_body(event_id)))
    batch.add(service.events().delete(calendarId="primary", eventId="taken001"))
    fake.reset_stats()
    batch.execute()

    assert results["1"][0]["id"] == "batch0001"
    assert results["3"][0] is None
    error = results["3"][1]
    assert error is not None
    assert error.resp.status == 409
    assert results["4"][0]["id"] == "batch0003"
    assert results["5"][1] is None
    assert fake.stats["batch"] == 1
    assert fake.stats["api_round_trips"] == 1
    assert fake.stats["batch_members"] == 5
    assert fake.stats["events.insert"] == 4
    assert sorted(e["id"] for e in fake.events(ALICE)) == ["batch0001", "batch0002", "batch0003"]


def test_batch_faults_apply_per_member(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    statuses: list[int] = []

    def callback(request_id: str, response: Any, exception: HttpError | None) -> None:
        statuses.append(exception.resp.status if exception else 200)

    batch = BatchHttpRequest(callback=callback, batch_uri=fake.batch_uri)
    for i in range(3):
        batch.add(service.events().insert(calendarId="primary", body=event_body(f"pm{i:04d}")))
    fake.fail_next(1, 503)
    batch.execute()
    assert statuses == [503, 200, 200]
    assert len(fake.events(ALICE)) == 2


def test_batch_over_limit_is_rejected(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    batch = BatchHttpRequest(batch_uri=fake.batch_uri)
    for i in range(51):
        batch.add(service.events().insert(calendarId="primary", body=event_body(f"big{i:05d}")))
    with pytest.raises(HttpError) as err:
        batch.execute()
    assert err.value.resp.status == 400
    assert fake.events(ALICE) == []


# ------------------------------------------------------------------------------ faults


def test_rate_limit_429_carries_retry_after(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(1, 429, retry_after=7)
    with pytest.raises(HttpError) as err:
        service.calendars().get(calendarId="primary").execute()
    assert err.value.resp.status == 429
    assert err.value.resp["retry-after"] == "7"
    assert err.value.error_details[0]["reason"] == "rateLimitExceeded"

    fake.fail_next(1, kind="quota")
    with pytest.raises(HttpError) as quota:
        service.calendars().get(calendarId="primary").execute()
    assert quota.value.resp.status == 403
    assert quota.value.error_details[0]["domain"] == "usageLimits"


def test_googleapiclient_num_retries_rides_over_503(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    request = service.calendars().get(calendarId="primary")
    request._sleep = lambda seconds: None  # skip the library's backoff in tests
    fake.fail_next(2, 503)
    assert request.execute(num_retries=2)["id"] == ALICE
    assert fake.stats["calendars.get"] == 1
    assert fake.faults.injected["error"] == 2


def test_commit_then_drop_is_replayed_by_httplib2_as_409(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(1, kind="drop_after_commit")
    # httplib2 treats a connection closed without a response as stale and sends
    # the POST again; the replay finds the committed event.
    with pytest.raises(HttpError) as err:
        service.events().insert(calendarId="primary", body=event_body("lost0001")).execute()
    assert err.value.resp.status == 409
    assert fake.stats["events.insert"] == 2
    assert [e["id"] for e in fake.events(ALICE)] == ["lost0001"]


def test_commit_then_reset_surfaces_as_connection_error(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.faults.drop_mode = "reset"
    fake.fail_next(1, kind="drop_after_commit")
    with pytest.raises(ConnectionError):
        service.events().insert(calendarId="primary", body=event_body()).execute()
    assert fake.stats["events.insert"] == 1
    assert len(fake.events(ALICE)) == 1


def test_drop_before_processing_commits_nothing(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory()
    fake.fail_next(2, kind="drop")  # two, because httplib2 re-sends once
    with pytest.raises(ConnectionError):
        service.events().insert(calendarId="primary", body=event_body()).execute()
    assert fake.events(ALICE) == []


def test_slow_response_times_out_but_still_commits(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    service = service_factory(timeout=0.3)
    fake.fail_next(1, kind="slow", delay=1.5)
    with pytest.raises(TimeoutError):
        service.events().insert(calendarId="primary", body=event_body("slo00001")).execute()
    assert fake.events(ALICE) == []  # the handler is still asleep
    fake.wait_idle(timeout=3)
    assert [e["id"] for e in fake.events(ALICE)] == ["slo00001"]


def test_random_faults_are_seeded_and_scoped(fake: FakeGoogle) -> None:
    def decisions(seed: int) -> list[str | None]:
        faults = Faults(seed=seed, targets={"api"})
        faults.error_rate = faults.rate_limit_rate = faults.drop_rate = 0.2
        return [getattr(faults.decide("api"), "kind", None) for _ in range(50)]

    assert decisions(1) == decisions(1)
    assert decisions(1) != decisions(2)
    assert {"error", "rate_limit", "drop", None} <= set(decisions(1))

    # Token endpoint faults are off by default even with a 100% error rate.
    fake.faults.error_rate = 1.0
    token = fake.issue_token(ALICE)
    refreshed = requests.post(
        fake.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=5,
    )
    assert refreshed.status_code == 200
    api = requests.get(
        f"{fake.api_endpoint}calendars/primary",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert api.status_code in (500, 503)
    assert api.json()["error"]["errors"][0]["reason"] == "backendError"


def test_concurrent_inserts_are_consistent(
    fake: FakeGoogle, service_factory: Callable[..., Any]
) -> None:
    token = fake.issue_token(ALICE)
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        token_headers = {"Authorization": f"Bearer {token['access_token']}"}
        try:
            for i in range(10):
                response = requests.post(
                    f"{fake.api_endpoint}calendars/primary/events",
                    json=event_body(f"c{n}0{i:04d}"),
                    headers=token_headers,
                    timeout=5,
                )
                assert response.status_code == 200, response.text
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    events = fake.events(ALICE)
    assert len(events) == 40
    assert len({e["etag"] for e in events}) == 40


# -------------------------------------------------------------------------- lifecycle


def test_stop_closes_keep_alive_connections() -> None:
    fake = FakeGoogle().start()
    url = f"{fake.url}/oauth2/v1/certs"
    with requests.Session() as session:
        assert session.get(url, timeout=5).status_code == 200
        fake.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, timeout=2)
    assert not fake.running


def test_standalone_entry_point_prints_endpoints() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.google", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(9)]
        banner = "".join(lines)
        assert "api_endpoint" in banner
        assert "test-client" in banner
        token_uri = next(line.split()[1] for line in lines if "token_uri" in line)
        response = requests.post(token_uri, data={"grant_type": "password"}, timeout=5)
        assert response.status_code == 401
        assert json.loads(response.text)["error"] == "invalid_client"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
