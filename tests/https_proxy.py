"""An HTTPS proxy on 127.0.0.1 that hands chosen https:// hosts to local fake servers.

Why: msal accepts only an `https://<host>/<tenant>` authority, and outside of this
process the fake Microsoft can only be reached through an injected `http_client`
(`MSAL_CLIENT_OPTIONS`), which an `oncal-feed worker` configured by its environment
alone can't receive. With `HTTPS_PROXY` pointing here and `REQUESTS_CA_BUNDLE` at this
proxy's throwaway CA, the real msal in the real worker talks to the default authority
`https://login.microsoftonline.com`, and this proxy answers the CONNECT itself: it
terminates TLS with a certificate for that host and relays the plain HTTP to the fake.

Any other CONNECT is refused and recorded in `refused`, so a test can also assert that
its child processes tried to reach nothing else over https. Nothing is ever resolved or
dialled outside loopback.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["InterceptingProxy", "make_certificates"]

# A tunnel with no traffic for this long is closed (clients open a new one).
IDLE_SECONDS = 30.0
# How often the relay loops wake up to notice that the proxy was closed.
_POLL = 0.5


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificates(hosts: list[str], folder: Path) -> tuple[Path, Path, Path]:
    """Write a one-day CA and a server certificate for `hosts` signed by it.

    Returns `(ca.pem, server.pem, server.key)`. OpenSSL checks the chain like a real
    one, so the CA carries the extensions a trust anchor needs.
    """
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oncal-feed tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    return paths


class InterceptingProxy:
    """A CONNECT proxy on 127.0.0.1 serving `routes` ("host:443" → local (host, port)).

    Use as a context manager; `environ()` is what a child process needs to use it.
    Counters: `tunnels` (TLS sessions relayed), `refused` (CONNECT lines turned away),
    `errors` (failed TLS handshakes: a client that rejected our certificate).
    """

    def __init__(self, routes: Mapping[str, tuple[str, int]], folder: Path) -> None:
        self.routes = {target.lower(): address for target, address in routes.items()}
        hosts = sorted({target.rsplit(":", 1)[0] for target in self.routes})
        self.ca_path, cert, key = make_certificates(hosts, folder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.tunnels = 0
        self.refused: list[str] = []
        self.errors: list[str] = []

    @property
    def url(self) -> str:
        """The proxy's address, as HTTPS_PROXY takes it."""
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        """Variables that send a child's https:// requests (requests/urllib3) through us.

        Loopback stays direct (NO_PROXY); plain http:// is never proxied (no HTTP_PROXY).
        """
        loopback = "127.0.0.1,localhost,::1"
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "NO_PROXY": loopback,
            "no_proxy": loopback,
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
        }

    def __enter__(self) -> InterceptingProxy:
        """Start accepting."""
        self._spawn(self._accept_loop)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop accepting, end every tunnel, and wait for the threads."""
        self._closed.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        """Read one CONNECT; refuse it or turn the connection into a TLS tunnel."""
        tls: ssl.SSLSocket | None = None
        upstream: socket.socket | None = None
        try:
            client.settimeout(IDLE_SECONDS)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.partition(" ")[0].lower()
            address = self.routes.get(target) if method.upper() == "CONNECT" else None
            if address is None:
                with self._lock:
                    self.refused.append(line)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                tls = self._context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                with self._lock:
                    self.errors.append(f"{target}: TLS handshake failed: {exc}")
                return
            upstream = socket.create_connection(address, timeout=IDLE_SECONDS)
            with self._lock:
                self.tunnels += 1
            self._relay(tls, upstream)
        except OSError:
            pass  # a peer went away: that ends the tunnel, nothing more
        finally:
            for sock in (upstream, tls, client):
                if sock is not None:
                    sock.close()

    def _relay(self, tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Copy bytes both ways in this one thread (an SSL socket must not be shared)."""
        idle = 0.0
        while not self._closed.is_set() and idle < IDLE_SECONDS:
            # Bytes already decrypted and buffered in OpenSSL don't make the socket readable.
            waiting = tls.pending() > 0
            readable = [tls] if waiting else select.select([tls, upstream], [], [], _POLL)[0]
            if not readable:
                idle += _POLL
                continue
            idle = 0.0
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is tls else tls).sendall(data)
