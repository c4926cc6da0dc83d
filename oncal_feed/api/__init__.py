"""The JSON API under /api/v1: users, schedules and shifts, for bearer API keys."""

from oncal_feed.api.views import api_blueprint

__all__ = ["api_blueprint"]
