"""The provider registry: every entry is complete and everything reads it."""

from __future__ import annotations

import importlib
import inspect

from oncal_feed.connections.errors import ProviderNotConfigured
from oncal_feed.connections.oauth import OAuthClient, oauth_client
from oncal_feed.connections.service import configured_providers
from oncal_feed.metrics import _provider
from oncal_feed.providers.demo import DemoCalendarProvider
from oncal_feed.providers.google import GoogleCalendarProvider
from oncal_feed.providers.graph import GraphCalendarProvider
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.providers.registry import PROVIDERS, provider_info, provider_names
from oncal_feed.web.page import PROVIDER_LABELS


def test_each_entry_names_an_oauth_module_with_every_function_of_the_protocol() -> None:
    """start, exchange, build_adapter and revoke_grant, with the protocol's parameters."""
    wanted = {
        name: list(inspect.signature(getattr(OAuthClient, name)).parameters)[1:]
        for name in ("start", "exchange", "build_adapter", "revoke_grant")
    }
    for info in PROVIDERS:
        module = importlib.import_module(info.oauth_module)
        assert oauth_client(info.name) is module
        for name, parameters in wanted.items():
            assert list(inspect.signature(getattr(module, name)).parameters) == parameters


def test_names_are_unique_and_looked_up() -> None:
    """One entry per name; unknown names are None."""
    assert len(set(provider_names())) == len(PROVIDERS) == 3
    assert provider_info("google") is PROVIDERS[0]
    assert provider_info("memory") is None


def test_settings_page_metrics_and_messages_follow_the_registry() -> None:
    """Labels, configured flags, metric labels and setup messages come from the entries."""
    assert PROVIDER_LABELS == {
        "google": "Google Calendar", "microsoft": "Outlook", "demo": "Demo calendar",
    }  # fmt: skip
    config = {"GOOGLE_CONFIGURED": True, "MICROSOFT_CONFIGURED": False}
    assert configured_providers(config) == {"google": True, "microsoft": False, "demo": False}
    assert [_provider(name) for name in ("google", "microsoft", "demo", "memory", None)] == [
        "google", "microsoft", "demo", "other", "unknown",
    ]  # fmt: skip
    assert "Outlook (Microsoft 365) is not set up" in ProviderNotConfigured("microsoft").message


def test_client_chosen_ids_is_a_capability_of_the_adapter() -> None:
    """Google (and the in-memory provider that mimics it) choose ids; Graph does not."""
    assert GoogleCalendarProvider.client_chosen_ids is True
    assert MemoryProvider.client_chosen_ids is True
    assert DemoCalendarProvider.client_chosen_ids is True
    assert GraphCalendarProvider.client_chosen_ids is False
