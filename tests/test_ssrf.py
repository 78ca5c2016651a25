"""The SSRF guard decides on the address that is actually connected to.

A table of target URLs (canonical reading, address classes, IPv6 transition forms, resolution),
then real sockets: a resolver stand-in that answers a public address first and 127.0.0.1 next
never produces a connection to a listener on 127.0.0.1, and a pinned HTTPS connection keeps SNI,
``Host`` and certificate checks for the name while connecting to the vetted address. Every test
here that could connect refuses non-loopback connects in-process, so nothing reaches a real
address even if the guard fails.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading

import pytest

from shared.models import Delivery, HttpEndpoint, Subscription, SubscriptionState
from shared.settings import Settings
from shared.targets.http import HttpTarget
from shared.targets.policy import TargetRefused, address_problem, check_target_url, vet

STRICT = Settings.from_env({})
PUBLIC = "93.184.215.14"
DNS = {
    "flow.example": [PUBLIC], "www.flow.example": [PUBLIC], "xn--bcher-kva.example": [PUBLIC],
    "v6.example": ["2606:4700::1111"], "inner.example": ["10.0.0.5"], "meta.example": ["169.254.169.254"],
    "mixed.example": [PUBLIC, "127.0.0.1"], "mapped.example": ["::ffff:169.254.169.254"],
    "nat64.example": ["64:ff9b::a00:1"], "cgnat.example": ["100.64.1.1"], "ula.example": ["fd00:ec2::254"],
    "garbage.example": ["not-an-address"],
}


def table_resolver(host: str, port: int) -> list[str]:
    return list(DNS.get(host, []))


A, R = "accepted", "refused"
CASES = [
    # plain public targets
    ("https://flow.example/hook", A, ""), ("https://flow.example:8443/hook?x=1", A, ""),
    ("https://FLOW.Example/hook", A, ""), ("https://flow.example./hook", A, ""), ("https://www.flow.example/", A, ""),
    ("https://bücher.example/hook", A, ""), ("https://BÜCHER.example/hook", A, ""), ("https://v6.example/x", A, ""),
    ("https://8.8.8.8/x", A, ""), ("https://[2606:4700:4700::1111]/x", A, ""), ("https://flow.example/p/ä?q=ü", A, ""),
    ("https://[64:ff9b::808:808]/x", A, ""), ("https://[2002:808:808::1]/x", A, ""),
    ("  https://flow.example/hook\n", A, ""),
    # scheme, credentials, shape
    ("http://flow.example/hook", R, "https"), ("ftp://flow.example/x", R, "absolute https"),
    ("https://user:pw@flow.example/x", R, "credentials"), ("https://flow.example@127.0.0.1/x", R, "credentials"),
    ("https:///x", R, "absolute https"), ("//flow.example/x", R, "absolute https"), ("not a url", R, "spaces"),
    ("", R, "empty"), ("https://flow.example/" + "a" * 5000, R, "longer than"),
    ("https://flow.example\\@127.0.0.1/x", R, "backslashes"), ("https://flow.example\t/x", R, "control"),
    ("https://flow.example/a b", R, "spaces"), ("https://flow.example/a\u2028b", R, "spaces"),
    ("https://flow.example/a\x85status=500", R, "spaces"), ("https://flow.example/\u200bx", R, "spaces"),
    ("https://127.0.0.1\\.logic.azure.com/x", R, "backslashes"), ("https://flow.example:0/x", R, "invalid port"),
    ("https://flow.example:65536/x", R, "invalid port"), ("https://flow.example:８０/x", R, "invalid port"),
    ("https://flow.example:-1/x", R, "invalid port"), ("https://[::1/x", R, "not a valid"),
    # percent-escapes, zone ids, IDNA
    ("https://fl%6Fw.example/x", R, "percent-escapes"), ("https://127.0.0.%31/x", R, "percent-escapes"),
    ("https://[fe80::1%25eth0]/x", R, "zone id"), ("https://xn--/x", R, "not a valid host name"),
    ("https://ｆｌｏｗ.example/x", R, "more than one way"), ("https://a..b.example/x", R, "not a valid host name"),
    ("https://-flow.example/x", R, "not a valid host name"), ("https://" + "a" * 64 + ".example/x", R, "not a valid host name"),
    # integer, hex, octal and short IPv4 forms
    ("https://2130706433/x", R, "non-standard form"), ("https://0x7f000001/x", R, "non-standard form"),
    ("https://0x7f.0.0.1/x", R, "non-standard form"), ("https://0177.0.0.1/x", R, "non-standard form"),
    ("https://127.1/x", R, "non-standard form"), ("https://127.0.1/x", R, "non-standard form"),
    ("https://010.010.010.010/x", R, "non-standard form"), ("https://8.8.8.08/x", R, "non-standard form"),
    ("https://example.123/x", R, "non-standard form"), ("https://1.2.3.4.5/x", R, "non-standard form"),
    # IPv4 address classes
    ("https://127.0.0.1/x", R, "loopback"), ("https://127.9.9.9/x", R, "loopback"), ("https://10.1.2.3/x", R, "private"),
    ("https://172.16.5.4/x", R, "private"), ("https://192.168.0.1/x", R, "private"),
    ("https://169.254.169.254/latest", R, "metadata"), ("https://169.254.1.1/x", R, "link-local"),
    ("https://168.63.129.16/x", R, "WireServer"), ("https://100.64.0.1/x", R, "CGNAT"),
    ("https://224.0.0.1/x", R, "multicast"), ("https://255.255.255.255/x", R, "broadcast"),
    ("https://240.0.0.1/x", R, "reserved"), ("https://0.0.0.0/x", R, "unspecified"), ("https://0.1.2.3/x", R, "unspecified"),
    ("https://192.0.2.10/x", R, "special-purpose"), ("https://198.18.0.1/x", R, "special-purpose"),
    ("https://127.0.0.1./x", R, "loopback"),
    # IPv6 classes and transition forms (judged by the IPv4 address they reach)
    ("https://[::1]/x", R, "loopback"), ("https://[::]/x", R, "unspecified"), ("https://[fe80::1]/x", R, "link-local"),
    ("https://[fc00::1]/x", R, "unique local"), ("https://[fd00:ec2::254]/x", R, "unique local"),
    ("https://[fec0::1]/x", R, "site-local"), ("https://[ff02::1]/x", R, "multicast"),
    ("https://[2001:db8::1]/x", R, "special-purpose"), ("https://[::ffff:127.0.0.1]/x", R, "loopback"),
    ("https://[::ffff:7f00:1]/x", R, "loopback"), ("https://[::ffff:169.254.169.254]/x", R, "metadata"),
    ("https://[::127.0.0.1]/x", R, "loopback"), ("https://[::a00:1]/x", R, "private"),
    ("https://[64:ff9b::127.0.0.1]/x", R, "loopback"), ("https://[64:ff9b::a9fe:a9fe]/x", R, "metadata"),
    ("https://[64:ff9b:1:7f00:0:100::]/x", R, "loopback"), ("https://[2002:a00:1::]/x", R, "private"),
    ("https://[2002:7f00:1::1]/x", R, "loopback"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", R, "special-purpose"),  # Teredo, client 192.0.2.45
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", R, "loopback"),  # Teredo, client 127.0.0.1
    # names and what they resolve to
    ("https://localhost/x", R, "local host name"), ("https://LOCALHOST./x", R, "local host name"),
    ("https://api.localhost/x", R, "local host name"), ("https://metadata.google.internal/x", R, "local host name"),
    ("https://printer.local/x", R, "local host name"), ("https://intranet/x", R, "fully qualified"),
    ("https://inner.example/x", R, "private"), ("https://meta.example/x", R, "metadata"),
    ("https://mixed.example/x", R, "loopback"), ("https://mapped.example/x", R, "metadata"),
    ("https://nat64.example/x", R, "private"), ("https://cgnat.example/x", R, "CGNAT"),
    ("https://ula.example/x", R, "unique local"), ("https://garbage.example/x", R, "not an IP address"),
    ("https://does-not-resolve.example/x", R, "does not resolve"),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 60 and len({url for url, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("url, verdict, reason", CASES, ids=[f"{i:03d}" for i in range(len(CASES))])
def test_target_url_table(url, verdict, reason):
    if verdict == A:
        assert check_target_url(url, STRICT, resolver=table_resolver) == url.strip()
        return
    with pytest.raises(TargetRefused) as refused:
        check_target_url(url, STRICT, resolver=table_resolver)
    assert refused.value.status == 400 and refused.value.code == "target_not_allowed"
    assert reason.lower() in refused.value.message.lower(), refused.value.message


def test_the_reading_is_canonical_and_is_what_the_client_sends():
    target, address = vet("https://BÜCHER.Example.:443/p/ä?q=1&sig=s#frag", STRICT, table_resolver)
    assert (target.scheme, target.host, target.port, address) == ("https", "xn--bcher-kva.example", 443, PUBLIC)
    assert target.request_target == "/p/%C3%A4?q=1&sig=s" and target.host_header == "xn--bcher-kva.example"
    v6, _ = vet("https://[2606:4700:4700:0::1111]:8443/", STRICT, table_resolver)
    assert v6.host == "2606:4700:4700::1111" and v6.host_header == "[2606:4700:4700::1111]:8443"


def test_allowed_target_hosts_use_the_canonical_host():
    settings = Settings.from_env({"ALLOWED_TARGET_HOSTS": "flow.example, .logic.azure.com"})
    assert check_target_url("https://WWW.FLOW.EXAMPLE./x", settings, resolver=table_resolver)
    assert check_target_url("https://prod-01.westus.logic.azure.com/x", settings, resolve=False)
    for url in ("https://flow.example.attacker.example/x", "https://evil-logic.azure.com.attacker.example/x"):
        with pytest.raises(TargetRefused, match="ALLOWED_TARGET_HOSTS"):
            check_target_url(url, settings, resolver=table_resolver)
    with pytest.raises(TargetRefused, match="backslashes"):  # the host a client would see is 127.0.0.1
        check_target_url("https://127.0.0.1\\.logic.azure.com/x", settings, resolver=table_resolver)


def test_insecure_mode_allows_http_and_inner_addresses_but_still_reads_and_resolves_once():
    insecure = Settings.from_env({"ALLOW_INSECURE_TARGETS": "true"})
    assert check_target_url("http://127.0.0.1:7090/x", insecure)
    assert check_target_url("http://inner.example/x", insecure, resolver=table_resolver)
    for url, reason in (("http://0x7f.1/x", "non-standard"), ("http://does-not-resolve.example/x", "does not resolve"),
                        ("http://a\\@127.0.0.1/x", "backslash")):
        with pytest.raises(TargetRefused, match=reason):
            check_target_url(url, insecure, resolver=table_resolver)


@pytest.mark.parametrize("address, problem", [
    ("8.8.8.8", None), ("2606:4700::1111", None), ("64:ff9b::808:808", None), ("2002:808:808::", None),
    ("::ffff:10.0.0.1", "private"), ("64:ff9b:1:a00:0:100::", "private"), ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),
])
def test_addresses_are_judged_by_what_they_reach(address, problem):
    found = address_problem(ipaddress.ip_address(address))
    assert (found is None) if problem is None else (problem in found)


# Real sockets ------------------------------------------------------------------------------
class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts (and closes them)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def loopback_only(monkeypatch):
    """Refuse every connect to a non-loopback address in this process; record the attempts."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if not isinstance(address, tuple) or ipaddress.ip_address(host).is_loopback:
            return real_connect(self, address)
        attempts.append(host)
        raise ConnectionRefusedError(f"test: no connections outside 127.0.0.1 ({host})")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def rebinding_dns(monkeypatch):
    """A resolver stand-in at the socket layer: for flow.example it answers a public address, then
    127.0.0.1, alternately (what a hostile DNS server does between a check and a connection).
    Numeric hosts pass through to the real resolver (no DNS)."""
    real = socket.getaddrinfo
    state = {"calls": 0, "answers": [PUBLIC, "127.0.0.1"]}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host == "flow.example":
            answer = state["answers"][state["calls"] % len(state["answers"])]
            state["calls"] += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, int(port)))]
        return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


def _subscription(url: str) -> Subscription:
    return Subscription(id="e" * 32, target=HttpEndpoint(url), events=["invitee.created"], scope="organization",
                        organization="o", user=None, group=None, signing_key="k", generation="g",
                        state=SubscriptionState.ACTIVE)


def _delivery(n: int) -> Delivery:
    return Delivery(id=f"{'e' * 32}-{n:024d}", subscription_id="e" * 32, event="invitee.created", event_key=f"k{n}",
                    body=b'{"event":"invitee.created"}')


def test_rebinding_dns_never_yields_a_connection_to_loopback(loopback_only, rebinding_dns):
    listener = CountingListener()
    url = f"https://flow.example:{listener.port}/hook"
    try:
        assert check_target_url(url, STRICT)  # subscribe time: the stand-in answers the public address
        target = HttpTarget(STRICT)
        results = [target.send(_subscription(url), _delivery(n), budget_seconds=1.0) for n in range(10)]
        target.close()
    finally:
        listener.close()
    assert listener.accepted == 0
    assert not any(r.ok for r in results)
    assert set(loopback_only) == {PUBLIC}  # the only connects tried went to the vetted (public) answer
    refused = [r for r in results if r.error and "loopback" in r.error]
    assert len(refused) == 5 and rebinding_dns["calls"] == 11  # one lookup per attempt, none by the client


def test_an_answer_with_any_inner_address_is_refused_at_delivery(loopback_only, rebinding_dns):
    listener = CountingListener()
    rebinding_dns["answers"] = ["127.0.0.1"]
    try:
        result = HttpTarget(STRICT).send(_subscription(f"https://flow.example:{listener.port}/hook"), _delivery(1), 1.0)
    finally:
        listener.close()
    assert not result.ok and "loopback" in result.error and listener.accepted == 0 and loopback_only == []


def test_a_name_that_stops_resolving_is_a_failed_attempt_not_a_connection(loopback_only, monkeypatch):
    def nothing(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nothing)
    result = HttpTarget(STRICT).send(_subscription("https://flow.example/hook"), _delivery(1), 1.0)
    assert not result.ok and result.status is None and "does not resolve" in result.error and loopback_only == []


# Pinned TLS: SNI, Host and the certificate stay the name's -----------------------------------
def _certificates(tmp_path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, signer, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge test CA")])
    ca = build(ca_name, ca_name, ca_key, ca_key, True)
    leaf = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, leaf_key, ca_key, False, san=name)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.key")


class TlsTarget:
    """An HTTPS server on 127.0.0.1 that records the SNI name and the request it got."""

    def __init__(self, cert: str, key: str):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sni: list[str | None] = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.sock.settimeout(5)
        try:
            raw, _ = self.sock.accept()
        except OSError:
            return
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (ssl.SSLError, OSError):
            pass  # the client refused our certificate

    def close(self):
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def names_to_loopback(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host in ("flow.example", "other.example"):
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", int(port)))]
        return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_pinned_https_keeps_sni_host_and_certificate_for_the_name(tmp_path, loopback_only, names_to_loopback):
    ca, cert, key = _certificates(tmp_path, "flow.example")
    server = TlsTarget(cert, key)
    insecure = Settings.from_env({"ALLOW_INSECURE_TARGETS": "true"})  # loopback allowed; TLS still verified
    try:
        result = HttpTarget(insecure, ca_certs=ca).send(
            _subscription(f"https://FLOW.example.:{server.port}/hook?sig=s"), _delivery(1), 2.0)
    finally:
        server.close()
    assert result.ok and result.status == 202
    assert server.sni == ["flow.example"]
    [request] = server.requests
    assert request.startswith(b"POST /hook?sig=s HTTP/1.1\r\n")
    assert f"\r\nHost: flow.example:{server.port}\r\n".encode() in request
    assert request.endswith(b'{"event":"invitee.created"}')


def test_pinned_https_refuses_a_certificate_for_another_name(tmp_path, loopback_only, names_to_loopback):
    ca, cert, key = _certificates(tmp_path, "other.example")
    server = TlsTarget(cert, key)
    insecure = Settings.from_env({"ALLOW_INSECURE_TARGETS": "true"})
    try:
        result = HttpTarget(insecure, ca_certs=ca).send(_subscription(f"https://flow.example:{server.port}/hook"),
                                                        _delivery(1), 1.0)
    finally:
        server.close()
    assert not result.ok and result.status is None and result.error == "target unreachable: TLS failed" and server.requests == []


# Where the guard may be off ------------------------------------------------------------------
def test_product_commands_keep_the_guard_on_and_only_the_local_host_turns_it_off(make_host, sandbox, target):
    """``serve`` (development) allows loopback targets by default; ``redeliver`` run on the same
    store without ALLOW_INSECURE_TARGETS (as an operator would on a deployed box) refuses them."""
    from tests.conftest import simulate
    from tests.helpers import subscribe

    bridge = make_host()
    bridge.env.pop("ALLOW_INSECURE_TARGETS")  # the local host's own default applies
    bridge.stop()
    bridge.start()
    assert subscribe(bridge, target).status_code == 201  # http://127.0.0.1 target: allowed by serve's default
    target.respond(default=503)
    simulate(sandbox, "invitee.created")
    bridge.stop()
    before = len(target.received)
    target.respond(default=200)
    done = bridge.run("redeliver")
    assert done.returncode == 0, done.stderr
    assert len(target.received) == before  # nothing was sent to the loopback target
    assert json.loads(done.stdout) == {"attempted": 1, "delivered": 0, "pending": 1, "dead": 0, "discarded": 0}
    bridge.start()
    [sub] = bridge.api("GET", "/subscriptions").json()["value"]
    [item] = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"]
    assert "https" in item["last_error"], item
