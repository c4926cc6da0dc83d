"""Single sign-on through the product's routes against a fake OIDC issuer on 127.0.0.1.

Each flow is what a browser does: `/login/<provider>` redirects to the issuer's
authorization endpoint; the request to the (real HTTP) fake answers a redirect back with a
code; the test client follows it to the callback, where Authlib exchanges the code (PKCE)
and checks the ID token against the fake's JWKS. Every refusal is checked for its message,
for no account being made and for nobody being signed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from oncal_feed import accounts, create_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import User
from oncal_feed.validation import UserInput
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOIDC

MakeApp = Callable[..., Flask]


@pytest.fixture
def oidc() -> Iterator[FakeOIDC]:
    """A fake issuer with the generic discovery layout."""
    with FakeOIDC() as fake:
        yield fake


@pytest.fixture
def microsoft_oidc() -> Iterator[FakeOIDC]:
    """A fake issuer publishing Microsoft's multi-tenant issuer template."""
    with FakeOIDC(tenant_template=True) as fake:
        yield fake


@pytest.fixture
def make_app(app: Flask, app_config: dict[str, Any], oidc: FakeOIDC) -> Iterator[MakeApp]:
    """Build apps on the test database with the generic issuer and `overrides`.

    Depends on `app` so the tables are emptied after the test, as for every app test.
    """
    built: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        settings = {
            **app_config,
            "SIGNIN_PROVIDERS": "oidc",
            "OIDC_DISCOVERY_URL": oidc.discovery_url,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_LABEL": "Example SSO",
            **overrides,
        }
        application = create_app(settings)
        built.append(application)
        return application

    yield make
    for application in built:
        get_database(application).dispose()


def add_user(app: Flask, email: str = "kim@example.com") -> None:
    """An account without a password, as the API or a source makes them."""
    with get_database(app).session() as session:
        accounts.create_user(session, UserInput(email, "Kim Lee", "Europe/Berlin"), utcnow())


def user_count(app: Flask) -> int:
    with get_database(app).session() as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


def start(client: FlaskClient, provider: str = "oidc", **args: str) -> str:
    """GET /login/<provider>; return the issuer URL the browser is sent to."""
    response = client.get(f"/login/{provider}", query_string=args)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def at_issuer(url: str) -> str:
    """Let the fake issuer sign the person in; return where it sends the browser back."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def back(client: FlaskClient, location: str) -> TestResponse:
    """Follow the issuer's redirect to our callback."""
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}")


def sign_in_flow(client: FlaskClient, provider: str = "oidc") -> TestResponse:
    """One whole sign-in."""
    return back(client, at_issuer(start(client, provider)))


def signed_in(client: FlaskClient) -> bool:
    return client.get("/settings").status_code == 200


def assert_refused(app: Flask, client: FlaskClient, response: TestResponse, words: str) -> None:
    assert response.status_code == 403, response.text
    assert response.mimetype == "text/html"
    assert words in response.text
    assert not signed_in(client)


# ------------------------------------------------------------------ good flows


def test_an_existing_user_signs_in_with_only_openid_email_profile(
    make_app: MakeApp, oidc: FakeOIDC
) -> None:
    """The matching account is signed in; the scopes never include calendar access."""
    app = make_app()
    add_user(app)
    client = app.test_client()
    location = start(client, next="/settings#feed")
    query = parse_qs(urlsplit(location).query)
    assert query["scope"] == ["openid email profile"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"][0]
    assert query["state"][0]
    response = back(client, at_issuer(location))
    assert response.status_code == 303, response.text
    assert response.headers["Location"] == "/settings#feed"
    assert signed_in(client)
    assert oidc.tokens_issued == 1
    assert user_count(app) == 1


def test_the_sign_in_page_offers_the_configured_providers(make_app: MakeApp) -> None:
    """A button per provider, named by its label."""
    page = make_app().test_client().get("/login")
    assert 'id="sso-oidc"' in page.text
    assert "Sign in with Example SSO" in page.text


def test_first_sign_in_creates_the_account_only_when_configured(make_app: MakeApp) -> None:
    """SIGNIN_CREATE_ACCOUNTS makes a member from the verified identity."""
    app = make_app(SIGNIN_CREATE_ACCOUNTS="true")
    client = app.test_client()
    assert sign_in_flow(client).status_code == 303
    with get_database(app).session() as session:
        user = accounts.get_user_by_email(session, "kim@example.com")
        assert (user.display_name, user.role, user.password_hash) == ("Kim Lee", "member", None)


def test_by_default_an_unknown_email_gets_no_account(make_app: MakeApp) -> None:
    """Only people oncal-feed already knows sign in."""
    app = make_app()
    client = app.test_client()
    assert_refused(app, client, sign_in_flow(client), "has no account for kim@example.com")
    assert user_count(app) == 0


def test_google_and_microsoft_use_the_push_sync_clients(
    make_app: MakeApp, oidc: FakeOIDC, microsoft_oidc: FakeOIDC
) -> None:
    """Google by its discovery URL; Microsoft's tenant issuer template is completed by `tid`,
    and its domain-verified email (`xms_edov`) counts as verified."""
    microsoft_oidc.person = {"sub": "ms-1", "email": "kim@example.com", "xms_edov": True}
    app = make_app(
        SIGNIN_PROVIDERS="google,microsoft",
        GOOGLE_CLIENT_ID=CLIENT_ID,
        GOOGLE_CLIENT_SECRET=CLIENT_SECRET,
        GOOGLE_DISCOVERY_URL=oidc.discovery_url,
        MICROSOFT_CLIENT_ID=CLIENT_ID,
        MICROSOFT_CLIENT_SECRET=CLIENT_SECRET,
        MICROSOFT_DISCOVERY_URL=microsoft_oidc.discovery_url,
    )
    add_user(app)
    for provider in ("google", "microsoft"):
        client = app.test_client()
        response = sign_in_flow(client, provider)
        assert response.status_code == 303, response.text
        assert signed_in(client)
    assert "Sign in with Google" in app.test_client().get("/login").text
    assert microsoft_oidc.tokens_issued == 1


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        ({"iss": "https://evil.example"}, "issued by another provider"),
        ({"aud": "someone-else"}, "meant for another application"),
        ({"expired": True}, "it has expired"),
        ({"other_key": True}, "its signature is not valid"),
    ],
    ids=["wrong-issuer", "wrong-audience", "expired", "bad-signature"],
)
def test_an_id_token_that_does_not_verify_is_refused(
    make_app: MakeApp, oidc: FakeOIDC, tamper: dict[str, Any], words: str
) -> None:
    """Issuer, audience, expiry and signature are checked; nobody is signed in or made."""
    app = make_app(SIGNIN_CREATE_ACCOUNTS="true")
    client = app.test_client()
    oidc.tamper = tamper
    response = sign_in_flow(client)
    assert_refused(app, client, response, words)
    assert "could not be verified" in response.text
    assert user_count(app) == 0


def test_a_replayed_nonce_is_refused(make_app: MakeApp, oidc: FakeOIDC) -> None:
    """An ID token minted for an earlier sign-in doesn't finish this one."""
    app = make_app()
    add_user(app)
    first = app.test_client()
    assert sign_in_flow(first).status_code == 303
    old_nonce = oidc.authorizations[-1]["nonce"]
    client = app.test_client()
    oidc.tamper = {"nonce": old_nonce}
    assert_refused(app, client, sign_in_flow(client), "does not belong to this sign-in")


def test_state_from_another_session_is_refused(make_app: MakeApp, oidc: FakeOIDC) -> None:
    """A callback carrying another browser's state (a login CSRF) is refused, and the code
    is never exchanged."""
    app = make_app(SIGNIN_CREATE_ACCOUNTS="true")
    attacker, victim = app.test_client(), app.test_client()
    location = at_issuer(start(attacker))
    start(victim)  # the victim's own flow, with its own state, is under way
    response = back(victim, location)
    assert_refused(app, victim, response, "started in another browser or tab")
    assert oidc.tokens_issued == 0
    # A browser with no flow at all gets the same answer.
    assert_refused(app, app.test_client(), back(app.test_client(), location), "another browser")
    assert user_count(app) == 0


def test_a_callback_is_used_once(make_app: MakeApp) -> None:
    """The state is spent by the first callback: the same URL again is refused."""
    app = make_app()
    add_user(app)
    client = app.test_client()
    location = at_issuer(start(client))
    assert back(client, location).status_code == 303
    client.post("/logout", data={"csrf_token": _token(client)})
    assert_refused(app, client, back(client, location), "another browser")


def _token(client: FlaskClient) -> str:
    from tests.web.conftest import csrf_token

    return csrf_token(client, "/settings")


def test_an_unverified_email_is_refused(make_app: MakeApp, oidc: FakeOIDC) -> None:
    """An email the provider hasn't verified can't be matched to an account."""
    app = make_app(SIGNIN_CREATE_ACCOUNTS="true")
    oidc.person = {**oidc.person, "email_verified": False}
    client = app.test_client()
    assert_refused(app, client, sign_in_flow(client), "has not verified your email address")
    assert user_count(app) == 0


def test_a_disallowed_domain_is_refused(make_app: MakeApp) -> None:
    """SIGNIN_ALLOWED_DOMAINS keeps other domains out, even with an existing account."""
    app = make_app(SIGNIN_ALLOWED_DOMAINS="example.org, @corp.example", SIGNIN_CREATE_ACCOUNTS="1")
    add_user(app)
    client = app.test_client()
    assert_refused(app, client, sign_in_flow(client), "Addresses at example.com")
    assert user_count(app) == 1


def test_declining_at_the_provider_signs_nobody_in(make_app: MakeApp, oidc: FakeOIDC) -> None:
    """access_denied from the issuer is a plain "cancelled"."""
    app = make_app()
    oidc.deny = True
    client = app.test_client()
    assert_refused(app, client, sign_in_flow(client), "was cancelled")


def test_an_unreachable_issuer_is_a_message_not_a_500(make_app: MakeApp) -> None:
    """Discovery failing answers the sign-in page with 503 and words."""
    app = make_app(OIDC_DISCOVERY_URL="http://127.0.0.1:9/.well-known/openid-configuration")
    response = app.test_client().get("/login/oidc")
    assert response.status_code == 503
    assert "could not be reached" in response.text


def test_an_unknown_provider_is_404(make_app: MakeApp) -> None:
    """Only configured providers have routes that do anything."""
    client = make_app().test_client()
    assert client.get("/login/google").status_code == 404
    assert client.get("/login/nope/callback?code=x&state=y").status_code == 404


def test_no_code_or_token_reaches_the_logs(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Codes, states and ID tokens stay out of every log record, refusals included."""
    app = make_app()
    client = app.test_client()
    location = at_issuer(start(client))
    code = parse_qs(urlsplit(location).query)["code"][0]
    with caplog.at_level(logging.DEBUG):
        back(client, location)
    assert code not in caplog.text
    assert "eyJ" not in caplog.text  # no JWT
