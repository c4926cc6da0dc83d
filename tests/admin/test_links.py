"""Password links go out by mail when SMTP is configured: a real SMTP server (aiosmtpd) on
127.0.0.1 receives them through `smtplib`."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from oncal_feed import accounts, create_app
from oncal_feed.admin.links import password_link
from oncal_feed.db import get_database, utcnow
from oncal_feed.errors import ConfigError
from oncal_feed.models import User
from oncal_feed.validation import UserInput
from tests.processes import free_port


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Accept and keep the message (aiosmtpd's handler hook)."""
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server on a free loopback port."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _kim(app: Flask) -> User:
    with get_database(app).session() as session:
        return accounts.create_user(
            session, UserInput("kim@example.com", "Kim Lee", "UTC"), utcnow()
        )


def test_an_invitation_is_mailed_when_smtp_is_set(
    app: Flask, app_config: dict[str, Any], smtp: tuple[Inbox, int]
) -> None:
    """The link is in the message, from SMTP_FROM to the user."""
    inbox, port = smtp
    mailing = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": port,
                          "SMTP_SECURITY": "none", "SMTP_FROM": "oncal@example.test"})  # fmt: skip
    kim = _kim(mailing)
    with get_database(mailing).sessionmaker() as session:
        user = session.get(User, kim.id)
        assert user is not None
        made = password_link(session, user, "invite", mailing.config, utcnow())
    assert made.mailed
    [(recipients, message)] = inbox.messages
    assert recipients == ["kim@example.com"]
    assert message["From"] == "oncal@example.test"
    assert message["Subject"] == "You are invited to oncal-feed"
    assert made.url in message.get_payload(decode=True).decode()
    get_database(mailing).dispose()


def test_without_smtp_nothing_is_sent_and_a_dead_server_is_not_an_error(
    app: Flask, app_config: dict[str, Any]
) -> None:
    """Unset: not mailed. Set but unreachable: not mailed, the link still made."""
    kim = _kim(app)
    with get_database(app).sessionmaker() as session:
        user = session.get(User, kim.id)
        assert user is not None
        assert not password_link(session, user, "reset", app.config, utcnow()).mailed
    broken = create_app({**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": free_port(),
                         "SMTP_SECURITY": "none", "SMTP_FROM": "oncal@example.test"})  # fmt: skip
    with get_database(broken).sessionmaker() as session:
        user = session.get(User, kim.id)
        assert user is not None
        made = password_link(session, user, "reset", broken.config, utcnow())
    assert not made.mailed
    assert made.url.startswith(f"{app.config['BASE_URL']}/password?token=")
    get_database(broken).dispose()


def test_smtp_settings_are_checked(app_config: dict[str, Any]) -> None:
    """A host without a sender, or an unknown security mode, stops start-up with advice."""
    with pytest.raises(ConfigError, match="SMTP_FROM"):
        create_app({**app_config, "SMTP_HOST": "smtp.example.test"})
    with pytest.raises(ConfigError, match="SMTP_SECURITY"):
        create_app({**app_config, "SMTP_SECURITY": "tls1.0"})
