"""Fixtures for the fake Google's own tests (defined in clients.py)."""

from tests.fakes.google.clients import fake, insecure_transport, service_factory

__all__ = ["fake", "insecure_transport", "service_factory"]
