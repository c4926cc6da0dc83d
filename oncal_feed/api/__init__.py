"""The JSON API under /api/v1: users, schedules, shifts and sources, and the admin actions
(`admin` and `sources`, imported by `create_app`: `connections.service` imports this
package, and those views import it back), for bearer API keys."""

from oncal_feed.api.views import api_blueprint

__all__ = ["api_blueprint"]
