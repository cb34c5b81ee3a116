"""Outgoing connections: which addresses are public, DNS rebinding, and bodies sent compressed.

The rebinding tests run real HTTP servers on 127.0.0.1 and replace the system resolver
(`socket.getaddrinfo`) and `socket.create_connection`, the two calls where the process meets the
network: made-up names answer a public address first and 127.0.0.1 afterwards, and a connection to
the public address is delivered to a local server standing for that public host.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qa_service import notify, outbound
from qa_service.errors import InputError, TransientError
from qa_service.storage.fetch import UrlRefused, check_url, fetch_recording
from qa_service.storage.objects import input_store

# Public addresses that stand for two recording hosts; the patched connect keeps them on this machine.
PUBLIC = "93.184.216.34"
PUBLIC_2 = "93.184.216.35"

# -- which addresses are public ----------------------------------------------------------------------

ADDRESSES = [
    # IPv4
    ("8.8.8.8", True),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),
    ("100.64.0.1", False),
    ("0.0.0.0", False),
    ("224.0.0.1", False),
    ("255.255.255.255", False),
    # plain IPv6
    ("2606:4700:4700::1111", True),
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("ff02::1", False),
    ("2001:db8::1", False),
    # IPv4-mapped ::ffff:0:0/96
    ("::ffff:8.8.8.8", True),
    ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    # IPv4-translated ::ffff:0:0:0/96
    ("::ffff:0:808:808", True),
    ("::ffff:0:7f00:1", False),
    # IPv4-compatible ::/96
    ("::8.8.8.8", True),
    ("::127.0.0.1", False),
    ("::10.0.0.1", False),
    # NAT64 64:ff9b::/96
    ("64:ff9b::808:808", True),
    ("64:ff9b::7f00:1", False),
    ("64:ff9b::a9fe:a9fe", False),
    # local-use NAT64 64:ff9b:1::/48: refused whatever it carries
    ("64:ff9b:1::808:808", False),
    ("64:ff9b:1:7f00:0:100::", False),
    # 6to4 2002::/16, the IPv4 in bits 16-48
    ("2002:808:808::1", True),
    ("2002:7f00:1::1", False),
    ("2002:a9fe:a9fe::1", False),
    # Teredo 2001::/32: server IPv4 in bits 32-64, client IPv4 inverted in the last 32 bits
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),   # server 65.54.227.120, client 8.8.8.8
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # client 127.0.0.1
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", False),      # server 10.0.0.1
]


@pytest.mark.parametrize(("text", "public"), ADDRESSES)
def test_addresses_are_judged_by_the_ipv4_they_carry(text: str, public: bool) -> None:
    assert outbound.is_public(ipaddress.ip_address(text)) is public


@pytest.mark.parametrize("text", [text for text, public in ADDRESSES if not public and ":" in text])
def test_a_literal_ipv6_url_that_reaches_a_private_address_is_refused(text: str) -> None:
    with pytest.raises(UrlRefused, match="QA_ALLOW_PRIVATE_URLS"):
        check_url(f"http://[{text}]:8080/call.wav", allow_private=False, resolve=False)
    check_url(f"http://[{text}]:8080/call.wav", allow_private=True, resolve=False)


@pytest.mark.parametrize(("text", "carried"), [
    ("::ffff:10.0.0.1", ["10.0.0.1"]),
    ("64:ff9b::c000:221", ["192.0.2.33"]),
    ("2002:c000:221::", ["192.0.2.33"]),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ["65.54.227.120", "192.0.2.45"]),
    ("2606:4700:4700::1111", []),
    ("192.0.2.33", []),
])
def test_embedded_ipv4_reads_each_form(text: str, carried: list[str]) -> None:
    assert [str(a) for a in outbound.embedded_ipv4(ipaddress.ip_address(text))] == carried


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[2002:a9fe:a9fe::1]", "[::10.0.0.1]"])
def test_the_telephony_webhook_refuses_ipv6_forms_of_private_addresses(make_settings, redis_url, host):
    import json

    from fastapi.testclient import TestClient

    from qa_service.api.webhooks import sign
    from qa_service.app import create_app
    from tests.chaos_support import seed_rules

    settings = make_settings(redis_url=redis_url)
    app = create_app(settings)
    seed_rules(app.state.repo)
    body = json.dumps({"external_call_id": "pbx-64", "agent_id": "agent-tom",
                       "start_time": "2026-10-20T09:15:00+02:00", "recording_url": f"http://{host}/r.wav",
                       "channels": "stereo", "rubric_id": "harbourline-intake",
                       "policy_pack_id": "valdoria-residence"}).encode()
    r = TestClient(app).post("/v1/webhooks/telephony", content=body,
                             headers={"Content-Type": "application/json",
                                      "X-Signature": sign(settings.webhook_secret or "", body)})
    assert r.status_code == 422 and "QA_ALLOW_PRIVATE_URLS" in r.json()["detail"]
    assert app.state.repo.find_call("pbx-64") is None
    app.state.repo.dispose()


# -- a small network on this machine -----------------------------------------------------------------

@dataclass
class Site:
    """A local HTTP server standing for one host: serves fixed routes, records every request."""

    server: ThreadingHTTPServer
    routes: dict[str, tuple[int, dict[str, str], bytes]]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def sites() -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def start(routes: dict[str, tuple[int, dict[str, str], bytes]]) -> Site:
        box: list[Site] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                site = box[0]
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                site.requests.append((self.command, self.path, headers))
                status, extra, body = site.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in {"Content-Type": "audio/wav", **extra}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        box.append(Site(server, routes))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(box[0])
        return box[0]

    yield start
    for site in started:
        site.server.shutdown()
        site.server.server_close()


@dataclass
class Network:
    """The patched resolver and connect: scripted answers per name, public addresses routed locally."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in net.answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        net.lookups.append(name)
        # The first answer once, then the next ones: the last answer repeats for ever.
        queue = net.answers[name]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        net.connects.append(address[0])
        if address[0] in net.routes:
            address = ("127.0.0.1", net.routes[address[0]])
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return net


PUBLIC_WAV = b"RIFF" + b"public recording" + b"\x00" * 1000
INTERNAL = b"RIFF" + b"internal service" + b"\x00" * 1000


# -- DNS rebinding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["/call.wav", "/hop"])
def test_a_recording_host_that_rebinds_to_loopback_is_never_reached(make_settings, sites, network, start):
    internal = sites({"/call.wav": (200, {}, INTERNAL), "/hop": (200, {}, INTERNAL)})
    # The first host serves the recording or redirects to a second name, which rebinds in turn.
    first = sites({"/call.wav": (200, {}, PUBLIC_WAV),
                   "/hop": (302, {"Location": f"http://cdn.example:{internal.port}/call.wav"}, b"")})
    second = sites({"/call.wav": (200, {}, PUBLIC_WAV)})
    network.answers = {"recordings.example": [PUBLIC, "127.0.0.1"], "cdn.example": [PUBLIC_2, "127.0.0.1"]}
    network.routes = {PUBLIC: first.port, PUBLIC_2: second.port}
    settings = make_settings()  # private addresses refused

    saved = fetch_recording(f"http://recordings.example:{internal.port}{start}", input_store(settings),
                            str(uuid.uuid4()), settings)

    assert Path(saved).read_bytes() == PUBLIC_WAV
    assert internal.requests == []
    assert "127.0.0.1" not in network.connects
    assert set(network.connects) <= {PUBLIC, PUBLIC_2}
    # The name stays in the Host header (and would in TLS SNI); each name was resolved once.
    _, _, headers = first.requests[0]
    assert headers["host"] == f"recordings.example:{internal.port}"
    if start == "/hop":
        assert second.requests[0][2]["host"] == f"cdn.example:{internal.port}"
        assert network.lookups == ["recordings.example", "cdn.example"]
    else:
        assert network.lookups == ["recordings.example"]


def test_a_name_that_answers_a_private_address_first_is_refused_without_connecting(make_settings, sites,
                                                                                   network):
    internal = sites({"/call.wav": (200, {}, INTERNAL)})
    network.answers = {"recordings.example": ["127.0.0.1", PUBLIC]}
    settings = make_settings()
    call_id = str(uuid.uuid4())
    with pytest.raises(UrlRefused, match="recording_url points to a private.*QA_ALLOW_PRIVATE_URLS"):
        fetch_recording(f"http://recordings.example:{internal.port}/call.wav", input_store(settings),
                        call_id, settings)
    assert network.connects == [] and internal.requests == []
    assert not (settings.storage_dir / call_id).exists()


def test_a_name_that_answers_a_nat64_form_of_loopback_is_refused(make_settings, network):
    network.answers = {"recordings.example": ["64:ff9b::7f00:1"]}
    settings = make_settings()
    with pytest.raises(UrlRefused, match="QA_ALLOW_PRIVATE_URLS"):
        fetch_recording("http://recordings.example/call.wav", settings.storage_dir, str(uuid.uuid4()),
                        settings)
    assert network.connects == []


def test_a_webhook_receiver_that_rebinds_to_loopback_is_never_reached(make_settings, sites, network):
    internal = sites({"/hooks/qa": (200, {}, b"")})
    receiver = sites({"/hooks/qa": (204, {}, b"")})
    network.answers = {"hooks.example": [PUBLIC, "127.0.0.1"]}
    network.routes = {PUBLIC: receiver.port}
    settings = make_settings(outgoing_webhook_url=f"http://hooks.example:{internal.port}/hooks/qa",
                             outgoing_webhook_secret="s" * 32)  # private addresses refused

    assert notify.post(settings, notify.CALL_SCORED, b'{"call_id":"c"}', "d-1") == 204
    # The next attempt resolves again and now hears 127.0.0.1: refused, not sent there.
    with pytest.raises(notify.DeliveryRefused, match="QA_ALLOW_PRIVATE_URLS"):
        notify.post(settings, notify.CALL_SCORED, b'{"call_id":"c"}', "d-2")

    assert internal.requests == []
    assert [r[2]["x-delivery-id"] for r in receiver.requests] == ["d-1"]
    assert receiver.requests[0][2]["host"] == f"hooks.example:{internal.port}"
    assert network.lookups == ["hooks.example", "hooks.example"]
    assert network.connects == [PUBLIC]


def test_a_webhook_receiver_that_resolves_to_a_private_address_is_refused_for_good(make_settings, network):
    network.answers = {"hooks.example": ["::ffff:10.0.0.7"]}
    settings = make_settings(outgoing_webhook_url="http://hooks.example/hooks/qa",
                             outgoing_webhook_secret="s" * 32)
    with pytest.raises(notify.DeliveryRefused, match="QA_ALLOW_PRIVATE_URLS"):
        notify.post(settings, notify.CALL_SCORED, b"{}", "d-1")
    assert network.connects == []


# -- compressed bodies -------------------------------------------------------------------------------

def test_a_gzip_body_is_refused_before_it_expands(make_settings, sites):
    import tracemalloc

    expanded = 64 * 1024 * 1024
    bomb = gzip.compress(b"\x00" * expanded, compresslevel=9)
    assert len(bomb) < expanded // 500
    site = sites({"/call.wav": (200, {"Content-Encoding": "gzip"}, bomb)})
    settings = make_settings(allow_private_urls=True)
    call_id = str(uuid.uuid4())

    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"Content-Encoding: gzip.*serve the audio file as it is"):
            fetch_recording(f"http://127.0.0.1:{site.port}/call.wav", input_store(settings), call_id,
                            settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024, f"the compressed body was expanded: peak {peak / 1e6:.0f} MB"
    assert site.requests[0][2]["accept-encoding"] == "identity"
    assert not (settings.storage_dir / call_id).exists()


def test_an_identity_body_is_saved_as_sent(make_settings, sites):
    site = sites({"/call.wav": (200, {"Content-Encoding": "identity"}, PUBLIC_WAV)})
    settings = make_settings(allow_private_urls=True)
    saved = fetch_recording(f"http://127.0.0.1:{site.port}/call.wav", input_store(settings),
                            str(uuid.uuid4()), settings)
    assert Path(saved).read_bytes() == PUBLIC_WAV


# -- TLS keeps the name ------------------------------------------------------------------------------

def _certificate(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key, as PEM files."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("trusted", [False, True])
def test_https_to_a_pinned_address_keeps_the_name_for_sni_and_verification(make_settings, sites, network,
                                                                          monkeypatch, tmp_path, trusted):
    import ssl

    import httpx

    cert, key = _certificate("recordings.example", tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment]
    site = sites({"/call.wav": (200, {}, PUBLIC_WAV)})
    site.server.socket = server_context.wrap_socket(site.server.socket, server_side=True)
    network.answers = {"recordings.example": [PUBLIC, "127.0.0.1"]}
    network.routes = {PUBLIC: site.port}
    if trusted:
        # The test's own authority stands in for the public ones; verification itself is unchanged.
        real = httpx.create_ssl_context
        monkeypatch.setattr(httpx, "create_ssl_context", lambda **kw: real(verify=str(cert), **kw))
    settings = make_settings()
    url = f"https://recordings.example:{site.port}/call.wav"

    if trusted:
        saved = fetch_recording(url, input_store(settings), str(uuid.uuid4()), settings)
        assert Path(saved).read_bytes() == PUBLIC_WAV
        assert site.requests[0][2]["host"] == f"recordings.example:{site.port}"
    else:
        # An unknown authority is still refused: pinning the address did not turn verification off.
        with pytest.raises(TransientError, match="ConnectError"):
            fetch_recording(url, input_store(settings), str(uuid.uuid4()), settings)
        assert site.requests == []
    assert names and set(names) == {"recordings.example"}
    assert network.connects == [PUBLIC]
