"""`oncal-feed set-password`, `oncal-feed invite` and `create-user --admin`."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from oncal_feed import accounts
from oncal_feed.db import get_database
from oncal_feed.models import Invitation, User
from tests.conftest import Run
from tests.web.conftest import log_in

PASSWORD = "a long enough password"


def _user(app: Flask, email: str) -> User:
    with get_database(app).session() as session:
        return accounts.get_user_by_email(session, email)


def test_create_user_admin_makes_an_admin(run: Run, app: Flask) -> None:
    """--admin gives the admin role, and says so."""
    result = run("create-user", "ada@example.com", "--name", "Ada", "--admin")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Created admin ada@example.com (")
    assert _user(app, "ada@example.com").role == "admin"


def test_set_password_lets_an_api_made_user_sign_in(run: Run, app: Flask) -> None:
    """The README's Kim: created without a password, then set-password, then sign-in."""
    assert run("create-user", "kim@example.com", "--name", "Kim").exit_code == 0
    result = run("set-password", "Kim@Example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert log_in(app.test_client(), "kim@example.com", PASSWORD).status_code == 303


def test_set_password_refusals(run: Run, app: Flask) -> None:
    """An unknown email fails before asking; a short password is refused; exit 1."""
    unknown = run("set-password", "nobody@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert unknown.exit_code == 1
    assert "nobody@example.com" in unknown.stderr
    assert "New password" not in unknown.output
    assert run("create-user", "kim@example.com", "--name", "Kim").exit_code == 0
    short = run("set-password", "kim@example.com", input="short\nshort\n")
    assert short.exit_code == 1
    assert "Error: password: must be at least 10 characters long" in short.stderr
    assert _user(app, "kim@example.com").password_hash is None


def test_invite_prints_a_working_single_use_link(run: Run, app: Flask) -> None:
    """Only the link goes to stdout; it opens the password page; a new one replaces it."""
    assert run("create-user", "kim@example.com", "--name", "Kim").exit_code == 0
    first = run("invite", "kim@example.com")
    assert first.exit_code == 0, first.output
    url = first.stdout.strip()
    assert url.startswith(f"{app.config['BASE_URL']}/password?token=")
    assert "valid until" in first.stderr
    path = url.removeprefix(app.config["BASE_URL"])
    page = app.test_client().get(path)
    assert page.status_code == 200
    assert "kim@example.com" in page.text
    second = run("invite", "kim@example.com", "--reset")
    assert second.exit_code == 0
    assert app.test_client().get(path).status_code == 404
    reset_path = second.stdout.strip().removeprefix(app.config["BASE_URL"])
    assert "Choose a new password" in app.test_client().get(reset_path).text
    with get_database(app).session() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)) == 2


def test_invite_of_an_unknown_email_writes_nothing(run: Run, app: Flask) -> None:
    """Exit 1 and a message naming the email."""
    result = run("invite", "nobody@example.com")
    assert result.exit_code == 1
    assert "nobody@example.com" in result.stderr
    assert result.stdout == ""
