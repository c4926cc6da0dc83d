"""Fake Google's OAuth endpoints, driven by google-auth-oauthlib, google-auth and oauthlib."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import oauthlib.oauth2.rfc6749.errors as oauth_errors
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import id_token
from google_auth_oauthlib.flow import Flow

from tests.fakes.google import (
    SCOPE_CALENDAR,
    SCOPE_EVENTS,
    FakeGoogle,
)
from tests.fakes.google.clients import (
    ALICE,
    CLIENT_ID,
    REDIRECT_URI,
    make_credentials,
    new_flow,
    query_of,
)


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
