"""Sending mail through the operator's SMTP server, when one is configured.

No mail server is assumed: without `SMTP_HOST` nothing is sent and callers show the
link to whoever asked for it. Messages never go to the log; failures are logged by type.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

__all__ = ["mail_configured", "send_mail"]

log = logging.getLogger(__name__)


def mail_configured(config: Mapping[str, Any]) -> bool:
    """Whether an SMTP server is configured."""
    return bool(config.get("SMTP_HOST"))


def send_mail(config: Mapping[str, Any], to: str, subject: str, text: str) -> bool:
    """Send a plain-text message; return whether the server accepted it."""
    if not mail_configured(config):
        return False
    message = EmailMessage()
    message["From"] = config["SMTP_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    host, port = str(config["SMTP_HOST"]), int(config["SMTP_PORT"])
    timeout = float(config["PROVIDER_TIMEOUT"])
    security = config["SMTP_SECURITY"]
    try:
        smtp: smtplib.SMTP
        if security == "ssl":
            smtp = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.get("SMTP_USERNAME"):
                smtp.login(str(config["SMTP_USERNAME"]), str(config.get("SMTP_PASSWORD") or ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail to a user could not be sent: %s", type(exc).__name__)
        return False
    return True
