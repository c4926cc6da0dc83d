"""The guarded fetch: SSRF refusals after DNS resolution, limits, redirects, conditional GET."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from oncal_feed.sources.errors import AddressRefused, FetchFailed
from oncal_feed.sources.fetch import FetchLimits, fetch, normalise_url
from tests.sources.feed_server import FeedServer

CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n"
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)
STRICT = FetchLimits(timeout=2)


def resolver(table: dict[str, str]) -> Any:
    """A resolver with getaddrinfo's shape, answering from `table` (no real DNS)."""

    def resolve(host: str, port: int, *_args: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        address = table[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1/feed.ics", "loopback"),
        ("http://127.1/feed.ics", "loopback"),
        ("http://0x7f000001/feed.ics", "loopback"),
        ("http://017700000001/feed.ics", "loopback"),
        ("http://2130706433/feed.ics", "loopback"),
        ("http://[::1]/feed.ics", "loopback"),
        ("http://[::ffff:127.0.0.1]/feed.ics", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/feed.ics", "link-local"),
        ("http://10.0.0.5/feed.ics", "private"),
        ("http://192.168.1.10/feed.ics", "private"),
        ("http://100.64.0.1/feed.ics", "private"),
        ("http://224.0.0.1/feed.ics", "multicast"),
        ("http://0.0.0.0/feed.ics", "unspecified"),
        ("webcal://127.0.0.1/feed.ics", "loopback"),
    ],
)
def test_forbidden_address_forms_are_refused(url: str, words: str) -> None:
    """Every spelling of a forbidden address is refused before any connection, clearly."""
    with pytest.raises(AddressRefused) as caught:
        fetch(url, limits=STRICT, resolve=resolver({}))
    assert words in caught.value.problem
    assert "feed.ics" not in caught.value.problem
    assert "meta-data" not in caught.value.problem


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    """The check runs on what DNS answers, not on the name."""
    resolve = resolver({"oncall.intranet.example": "10.20.30.40"})
    with pytest.raises(AddressRefused, match=r"private .*10\.20\.30\.40"):
        fetch("https://oncall.intranet.example/feed.ics", limits=STRICT, resolve=resolve)


def test_a_name_with_any_forbidden_address_is_refused() -> None:
    """One public and one loopback answer: refused (the connection could use either)."""

    def resolve(host: str, port: int, *_args: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    with pytest.raises(AddressRefused, match="loopback"):
        fetch("https://feeds.example.test/x.ics", limits=STRICT, resolve=resolve)


def test_a_redirect_to_loopback_is_refused() -> None:
    """The allowed server redirects to another loopback address: refused at the redirect."""
    with FeedServer() as server:
        server.redirect("/feed.ics", f"http://127.0.0.2:{server.port}/other.ics")
        limits = FetchLimits(timeout=2, allowed_networks=LOOPBACK)
        with pytest.raises(AddressRefused, match=r"loopback .*127\.0\.0\.2"):
            fetch(server.url("/feed.ics"), limits=limits)
        assert server.statuses("/feed.ics") == [302]


def test_a_redirect_to_a_name_resolving_to_metadata_is_refused() -> None:
    """A redirect to a name is resolved and checked like the first hop."""
    with FeedServer() as server:
        server.redirect("/feed.ics", "http://metadata.example.test/computeMetadata/v1/")
        limits = FetchLimits(timeout=2, allowed_networks=LOOPBACK)
        resolve = resolver({"127.0.0.1": "127.0.0.1", "metadata.example.test": "169.254.169.254"})
        with pytest.raises(AddressRefused, match="link-local"):
            fetch(server.url("/feed.ics"), limits=limits, resolve=resolve)


def test_allow_list_lets_an_on_premise_name_through() -> None:
    """SOURCE_ALLOWED_NETWORKS: a name resolving to an allowed address is fetched from it."""
    with FeedServer() as server:
        server.put("/feed.ics", CALENDAR)
        limits = FetchLimits(timeout=2, allowed_networks=LOOPBACK)
        resolve = resolver({"oncall.corp.example": "127.0.0.1"})
        got = fetch(
            f"http://oncall.corp.example:{server.port}/feed.ics", limits=limits, resolve=resolve
        )
        assert got.status == 200
        assert got.body == CALENDAR


def test_only_http_and_https_and_webcal_is_https() -> None:
    """webcal:// is read as https://; other schemes are refused."""
    assert normalise_url("webcal://ics.example.com/a.ics") == "https://ics.example.com/a.ics"
    assert normalise_url("WEBCAL://ics.example.com/a.ics") == "https://ics.example.com/a.ics"
    for url in ("ftp://example.com/a.ics", "file:///etc/passwd", "gopher://x/", "//x/a"):
        with pytest.raises(FetchFailed, match="https://"):
            normalise_url(url)


def test_conditional_get_answers_304() -> None:
    """ETag and Last-Modified come back; sending them gets a 304 with no body."""
    with FeedServer() as server:
        server.put("/feed.ics", CALENDAR)
        limits = FetchLimits(timeout=2, allowed_networks=LOOPBACK)
        first = fetch(server.url("/feed.ics"), limits=limits)
        assert first.etag
        assert first.last_modified
        again = fetch(server.url("/feed.ics"), limits=limits, headers={"If-None-Match": first.etag})
        assert again.status == 304
        assert again.body == b""


def test_limits_size_time_and_redirects() -> None:
    """Too big, too slow, cut off, or too many redirects: refused with plain words."""
    with FeedServer() as server:
        server.put("/feed.ics", CALENDAR * 100)
        server.big_bytes = 4096
        limits = FetchLimits(max_bytes=2048, timeout=1, allowed_networks=LOOPBACK)
        server.fault("/feed.ics", "big")
        with pytest.raises(FetchFailed, match="larger than the limit of 2048 bytes"):
            fetch(server.url("/feed.ics"), limits=limits)
        server.slow_seconds = 2
        server.fault("/feed.ics", "slow")
        with pytest.raises(FetchFailed, match="did not answer in time"):
            fetch(server.url("/feed.ics"), limits=limits)
        server.fault("/feed.ics", "truncate")
        with pytest.raises(FetchFailed, match="cut off"):
            fetch(server.url("/feed.ics"), limits=FetchLimits(timeout=2, allowed_networks=LOOPBACK))
        for hop in range(7):
            server.redirect(f"/r{hop}", f"/r{hop + 1}")
        with pytest.raises(FetchFailed, match="more than 5 times"):
            fetch(server.url("/r0"), limits=FetchLimits(timeout=2, allowed_networks=LOOPBACK))


def test_errors_carry_retry_after() -> None:
    """429 and 503 keep the server's Retry-After for the back-off."""
    with FeedServer() as server:
        server.put("/feed.ics", CALENDAR)
        server.retry_after = 120
        server.fault("/feed.ics", "429")
        limits = FetchLimits(timeout=2, allowed_networks=LOOPBACK)
        with pytest.raises(FetchFailed, match="slow down") as caught:
            fetch(server.url("/feed.ics"), limits=limits)
        assert caught.value.retry_after == 120
        with pytest.raises(FetchFailed, match="HTTP 404"):
            fetch(server.url("/missing.ics"), limits=limits)
