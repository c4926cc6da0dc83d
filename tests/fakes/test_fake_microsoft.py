"""Drive the fake Microsoft server with the real msal library and plain requests.

These tests pin down both the fake's behaviour and what msal does against it
(https-only authorities, nonce and client_info handling, when it refreshes), because
the app's OAuth and sync code depend on both.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from tests.fakes.microsoft import FakeMicrosoft

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/microsoft/callback"
SCOPES = ["Calendars.ReadWrite"]
ALICE = "alice@example.com"
UID_PROP = "String {6f1c3b0e-6a43-4d6b-9a77-0c2f1d0e5a11} Name oncalFeedUid"
REPO_ROOT = Path(__file__).resolve().parents[2]

MakeApp = Callable[..., msal.ConfidentialClientApplication]


@pytest.fixture
def fake() -> Iterator[FakeMicrosoft]:
    """A started fake with the default client registered."""
    with FakeMicrosoft(seed=7) as server:
        server.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        yield server
    assert server.server_errors == [], server.server_errors[0][1]


@pytest.fixture
def make_app(fake: FakeMicrosoft) -> Iterator[MakeApp]:
    """Build real msal apps against the fake; their HTTP clients are closed afterwards."""
    apps: list[msal.ConfidentialClientApplication] = []

    def make(
        cache: msal.SerializableTokenCache | None = None, secret: str = CLIENT_SECRET
    ) -> msal.ConfidentialClientApplication:
        app = msal.ConfidentialClientApplication(
            CLIENT_ID, client_credential=secret, token_cache=cache, **fake.msal_kwargs("common")
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.http_client.close()


@pytest.fixture
def graph(fake: FakeMicrosoft) -> Iterator[requests.Session]:
    """A requests session carrying a valid Graph token for Alice."""
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {fake.access_token(ALICE)}"
        yield session


def sign_in(
    fake: FakeMicrosoft, app: msal.ConfidentialClientApplication, email: str = ALICE
) -> dict[str, Any]:
    """Run the whole auth code flow over HTTP and return msal's result."""
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    params = fake.consent_params(flow["auth_uri"], email=email)
    return app.acquire_token_by_auth_code_flow(flow, params)


def new_event(subject: str = "On call", **extra: Any) -> dict[str, Any]:
    """An event body shaped like the app's `graph_event`."""
    body = {
        "subject": subject,
        "body": {"contentType": "text", "content": "Primary on-call\nPager: 555"},
        "start": {"dateTime": "2026-03-08T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-08T17:00:00", "timeZone": "UTC"},
        "showAs": "busy",
        "isReminderOn": False,
        "singleValueExtendedProperties": [{"id": UID_PROP, "value": "shift-1@oncal"}],
    }
    body.update(extra)
    return body


# ------------------------------------------------------------------------ identity


def test_msal_rejects_http_authority(fake: FakeMicrosoft) -> None:
    """Why the fake needs a loopback http_client: msal insists on an https authority."""
    with pytest.raises(ValueError, match="https url"):
        msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=CLIENT_SECRET,
            authority=f"{fake.url}/common",
            instance_discovery=False,
            validate_authority=False,
        )


def test_auth_code_flow_with_real_msal(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """Consent over HTTP, code redemption with PKCE, id_token claims and an msal account."""
    app = make_app()
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post", login_hint="bob@example.com"
    )
    assert flow["auth_uri"].startswith(f"{fake.url}/common/oauth2/v2.0/authorize?")
    target, params = fake.consent_exchange(flow["auth_uri"])
    assert target == REDIRECT_URI
    assert {"code", "state", "client_info"} <= set(params)

    result = app.acquire_token_by_auth_code_flow(flow, params)

    assert "error" not in result, result
    assert result["token_type"] == "Bearer"
    assert set(result["scope"].split()) >= {"Calendars.ReadWrite", "openid", "profile"}
    claims = result["id_token_claims"]
    assert claims["aud"] == CLIENT_ID
    assert claims["preferred_username"] == "bob@example.com"  # login_hint prefilled the form
    assert claims["tid"] == fake.tenant_id
    [account] = app.get_accounts()
    assert account["username"] == "bob@example.com"
    assert account["home_account_id"] == f"{claims['oid']}.{fake.tenant_id}"
    me = requests.get(
        f"{fake.graph_endpoint}/me",
        headers={"Authorization": f"Bearer {result['access_token']}"},
        timeout=5,
    )
    assert me.status_code == 200
    assert me.json()["userPrincipalName"] == "bob@example.com"
    assert fake.stats["token:authorization_code"] == 1


def test_query_mode_consent_returns_redirect_location(
    fake: FakeMicrosoft, make_app: MakeApp
) -> None:
    """Default response_mode: the consent answer is a 302 to the redirect_uri."""
    app = make_app()
    with pytest.warns(UserWarning, match="form_post"):
        flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    location = fake.consent(flow["auth_uri"], email="carol@example.com")
    split = urllib.parse.urlsplit(location)
    assert location.startswith(REDIRECT_URI + "?")
    params = dict(urllib.parse.parse_qsl(split.query))
    assert params["state"] == flow["state"]
    client_info = json.loads(base64.urlsafe_b64decode(params["client_info"] + "=="))
    assert client_info["utid"] == fake.tenant_id

    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert result["id_token_claims"]["preferred_username"] == "carol@example.com"


def test_cancel_redirects_with_access_denied(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """Cancel on the consent page: error=access_denied with the state, no code."""
    app = make_app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    location = fake.consent(flow["auth_uri"], allow=False)
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert params["error"] == "access_denied"
    assert params["state"] == flow["state"]
    assert "code" not in params
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "access_denied"


def test_code_is_single_use_and_pkce_is_checked(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """A code redeems once; a wrong code_verifier or secret is refused."""
    app = make_app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    params = fake.consent_params(flow["auth_uri"])
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow), params)
    again = app.acquire_token_by_auth_code_flow(dict(flow), params)
    assert again["error"] == "invalid_grant"
    assert again["error_codes"] == [54005]

    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    params = fake.consent_params(flow["auth_uri"])
    tampered = dict(flow, code_verifier="x" * 43)
    result = app.acquire_token_by_auth_code_flow(tampered, params)
    assert result["error"] == "invalid_grant"
    assert "code_challenge" in result["error_description"]

    bad_secret = make_app(secret="wrong")
    flow = bad_secret.initiate_auth_code_flow(
        SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post"
    )
    result = bad_secret.acquire_token_by_auth_code_flow(flow, fake.consent_params(flow["auth_uri"]))
    assert result["error"] == "invalid_client"


def test_unregistered_redirect_uri_is_an_error_page(fake: FakeMicrosoft) -> None:
    """Like AAD, a redirect_uri mismatch shows an error page instead of redirecting."""
    query = urllib.parse.urlencode(
        {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": "http://127.0.0.1:9/evil",
            "scope": "openid",
        }
    )
    page = requests.get(f"{fake.url}/common/oauth2/v2.0/authorize?{query}", timeout=5)
    assert page.status_code == 400
    assert "AADSTS50011" in page.text


def test_token_cache_round_trip_serves_cached_token(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """A serialized cache restored into a new app yields the same token without HTTP."""
    cache = msal.SerializableTokenCache()
    first = sign_in(fake, make_app(cache))
    restored = msal.SerializableTokenCache()
    restored.deserialize(cache.serialize())
    app = make_app(restored)
    fake.reset_stats()

    [account] = app.get_accounts()
    result = app.acquire_token_silent(SCOPES, account)

    assert result is not None
    assert result["token_source"] == "cache"
    assert result["access_token"] == first["access_token"]
    assert fake.stats["token"] == 0


def test_short_lived_tokens_are_refreshed_silently(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """msal refreshes when under 5 minutes remain, judged from expires_in."""
    fake.access_token_lifetime = 120
    cache = msal.SerializableTokenCache()
    app = make_app(cache)
    first = sign_in(fake, app)
    assert cache.has_state_changed
    fake.expire_access_tokens()

    result = app.acquire_token_silent(SCOPES, app.get_accounts()[0])

    assert result is not None
    assert result["token_source"] == "identity_provider"
    assert result["access_token"] != first["access_token"]
    assert fake.stats["token:refresh_token"] == 1
    old = requests.get(
        f"{fake.graph_endpoint}/me",
        headers={"Authorization": f"Bearer {first['access_token']}"},
        timeout=5,
    )
    new = requests.get(
        f"{fake.graph_endpoint}/me",
        headers={"Authorization": f"Bearer {result['access_token']}"},
        timeout=5,
    )
    assert old.status_code == 401
    assert old.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert new.status_code == 200


def test_expired_on_server_needs_force_refresh(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """With a long lifetime msal keeps serving its cached token until told to refresh."""
    app = make_app()
    first = sign_in(fake, app)
    fake.expire_access_tokens()
    account = app.get_accounts()[0]
    cached = app.acquire_token_silent(SCOPES, account)
    assert cached is not None
    assert cached["access_token"] == first["access_token"]

    fresh = app.acquire_token_silent(SCOPES, account, force_refresh=True)

    assert fresh is not None
    assert fresh["access_token"] != first["access_token"]
    ok = requests.get(
        f"{fake.graph_endpoint}/me/calendars",
        headers={"Authorization": f"Bearer {fresh['access_token']}"},
        timeout=5,
    )
    assert ok.status_code == 200


def test_revoked_grant_gives_invalid_grant_and_401(fake: FakeMicrosoft, make_app: MakeApp) -> None:
    """After revocation: refresh -> invalid_grant, Graph with the old token -> 401."""
    app = make_app()
    first = sign_in(fake, app)
    fake.revoke_grants(ALICE)

    result = app.acquire_token_silent_with_error(SCOPES, app.get_accounts()[0], force_refresh=True)

    assert result is not None
    assert result["error"] == "invalid_grant"
    graph = requests.get(
        f"{fake.graph_endpoint}/me",
        headers={"Authorization": f"Bearer {first['access_token']}"},
        timeout=5,
    )
    assert graph.status_code == 401
    # A new consent works again.
    assert "access_token" in sign_in(fake, make_app())


def test_faults_spare_identity_endpoints_by_default(
    fake: FakeMicrosoft, make_app: MakeApp, graph: requests.Session
) -> None:
    """error_rate=1 breaks every Graph call but sign-in keeps working."""
    fake.faults.error_rate = 1.0
    assert "access_token" in sign_in(fake, make_app())
    statuses = {graph.get(f"{fake.graph_endpoint}/me", timeout=5).status_code for _ in range(12)}
    assert statuses <= {500, 503, 504}
    assert len(statuses) > 1


# --------------------------------------------------------------------------- Graph


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


def test_extended_property_filter_and_expand(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """The documented singleValueExtendedProperties filters and $expand work."""
    url = f"{fake.graph_endpoint}/me/events"
    tagged = graph.post(url, json=new_event(), timeout=5).json()
    graph.post(url, json=new_event("untagged", singleValueExtendedProperties=[]), timeout=5)
    assert "singleValueExtendedProperties" not in tagged

    def ids(filter_: str, **params: str) -> list[str]:
        response = graph.get(url, params={"$filter": filter_, **params}, timeout=5)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["value"]]

    prefix = f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROP}' and "
    eq = prefix + "ep/value eq 'SHIFT-1@oncal')"  # values compare case-insensitively
    present = f"singleValueExtendedProperties/any(ep: ep/id eq '{UID_PROP}' and ep/value ne null)"
    other = prefix + "ep/value eq 'nope')"
    assert ids(eq) == [tagged["id"]]
    assert ids(present) == [tagged["id"]]
    assert ids(other) == []
    id_only = graph.get(
        url,
        params={"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROP}')"},
        timeout=5,
    )
    assert id_only.status_code == 400

    expanded = graph.get(
        url,
        params={
            "$filter": present,
            "$expand": f"singleValueExtendedProperties($filter=id eq '{UID_PROP}')",
        },
        timeout=5,
    ).json()["value"]
    assert expanded[0]["singleValueExtendedProperties"] == [
        {"id": UID_PROP, "value": "shift-1@oncal"}
    ]


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


def test_paging_select_and_next_link(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """$top pages with an absolute nextLink at the fake; $select trims properties."""
    for n in range(5):
        graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(f"e{n}"), timeout=5)
    url: str | None = f"{fake.graph_endpoint}/me/events?$top=2&$select=subject,start"
    subjects: list[str] = []
    pages = 0
    while url:
        page = graph.get(url, timeout=5).json()
        pages += 1
        for item in page["value"]:
            assert set(item) == {"@odata.etag", "id", "subject", "start"}
            subjects.append(item["subject"])
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{fake.graph_endpoint}/me/events?")
    assert pages == 3
    assert subjects == ["e0", "e1", "e2", "e3", "e4"]
    bad = graph.get(f"{fake.graph_endpoint}/me/events", params={"$select": "nope"}, timeout=5)
    assert bad.status_code == 400


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


# --------------------------------------------------------------------------- $batch


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


# --------------------------------------------------------------------------- faults


def test_commit_then_drop_creates_event_but_client_errors(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """ "Committed but lost": the client sees a connection error, the event exists,
    and a retry with the same transactionId finds it instead of duplicating."""
    url = f"{fake.graph_endpoint}/me/events"
    fake.fail_next(kind="drop_after_commit")
    with pytest.raises(requests.ConnectionError):
        graph.post(url, json=new_event(transactionId="lost-1"), timeout=5)
    [stored] = fake.events(ALICE)
    assert stored["transactionId"] == "lost-1"

    retry = graph.post(url, json=new_event(transactionId="lost-1"), timeout=5)

    assert retry.status_code == 201
    assert retry.json()["id"] == stored["id"]
    assert len(fake.events(ALICE)) == 1


def test_drop_before_processing_creates_nothing(
    fake: FakeMicrosoft, graph: requests.Session
) -> None:
    """A plain drop loses the request: connection error and no event."""
    fake.fail_next(kind="drop")
    with pytest.raises(requests.ConnectionError):
        graph.post(f"{fake.graph_endpoint}/me/events", json=new_event(), timeout=5)
    assert fake.events(ALICE) == []


def test_slow_answer_times_out(fake: FakeMicrosoft, graph: requests.Session) -> None:
    """A slow fault outlasts a short client timeout."""
    fake.fail_next(kind="slow", delay=0.5)
    with pytest.raises(requests.Timeout):
        graph.get(f"{fake.graph_endpoint}/me", timeout=0.1)


def test_seeded_faults_are_reproducible(fake: FakeMicrosoft) -> None:
    """The same seed yields the same sequence of Graph statuses."""

    def run(seed: int) -> list[int]:
        with FakeMicrosoft(seed=seed) as server, requests.Session() as session:
            server.faults.error_rate = 0.3
            server.faults.rate_limit_rate = 0.2
            session.headers["Authorization"] = f"Bearer {server.access_token(ALICE)}"
            return [
                session.get(f"{server.graph_endpoint}/me", timeout=5).status_code for _ in range(20)
            ]

    first = run(3)
    assert first == run(3)
    assert {200, 429} <= set(first)


# ----------------------------------------------------------------------- standalone


def test_runs_standalone_and_prints_settings() -> None:
    """`python -m tests.fakes.microsoft` serves and prints what to configure."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.microsoft", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert f"GRAPH_ENDPOINT={url}/v1.0" in [line.strip() for line in lines]
        config = requests.get(f"{url}/common/v2.0/.well-known/openid-configuration", timeout=5)
        assert config.json()["token_endpoint"].startswith("https://login.microsoftonline.com/")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
