"""Fetching a source over HTTP: SSRF guard, size/time/redirect limits, conditional GET.

Every hop (the first request and each redirect) resolves the host name, refuses the
request when any address it resolves to is loopback, private, link-local, multicast,
reserved or unspecified (unless an operator allow-listed it), and then connects to that
vetted address itself, so a second DNS answer can't swap in another one (DNS rebinding).
Numeric host forms that the C resolver reads as IPv4 (`127.1`, `0x7f000001`,
`017700000001`) are read the same way here before they are checked.

urllib3 does the HTTP; this module only decides where it may connect and how much it may
read. Messages never hold the URL (it is a secret: a feed URL is a credential).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from oncal_feed.providers.base import parse_retry_after
from oncal_feed.sources.errors import AddressRefused, FetchFailed

__all__ = [
    "FetchLimits",
    "Fetched",
    "Network",
    "Resolver",
    "check_address",
    "fetch",
    "normalise_url",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# getaddrinfo's shape: (host, port, family, type) -> [(family, type, proto, name, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_REDIRECTS = (301, 302, 303, 307, 308)
_GONE = (401, 403, 404, 410)
# Hosts made only of these characters may be an IPv4 address in a legacy numeric form.
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+", re.ASCII)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    """How far a fetch may go: bytes read, seconds in all, redirects, allowed networks."""

    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 20.0
    max_redirects: int = 5
    allowed_networks: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Fetched:
    """A fetch's answer: 200 with a body, or 304 (unchanged) with none."""

    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def normalise_url(url: str) -> str:
    """Return `url` with webcal:// read as https://; raise `FetchFailed` unless http(s)."""
    text = url.strip()
    split = urlsplit(text)
    scheme = split.scheme.lower()
    if scheme in ("webcal", "webcals"):
        text = "https" + text[len(split.scheme) :]
        split = urlsplit(text)
        scheme = "https"
    if scheme not in ("http", "https"):
        raise FetchFailed("The address must start with https://, http:// or webcal://.")
    if not split.hostname:
        raise FetchFailed("The address has no host name.")
    return text


def _literal_address(host: str) -> IPAddress | None:
    """The address a numeric host stands for (any form the C resolver accepts), else None."""
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_address(address: IPAddress, allowed: Sequence[Network] = ()) -> None:
    """Raise `AddressRefused` unless `address` is a public unicast one or allow-listed."""
    if any(address in network for network in allowed):
        return
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        check_address(mapped, allowed)
    kind = None
    if address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif address.is_multicast:
        kind = "a multicast address"
    elif address.is_unspecified:
        kind = "an unspecified address"
    elif address.is_private or not address.is_global:
        kind = "a private or reserved address"
    if kind is not None:
        raise AddressRefused(
            f"The feed's address leads to {kind} ({address}); sources may only be fetched "
            "from public addresses (an operator can allow some with SOURCE_ALLOWED_NETWORKS)."
        )


def _vetted_address(host: str, port: int, limits: FetchLimits, resolve: Resolver) -> str:
    """Resolve `host` and return an address to connect to; every address must pass."""
    literal = _literal_address(host)
    if literal is not None:
        check_address(literal, limits.allowed_networks)
        return str(literal)
    try:
        answers = resolve(host, port, 0, socket.SOCK_STREAM)
    except OSError:
        raise FetchFailed("The feed's host name could not be resolved.") from None
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    if not addresses:
        raise FetchFailed("The feed's host name could not be resolved.")
    for address in addresses:
        check_address(address, limits.allowed_networks)
    return str(addresses[0])


def fetch(
    url: str,
    *,
    limits: FetchLimits,
    headers: Mapping[str, str] | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> Fetched:
    """GET `url` within `limits`, following redirects; return a 200 body or a 304.

    Raises `AddressRefused` for a forbidden address (first hop or any redirect) and
    `FetchFailed` for everything else that went wrong (its `retry_after` set from a 429 or
    503's Retry-After).
    """
    deadline = time.monotonic() + limits.timeout
    current = normalise_url(url)
    for _hop in range(limits.max_redirects + 1):
        response = _request(current, headers or {}, limits, deadline, resolve)
        try:
            if response.status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(
                        f"The feed answered a redirect (HTTP {response.status}) without a Location."
                    )
                current = normalise_url(urljoin(current, location))
                continue
            return _answer(response, limits, deadline)
        finally:
            response.release_conn()
    raise FetchFailed(f"The feed redirected more than {limits.max_redirects} times.")


def _request(
    url: str,
    headers: Mapping[str, str],
    limits: FetchLimits,
    deadline: float,
    resolve: Resolver,
) -> urllib3.BaseHTTPResponse:
    """Send one GET to the vetted address of `url`'s host (no redirects followed)."""
    split = urlsplit(url)
    host = split.hostname or ""
    https = split.scheme == "https"
    port = split.port or (443 if https else 80)
    address = _vetted_address(host, port, limits, resolve)
    remaining = max(0.1, deadline - time.monotonic())
    timeout = urllib3.Timeout(connect=min(remaining, 10.0), read=remaining)
    pool: urllib3.HTTPConnectionPool
    if https:
        # Connect to the vetted address, but check the certificate against the name.
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=host,
            assert_hostname=host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    default_port = 443 if https else 80
    sent = {
        "Host": host if port == default_port else f"{host}:{port}",
        "User-Agent": "oncal-feed (schedule source)",
        "Accept": "text/calendar, application/json;q=0.9, */*;q=0.5",
        "Accept-Encoding": "gzip, deflate",
        **headers,
    }
    target = split.path or "/"
    if split.query:
        target += "?" + split.query
    try:
        return pool.urlopen(
            "GET",
            target,
            headers=sent,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
    except Urllib3Error as exc:
        raise FetchFailed(_network_words(exc)) from None


def _network_words(exc: Exception) -> str:
    name = type(exc).__name__
    if "Timeout" in name:
        return "The feed did not answer in time."
    if "SSL" in name:
        return "The feed's TLS certificate could not be verified."
    return "The feed could not be reached (connection failed)."


def _answer(response: urllib3.BaseHTTPResponse, limits: FetchLimits, deadline: float) -> Fetched:
    """Turn a non-redirect response into `Fetched`, reading at most `max_bytes`."""
    status = response.status
    if status == 304:
        return Fetched(304)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        words = "asked us to slow down" if status == 429 else "failed on its side"
        raise FetchFailed(f"The feed {words} (HTTP {status}).", retry_after=retry_after)
    if status != 200:
        hint = " (the link or key may have expired or been revoked)" if status in _GONE else ""
        raise FetchFailed(f"The feed answered HTTP {status}{hint}.")
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchFailed(f"The feed is larger than the limit of {limits.max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.stream(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchFailed(f"The feed is larger than the limit of {limits.max_bytes} bytes.")
            if time.monotonic() > deadline:
                raise FetchFailed("The feed did not answer in time.")
            chunks.append(chunk)
    except Urllib3Error as exc:
        if "Timeout" in type(exc).__name__:
            raise FetchFailed("The feed did not answer in time.") from None
        raise FetchFailed("The feed's answer was cut off before its end.") from None
    return Fetched(
        200,
        b"".join(chunks),
        content_type=response.headers.get("Content-Type", ""),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
    )
