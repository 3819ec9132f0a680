"""The SSRF guard against a canary: a listener on 127.0.0.1 that counts every
connection it gets. Each address form that leads to it must be refused
before connecting, directly and through a redirect, and a name that resolves
differently the second time (DNS rebinding) must not reach it either."""

import asyncio
import socket
import threading

import pytest

from flows.fetch import Fetcher
from flows.settings import FetchSettings
from tests.httpserver import LocalServer
from transforms.errors import FetchError


class Canary:
    """A TCP listener that accepts, counts and hangs up."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.sock = socket.socket()
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def canary():
    c = Canary()
    yield c
    c.close()


# Every one of these leads to 127.0.0.1 (or is loopback itself).
FORMS = [
    "127.0.0.1", "localhost", "[::1]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",  # IPv4-mapped: an IPv6 socket reaches 127.0.0.1
    "[::127.0.0.1]",  # IPv4-compatible
    "[64:ff9b::7f00:1]",  # NAT64 well-known prefix
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1 (inverted)
    "0.0.0.0", "[::]",
]
NUMERIC = ["0177.0.0.1", "2130706433", "0x7f.0.0.1", "127.1"]  # 127.0.0.1 to some parsers


def _settings(**kw) -> FetchSettings:
    return FetchSettings(per_host_delay_s=0, retry_backoff_s=0.01, timeout_s=2, total_timeout_s=5, retries=0, **kw)


def _error(url: str, settings: FetchSettings) -> FetchError:
    async def go():
        async with Fetcher(settings) as f:
            return await f.get(url)

    with pytest.raises(FetchError) as info:
        asyncio.run(go())
    return info.value


@pytest.mark.parametrize("host", FORMS)
def test_address_forms_never_reach_the_canary(canary, host):
    err = _error(f"http://{host}:{canary.port}/", _settings())
    assert err.reason == "blocked_address", err
    assert not err.transient
    assert canary.connections == 0


@pytest.mark.parametrize("host", NUMERIC)
def test_ambiguous_numeric_hosts_are_bad_urls(canary, host):
    err = _error(f"http://{host}:{canary.port}/", _settings())
    assert err.reason == "bad_url" and not err.transient, err
    assert canary.connections == 0


@pytest.mark.parametrize("host", FORMS + NUMERIC)
def test_redirects_to_the_forms_never_reach_the_canary(canary, host):
    """A public-looking hop (127.0.0.2, allowed here) redirecting to each form."""
    with LocalServer("127.0.0.2") as hop:
        url = hop.route("/r", b"", status=302, headers={"Location": f"http://{host}:{canary.port}/x"})
        err = _error(url, _settings(allow_private_networks=("127.0.0.2/32",)))
    assert err.reason in ("blocked_address", "bad_redirect"), err
    assert not err.transient
    assert len(hop.hits("/r")) == 1  # refused, not retried
    assert canary.connections == 0


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """A name that resolves to an allowed address, then to the canary: the
    fetcher resolves once and connects to what it checked, with the name in
    the Host header."""
    with LocalServer("127.0.0.2") as good:
        good.route("/ok", "fine")
        canary = Canary("127.0.0.1", good.port)  # same port, the address the name turns into
        real = socket.getaddrinfo
        answers = []

        def rebinding(host, port, *args, **kwargs):
            if host not in ("rebind.test", b"rebind.test"):  # anyio passes the name IDNA-encoded
                return real(host, port, *args, **kwargs)
            answers.append(host)
            address = "127.0.0.2" if len(answers) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)

        async def go():
            async with Fetcher(_settings(allow_private_networks=("127.0.0.2/32",))) as f:
                return await f.get(f"http://rebind.test:{good.port}/ok")

        try:
            resp = asyncio.run(go())
        finally:
            canary.close()
    assert resp.body == b"fine"
    assert canary.connections == 0
    assert len(answers) == 1  # one lookup, no second one to rebind
    assert good.requests[0].headers["host"] == f"rebind.test:{good.port}"


def test_allowed_networks_still_cover_mapped_forms(canary):
    """allow_private_networks = ["127.0.0.0/8"] (the tests' own setting)
    lets loopback through in either spelling."""
    with LocalServer() as srv:
        srv.route("/a", "x")
        settings = _settings(allow_private_networks=("127.0.0.0/8",))

        async def go():
            async with Fetcher(settings) as f:
                return await f.get(f"http://[::ffff:127.0.0.1]:{srv.port}/a")

        assert asyncio.run(go()).body == b"x"


def _self_signed(tmp_path, name: str):
    x509 = pytest.importorskip("cryptography.x509")  # a dependency of prefect
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_tls_gets_the_host_name_not_the_address(tmp_path, monkeypatch):
    """The connection goes to the checked address, but the TLS handshake
    still names the host (SNI), so the right certificate is asked for and
    checked against the name. (The certificate is self-signed: the fetch
    fails verification after the server has seen the name.)"""
    import ssl

    cert, key = _self_signed(tmp_path, "guarded.test")
    seen = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sslsock, name, ctx: seen.append(name)
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def serve():
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1024)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    real = socket.getaddrinfo

    def resolve(host, p, *args, **kwargs):
        if host in ("guarded.test", b"guarded.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", p))]
        return real(host, p, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        err = _error(f"https://guarded.test:{port}/", _settings(allow_private_networks=("127.0.0.2/32",)))
    finally:
        thread.join(5)
        listener.close()
    assert seen == ["guarded.test"]
    assert "CERTIFICATE_VERIFY_FAILED" in err.message or "certificate" in err.message.lower(), err
