"""The token vault: Fernet at rest, several keys, rotation (also through the CLI)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from oncal_feed import create_app
from oncal_feed.connections.credentials import provider_for
from oncal_feed.connections.vault import TokenVault, VaultError, get_vault, rotate_all
from oncal_feed.db import get_database
from oncal_feed.models import OAuthFlow
from oncal_feed.providers.base import TransientError
from tests.conftest import Run
from tests.connections.flows import authorization_url, connect, connection_row, secrets_in
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """The test app encrypts with the key OLD."""
    return {**app_config, "TOKEN_ENCRYPTION_KEYS": OLD}


def test_round_trip_and_ciphertext_hides_the_content() -> None:
    vault = TokenVault([OLD])
    ciphertext = vault.encrypt({"refresh_token": "1//secret-refresh-token"})
    assert "secret-refresh-token" not in ciphertext
    assert vault.decrypt(ciphertext) == {"refresh_token": "1//secret-refresh-token"}
    # Fernet tokens carry a random IV: the same document never encrypts the same twice.
    assert vault.encrypt({"a": 1}) != vault.encrypt({"a": 1})


def test_wrong_key_or_garbage_is_a_vault_error_without_details() -> None:
    ciphertext = TokenVault([OLD]).encrypt({"refresh_token": "1//secret"})
    for bad in (ciphertext, "not-a-token", ciphertext[:-4] + "AAAA"):
        with pytest.raises(VaultError) as failed:
            TokenVault([NEW]).decrypt(bad)
        assert ciphertext not in str(failed.value)
        assert "secret" not in str(failed.value)


def test_newest_key_encrypts_older_keys_still_decrypt() -> None:
    old_ciphertext = TokenVault([OLD]).encrypt({"n": 1})
    both = TokenVault([NEW, OLD])
    assert both.decrypt(old_ciphertext) == {"n": 1}
    assert TokenVault([NEW]).decrypt(both.encrypt({"n": 2})) == {"n": 2}
    rotated = both.rotate(old_ciphertext)
    assert TokenVault([NEW]).decrypt(rotated) == {"n": 1}


def rotated_app(app_config: dict[str, Any], keys: str) -> Flask:
    """Another app on the same database with different keys."""
    return create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": keys})


def test_rotate_all_rewrites_connections_and_pending_flows(
    app: Flask,
    app_config: dict[str, Any],
    signed_in: FlaskClient,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
    db_session: Session,
) -> None:
    assert connect(signed_in, fake_google, "google").status_code == 200
    assert connect(signed_in, fake_microsoft, "microsoft").status_code == 200
    authorization_url(signed_in, "google")  # a flow left pending
    new_app = rotated_app(app_config, f"{NEW},{OLD}")
    try:
        with get_database(new_app).session() as session:
            result = rotate_all(session, get_vault(new_app))
        assert (result.rotated, result.unreadable) == (3, 0)
        only_new = TokenVault([NEW])
        for provider in ("google", "microsoft"):
            row = connection_row(db_session, provider)
            assert row is not None
            assert row.token_ciphertext
            assert secrets_in(only_new.decrypt(row.token_ciphertext))
        flow = db_session.query(OAuthFlow).one()
        only_new.decrypt(flow.secret_ciphertext)
    finally:
        get_database(new_app).dispose()


def test_a_process_without_the_key_retries_and_drops_no_connection(
    app: Flask,
    app_config: dict[str, Any],
    signed_in: FlaskClient,
    fake_google: FakeGoogle,
    db_session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys missing on one machine are a deployment mistake: syncs there fail and are
    retried (and say why in the log); the user is not asked to reconnect."""
    assert connect(signed_in, fake_google, "google").status_code == 200
    row = connection_row(db_session, "google")
    assert row is not None
    new_app = rotated_app(app_config, NEW)
    try:
        with new_app.app_context(), pytest.raises(TransientError) as failed:
            provider_for(row)
        assert "try again" in str(failed.value)
        assert "reconnect" not in str(failed.value)
        assert f"connection {row.id}: stored credentials can't be decrypted" in caplog.text
        with app.app_context(), provider_for(row):  # a process with the key still can
            pass
    finally:
        get_database(new_app).dispose()


def test_rotating_without_the_old_key_asks_for_a_reconnect(
    signed_in: FlaskClient,
    fake_google: FakeGoogle,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
    run: Run,
) -> None:
    """Run with every key there is, `rotate-token-key` knows unreadable tokens are lost."""
    assert connect(signed_in, fake_google, "google").status_code == 200
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", NEW)  # OLD is gone

    result = run("rotate-token-key")

    assert result.exit_code == 0, result.output
    assert "1 connection(s) now ask their users to reconnect" in result.output
    db_session.expire_all()
    row = connection_row(db_session, "google")
    assert row is not None
    assert row.status == "needs_reauth"
    assert row.last_error is not None
    assert "reconnect the calendar" in row.last_error


def test_rotate_token_key_command(
    signed_in: FlaskClient,
    fake_google: FakeGoogle,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
    run: Run,
) -> None:
    assert connect(signed_in, fake_google, "google").status_code == 200
    row = connection_row(db_session, "google")
    assert row is not None
    assert row.token_ciphertext
    before = row.token_ciphertext
    secrets = secrets_in(TokenVault([OLD]).decrypt(before))
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", f"{NEW},{OLD}")

    result = run("rotate-token-key")

    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 stored secret(s)" in result.output
    assert "no longer needed" in result.output
    for secret in secrets:
        assert secret not in result.output
    row = connection_row(db_session, "google")
    assert row is not None
    assert row.token_ciphertext
    assert row.token_ciphertext != before
    assert secrets_in(TokenVault([NEW]).decrypt(row.token_ciphertext)) == secrets
    with pytest.raises(VaultError):
        TokenVault([OLD]).decrypt(row.token_ciphertext)
