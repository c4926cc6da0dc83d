"""Alembic migrations; installed as `oncal_feed.migrations` (see pyproject.toml)."""
