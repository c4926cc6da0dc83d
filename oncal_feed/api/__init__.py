"""The JSON API under /api/v1: users, schedules and shifts, and the admin actions
(`admin`, imported by `create_app`: `connections.service` imports this package, and
the admin views import it back), for bearer API keys."""

from oncal_feed.api.views import api_blueprint

__all__ = ["api_blueprint"]
