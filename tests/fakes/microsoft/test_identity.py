"""Fake Microsoft identity platform, driven by the real msal."""

from __future__ import annotations

import base64
import json
import urllib.parse

import msal
import pytest
import requests

from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.microsoft.clients import (
    ALICE,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    SCOPES,
    MakeApp,
    sign_in,
)


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
