"""Fixtures for the fake Microsoft's own tests (defined in clients.py)."""

from tests.fakes.microsoft.clients import fake, graph, make_app

__all__ = ["fake", "graph", "make_app"]
