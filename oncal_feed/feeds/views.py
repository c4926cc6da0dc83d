"""The feed endpoint (being written)."""

from __future__ import annotations

from flask import Blueprint

__all__ = ["feeds_blueprint"]

feeds_blueprint = Blueprint("feeds", __name__)
