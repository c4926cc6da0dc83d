"""Errors of the connect / callback / disconnect flows, with the words shown to the user.

Every message here is written for the person connecting a calendar and never contains a
token, code, verifier or state value. The blueprint in `views.py` turns them into JSON.
"""

from __future__ import annotations

from oncal_feed.errors import OncalError
from oncal_feed.providers.registry import provider_info

__all__ = ["OAuthError", "ProviderNotConfigured", "UpstreamError"]


class OAuthError(OncalError):
    """A connect or callback step was refused; `code` names the problem for clients."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


class ProviderNotConfigured(OAuthError):
    """The server has no OAuth client for this provider."""

    status = 409

    def __init__(self, provider: str) -> None:
        info = provider_info(provider)
        label = info.setup_label if info is not None else provider
        super().__init__(
            "provider_not_configured",
            f"{label} is not set up on this server; ask the administrator to configure it.",
        )
        self.provider = provider


class UpstreamError(OAuthError):
    """Google or Microsoft failed or could not be reached; trying again later may work."""

    status = 502
