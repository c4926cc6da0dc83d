"""The JSON API under /api/v1: users, schedules, shifts and sources, and the admin actions
(`admin` and `sources`, registered by `create_app`), for bearer API keys.

May import: the core (db, models, errors, validation, accounts, shifts, notify, query),
`sources`, `admin`, and `connections.service` / `connections.vault` for the admin views.
"""

from oncal_feed.api.views import api_blueprint

__all__ = ["api_blueprint"]
