"""Every test here runs against an app whose Google and Microsoft are the fakes."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """The shared test settings, pointed at the fake Google and Microsoft servers."""
    return {**app_config, **oauth_settings}
