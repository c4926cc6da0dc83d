"""Fake cloud servers (Google, Microsoft) that the real client libraries can talk to in tests."""
