"""Configuration: where settings come from, what production refuses, what demo mode makes."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from oncal_feed import create_app
from oncal_feed.config import load_config
from oncal_feed.errors import ConfigError

GOOD_KEY = Fernet.generate_key().decode()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No oncal settings in the environment, and an empty working directory (no .env)."""
    from oncal_feed.config import DEFAULTS

    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def load(instance: Path, overrides: dict[str, Any] | None = None, **environ: str) -> dict:
    """load_config with an explicit environment and no .env file."""
    return load_config(instance, overrides, environ=environ, dotenv_path=instance / "absent.env")


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    """The message says what is missing and how to make a key."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "instance")
    message = str(caught.value)
    assert "SECRET_KEY is not set" in message
    assert "secrets.token_urlsafe" in message
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_create_app_in_production_refuses_too(clean_env: Path, tmp_path: Path) -> None:
    """The same refusal through create_app, with nothing set anywhere."""
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"INSTANCE_PATH": str(tmp_path / "instance")})


def test_production_with_a_provider_needs_an_encryption_key(tmp_path: Path) -> None:
    """OAuth tokens must never be stored unencrypted or with a throwaway key."""
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEYS"):
        load(tmp_path, SECRET_KEY="s" * 40, GOOGLE_CLIENT_ID="id.apps.googleusercontent.com")


def test_demo_mode_generates_keys_once_and_keeps_them(tmp_path: Path) -> None:
    """Secret key and token key are made on first start, owner-only, and reused after."""
    instance = tmp_path / "instance"
    first = load(instance, ONCAL_MODE="demo")
    secret_file, token_file = instance / "secret_key", instance / "token_key"
    for path in (secret_file, token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert first["SECRET_KEY"] == secret_file.read_text().strip()
    assert len(first["SECRET_KEY"]) >= 48
    assert first["TOKEN_ENCRYPTION_KEYS"] == [token_file.read_text().strip()]
    Fernet(first["TOKEN_ENCRYPTION_KEYS"][0])

    second = load(instance, ONCAL_MODE="demo")
    assert second["SECRET_KEY"] == first["SECRET_KEY"]
    assert second["TOKEN_ENCRYPTION_KEYS"] == first["TOKEN_ENCRYPTION_KEYS"]


def test_generated_secret_survives_a_concurrent_first_start(tmp_path: Path) -> None:
    """Two workers starting at once must agree on one key, not crash or split.

    The other worker wins the race: it writes the file between our check and our write.
    """
    instance = tmp_path / "instance"
    instance.mkdir()

    def racing_token_urlsafe(_n: int) -> str:
        (instance / "secret_key").write_text("the-other-workers-secret\n")
        return "our-secret"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("oncal_feed.config.secrets.token_urlsafe", racing_token_urlsafe)
        settings = load(instance, ONCAL_MODE="demo")
    assert settings["SECRET_KEY"] == "the-other-workers-secret"


def test_empty_generated_secret_is_refused(tmp_path: Path) -> None:
    """An empty key file (a crash mid-write) must not become an empty signing key."""
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="secret_key"):
        load(instance, ONCAL_MODE="demo")


@pytest.mark.parametrize(
    ("keys", "entry"),
    [
        ("not-a-key", 1),
        (f"{GOOD_KEY},short", 2),
        (base64.urlsafe_b64encode(b"k" * 16).decode(), 1),
        ("ünïcode-key", 1),
    ],
    ids=["garbage", "second-bad", "16-bytes", "non-ascii"],
)
def test_bad_token_encryption_keys_are_rejected(tmp_path: Path, keys: str, entry: int) -> None:
    """Every entry must be a Fernet key; the message says which one is not."""
    with pytest.raises(ConfigError, match=f"entry {entry} is not a valid Fernet key"):
        load(tmp_path, SECRET_KEY="s" * 40, TOKEN_ENCRYPTION_KEYS=keys)


def test_token_encryption_keys_are_a_list_newest_first(tmp_path: Path) -> None:
    """Comma-separated keys (spaces allowed) become a list, order kept for rotation."""
    old = Fernet.generate_key().decode()
    settings = load(tmp_path, SECRET_KEY="s" * 40, TOKEN_ENCRYPTION_KEYS=f" {GOOD_KEY} , {old}")
    assert settings["TOKEN_ENCRYPTION_KEYS"] == [GOOD_KEY, old]


@pytest.mark.parametrize(
    ("name", "value"),
    [("ONCAL_MODE", "staging"), ("MAX_CONTENT_LENGTH", "1MB"), ("TRUSTED_PROXY_COUNT", "x")],
)
def test_bad_values_are_rejected(tmp_path: Path, name: str, value: str) -> None:
    """Unknown modes and non-numbers are refused with the setting's name."""
    with pytest.raises(ConfigError, match=name):
        load(tmp_path, SECRET_KEY="s" * 40, **{name: value})


def test_dotenv_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    """.env fills in settings; the process environment wins over it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "SECRET_KEY=from-dotenv-" + "x" * 30 + "\n"
        "BASE_URL=https://dotenv.example/\n"
        "MAX_CONTENT_LENGTH=2048\n"
        "NOT_OURS=ignored\n"
    )
    settings = load_config(
        tmp_path / "instance",
        environ={"BASE_URL": "https://env.example", "UNRELATED": "x"},
        dotenv_path=dotenv,
    )
    assert settings["SECRET_KEY"].startswith("from-dotenv-")
    assert settings["BASE_URL"] == "https://env.example"
    assert settings["MAX_CONTENT_LENGTH"] == 2048
    assert "NOT_OURS" not in settings
    assert "UNRELATED" not in settings


def test_create_app_reads_dotenv_and_environment_and_its_overrides_win(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Priority through create_app: overrides > environment > .env (in the working dir)."""
    (clean_env / ".env").write_text(
        "SECRET_KEY=dotenv-secret-" + "x" * 30 + "\n"
        "BASE_URL=https://dotenv.example\n"
        "LOG_FORMAT=json\n"
        f"DATABASE_URL=sqlite:///{tmp_path / 'dotenv.sqlite'}\n"
    )
    monkeypatch.setenv("BASE_URL", "https://env.example")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "4096")
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path / "instance"), "MAX_CONTENT_LENGTH": 100, "TESTING": True}
    )
    assert app.config["SECRET_KEY"].startswith("dotenv-secret-")
    assert app.config["LOG_FORMAT"] == "json"
    assert app.config["BASE_URL"] == "https://env.example"
    assert app.config["MAX_CONTENT_LENGTH"] == 100
    assert app.instance_path == str(tmp_path / "instance")


def test_empty_environment_values_do_not_override(tmp_path: Path) -> None:
    """`SECRET_KEY=` in the environment counts as unset, so the .env value stays."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("SECRET_KEY=" + "d" * 40 + "\n")
    settings = load_config(tmp_path, environ={"SECRET_KEY": ""}, dotenv_path=dotenv)
    assert settings["SECRET_KEY"] == "d" * 40


def test_derived_defaults(tmp_path: Path) -> None:
    """Database and queue default into the instance folder; cookies follow BASE_URL."""
    settings = load(tmp_path, SECRET_KEY="s" * 40, BASE_URL="https://oncal.example/")
    assert settings["DATABASE_URL"] == f"sqlite:///{tmp_path / 'oncal-feed.sqlite'}"
    assert settings["QUEUE_URL"] == f"sqlite:///{tmp_path / 'queue.sqlite'}"
    assert settings["BASE_URL"] == "https://oncal.example"
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["MAX_CONTENT_LENGTH"] == 1_048_576
    plain = load(tmp_path, SECRET_KEY="s" * 40, BASE_URL="http://127.0.0.1:8000")
    assert plain["SESSION_COOKIE_SECURE"] is False


def test_sign_in_settings_are_normalised(tmp_path: Path) -> None:
    """Providers and domains become lists; the account-creation flag a boolean; Microsoft's
    discovery URL follows the authority and tenant."""
    settings = load(
        tmp_path,
        SECRET_KEY="s" * 40,
        SIGNIN_PROVIDERS=" OIDC, microsoft ",
        OIDC_DISCOVERY_URL="https://sso.example/.well-known/openid-configuration",
        OIDC_CLIENT_ID="c",
        OIDC_CLIENT_SECRET="s",
        MICROSOFT_CLIENT_ID="m",
        MICROSOFT_CLIENT_SECRET="ms",
        MICROSOFT_TENANT_ID="organizations",
        SIGNIN_ALLOWED_DOMAINS="@Example.com, corp.example",
        SIGNIN_CREATE_ACCOUNTS="yes",
        TOKEN_ENCRYPTION_KEYS=GOOD_KEY,
    )
    assert settings["SIGNIN_PROVIDERS"] == ["oidc", "microsoft"]
    assert settings["SIGNIN_ALLOWED_DOMAINS"] == ["example.com", "corp.example"]
    assert settings["SIGNIN_CREATE_ACCOUNTS"] is True
    assert settings["MICROSOFT_DISCOVERY_URL"] == (
        "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
    )
    assert load(tmp_path, SECRET_KEY="s" * 40)["SIGNIN_CREATE_ACCOUNTS"] is False


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"SIGNIN_PROVIDERS": "github"}, "not github"),
        ({"SIGNIN_PROVIDERS": "google"}, "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set"),
        ({"SIGNIN_PROVIDERS": "oidc", "OIDC_CLIENT_ID": "c", "OIDC_CLIENT_SECRET": "s"},
         "OIDC_DISCOVERY_URL is not set"),
        ({"SIGNIN_CREATE_ACCOUNTS": "maybe"}, "SIGNIN_CREATE_ACCOUNTS must be true or false"),
        ({"PASSWORD_LINK_HOURS": "0"}, "PASSWORD_LINK_HOURS must be at least 1"),
        ({"SYNC_LEASE_SECONDS": "50"}, "SYNC_LEASE_SECONDS must be at least twice PROVIDER"),
        ({"SYNC_RETRY_SECONDS": "-1"}, "SYNC_RETRY_SECONDS must be 0 or more"),
    ],
)  # fmt: skip
def test_bad_sign_in_settings_are_refused(
    tmp_path: Path, environ: dict[str, str], words: str
) -> None:
    """Each mistake is named with what to set."""
    with pytest.raises(ConfigError, match=words):
        load(tmp_path, SECRET_KEY="s" * 40, **environ)
