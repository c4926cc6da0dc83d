"""Invitation and password-reset links: made, turned into a URL, mailed when configured.

One helper for the admin pages, the admin API and `oncal-feed invite`, so all three make
the same link with the same lifetime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from oncal_feed import accounts
from oncal_feed.mail import send_mail
from oncal_feed.models import User

__all__ = ["LINK_PATH", "MadeLink", "password_link"]

# Where `web.password_form` is served (the CLI has no request to build the URL from).
LINK_PATH = "/password"


@dataclass(frozen=True)
class MadeLink:
    """A fresh password link: the URL (a secret, shown once), when it expires, and
    whether it was mailed."""

    url: str
    kind: str
    expires_at: datetime
    mailed: bool

    @property
    def expires_text(self) -> str:
        """The expiry in UTC, for people."""
        return f"{self.expires_at:%Y-%m-%d %H:%M} UTC"


def password_link(
    session: Session, user: User, kind: str, config: Mapping[str, Any], now: datetime
) -> MadeLink:
    """Make a single-use `kind` ("invite" or "reset") link for `user`, commit it, and mail
    it when SMTP is configured. Older unused links of the user stop working."""
    lifetime = timedelta(hours=int(config["PASSWORD_LINK_HOURS"]))
    link, secret = accounts.create_password_link(session, user, kind, now, lifetime)
    session.commit()
    url = f"{config['BASE_URL']}{LINK_PATH}?{urlencode({'token': secret})}"
    made = MadeLink(url=url, kind=kind, expires_at=link.expires_at, mailed=False)
    if kind == "reset":
        subject = "Reset your oncal-feed password"
        text = f"Hello {user.display_name},\n\nchoose a new password for oncal-feed here:\n"
    else:
        subject = "You are invited to oncal-feed"
        text = (
            f"Hello {user.display_name},\n\nyou can now see your on-call shifts in oncal-feed "
            "and put them into your calendar. Choose your password here:\n"
        )
    text += f"\n{url}\n\nThe link works once, until {made.expires_text}.\n"
    mailed = send_mail(config, user.email, subject, text)
    return MadeLink(url=url, kind=kind, expires_at=link.expires_at, mailed=mailed)
