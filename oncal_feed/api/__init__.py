"""The JSON API under /api/v1: users, schedules, shifts and sources, for bearer API keys."""

from oncal_feed.api import sources as _sources  # noqa: F401 (registers the source routes)
from oncal_feed.api.views import api_blueprint

__all__ = ["api_blueprint"]
