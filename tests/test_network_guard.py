"""The loopback guard really refuses outside connections."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import OutsideConnection, _violations


def test_outside_address_is_refused() -> None:
    """Connecting to a public address raises before any packet leaves."""
    start = len(_violations)
    with socket.socket() as sock, pytest.raises(OutsideConnection):
        sock.connect(("192.0.2.1", 443))
    # The autouse fixture would fail this test; forget the deliberate violation.
    del _violations[start:]


def test_outside_name_lookup_is_refused() -> None:
    """Resolving a public host name is refused too (no DNS traffic)."""
    start = len(_violations)
    with pytest.raises(OutsideConnection):
        socket.getaddrinfo("www.googleapis.com", 443)
    del _violations[start:]


def test_loopback_is_allowed() -> None:
    """A server on 127.0.0.1 can be reached."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
