"""Every calendar provider a user can connect, in one place.

An entry names the provider (the value of `calendar_connections.provider` and of the
`/api/calendar/<provider>/...` URLs), says how people call it, which setting tells that
the server has an OAuth client for it, and which module carries out its OAuth flow and
builds its adapter (an `oncal_feed.connections.oauth.OAuthClient`). What the adapter can
do is an attribute of the adapter itself (`CalendarProvider.client_chosen_ids`).

Adding a provider: an adapter in `providers/`, an OAuth module in `connections/`, and an
entry here. Everything else (connect, callback, disconnect, syncing, metrics labels, the
settings page) reads this registry.

A leaf: it imports nothing of the package. The OAuth module is named, not imported, so
`providers` never imports `connections` (which imports `providers`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROVIDERS", "ProviderInfo", "provider_info", "provider_names"]


@dataclass(frozen=True)
class ProviderInfo:
    """One connectable calendar provider."""

    name: str
    label: str  # on the settings page and in sync messages: "Google Calendar"
    setup_label: str  # in messages to administrators: "Outlook (Microsoft 365)"
    configured_setting: str  # config key that is true when an OAuth client is set up
    oauth_module: str  # the module implementing `connections.oauth.OAuthClient`
    # Whether a grant can be revoked at the provider (Microsoft has no endpoint for it).
    revocable: bool
    # Shown on the settings page only where it is configured (the demo calendar exists
    # only in demo mode; elsewhere a disabled card for it would only confuse).
    listed_only_when_configured: bool = False
    # Where a person removes one of their calendars by hand (the provider's own settings
    # page), for notices about a calendar we could not remove ourselves; None: no such page.
    calendar_settings: tuple[str, str] | None = None


# In the order the settings page shows them.
PROVIDERS: tuple[ProviderInfo, ...] = (
    ProviderInfo(
        name="google",
        label="Google Calendar",
        setup_label="Google Calendar",
        configured_setting="GOOGLE_CONFIGURED",
        oauth_module="oncal_feed.connections.google",
        revocable=True,
        calendar_settings=(
            "Google Calendar's settings",
            "https://calendar.google.com/calendar/r/settings",
        ),
    ),
    ProviderInfo(
        name="microsoft",
        label="Outlook",
        setup_label="Outlook (Microsoft 365)",
        configured_setting="MICROSOFT_CONFIGURED",
        oauth_module="oncal_feed.connections.microsoft",
        revocable=False,
        calendar_settings=("Outlook's calendar list", "https://outlook.live.com/calendar/"),
    ),
    ProviderInfo(
        name="demo",
        label="Demo calendar",
        setup_label="The demo calendar (demo mode only)",
        configured_setting="DEMO_CALENDAR_CONFIGURED",
        oauth_module="oncal_feed.connections.demo",
        revocable=True,
        listed_only_when_configured=True,
    ),
)
_BY_NAME = {info.name: info for info in PROVIDERS}


def provider_info(name: str) -> ProviderInfo | None:
    """The provider called `name`, or None when there is none."""
    return _BY_NAME.get(name)


def provider_names() -> tuple[str, ...]:
    """Every provider's name, in display order."""
    return tuple(_BY_NAME)
