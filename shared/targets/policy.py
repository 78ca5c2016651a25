"""Which targets the bridge may call, decided on the address it actually connects to (SSRF guard).

One canonical reading of a target URL (``parse_target``) is the only one the bridge uses: the
guard judges it, and the HTTP target builds its request from it (scheme, host, port, request path),
never from the URL string again. The reading refuses whatever two parsers could read differently:
percent-escapes, zone ids or credentials in the authority, backslashes, whitespace and control
characters, IPv4 addresses in integer, hex, octal or shortened form (``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``127.1``), and any URL whose host or port ``urllib.parse`` and urllib3 disagree on.
Host names are case-folded, IDNA-encoded (UTS #46) and lose one trailing dot.

Then ``vet`` resolves the name once and judges every address it got (``address_problem``): a name
is refused when any of its addresses is not public, and the connection goes to exactly the vetted
address (``HttpTarget`` pins it, keeping SNI, ``Host`` and certificate checks for the name). IPv6
forms that carry an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo) are judged by
the IPv4 address they reach. A name that does not resolve is refused.

``ALLOW_INSECURE_TARGETS=true`` (local development) allows ``http://`` and non-public addresses; the
canonical reading and the resolve-once pinning still apply.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from ..errors import BridgeError
from ..settings import Settings

MAX_URL_LENGTH = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (strings, in the resolver's order).
Resolver = Callable[[str, int], "list[str]"]


class TargetRefused(BridgeError):
    def __init__(self, message: str):
        super().__init__(400, "target_not_allowed", message)


@dataclass(frozen=True)
class TargetAddress:
    """The one reading of a target URL the bridge uses: what it judges and what it connects to."""

    scheme: str
    host: str  # lower-case ASCII (IDNA), no trailing dot; an IP address in its canonical text, unbracketed
    port: int
    request_target: str  # path and query as sent on the request line
    literal: IPAddress | None = None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


# Parsing ---------------------------------------------------------------------------------
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def _canonical_name(raw: str) -> str:
    """``raw`` (a host name, not an address) case-folded, IDNA-encoded, without one trailing dot."""
    name = raw[:-1] if raw.endswith(".") else raw
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise TargetRefused("the target host is not a valid internationalised domain name") from None
    name = name.lower()
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise TargetRefused("the target host is not a valid host name")
    return name


def _canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    if "%" in raw:
        raise TargetRefused("the target host must not contain percent-escapes or an IPv6 zone id")
    if raw.startswith("[") or raw.endswith("]"):
        try:
            v6 = ipaddress.IPv6Address(raw[1:-1] if raw.startswith("[") and raw.endswith("]") else "!")
        except ValueError:
            raise TargetRefused("the target host is not a valid IPv6 address") from None
        return str(v6), v6
    if not raw:
        raise TargetRefused("the target URL has no host")
    name = _canonical_name(raw)
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        # Resolvers read integer, hex, octal and shortened IPv4 forms as addresses; only the
        # canonical dotted-decimal one is read the same way by everyone.
        try:
            address = ipaddress.IPv4Address(name)
        except ValueError:
            raise TargetRefused("the target host is an IPv4 address in a non-standard form "
                                "(write it as four decimal numbers, e.g. 203.0.113.10)") from None
        return str(address), address
    return name, None


def _cross_check(url: str, scheme: str, host: str, port: int) -> str:
    """urllib3's reading of the same URL must name the same host and port; return its request target."""
    try:
        theirs = parse_url(url)
        their_host = (theirs.host or "").lower()
        if their_host.startswith("[") and their_host.endswith("]"):
            their_host = str(ipaddress.IPv6Address(their_host[1:-1]))
        their_host = their_host[:-1] if their_host.endswith(".") else their_host
    except (LocationParseError, ValueError):
        raise TargetRefused("the target URL can be read in more than one way (the HTTP client cannot parse it); "
                            "write it plainly") from None
    their_port = theirs.port or DEFAULT_PORTS.get((theirs.scheme or "").lower(), 0)
    if (theirs.scheme or "").lower() != scheme or their_host != host or their_port != port:
        raise TargetRefused("the target URL can be read in more than one way; write it plainly")
    return theirs.request_uri or "/"


def parse_target(url: str) -> TargetAddress:
    """The canonical reading of ``url``, or TargetRefused (400) saying why there is none."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("the target URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the target URL is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE_CHARS.search(url) or not url.isprintable():  # also NEL, U+2028/9, other spaces and format chars
        raise TargetRefused("the target URL must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TargetRefused("the target URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise TargetRefused("the target URL must be an absolute https URL")
    if "@" in parts.netloc:
        raise TargetRefused("the target URL must not carry credentials before the host")
    raw_host, port_text = parts.netloc, ""
    if raw_host.startswith("["):
        close = raw_host.find("]")
        raw_host, port_text = (raw_host[:close + 1], raw_host[close + 1:]) if close > 0 else (raw_host, "")
        if port_text and not port_text.startswith(":"):
            raise TargetRefused("the target URL is not a valid URL")
        port_text = port_text[1:]
    elif ":" in raw_host:
        raw_host, port_text = raw_host.rsplit(":", 1)
    if port_text and not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise TargetRefused("the target URL has an invalid port")
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    host, literal = _canonical_host(raw_host)
    request_target = _cross_check(url, scheme, host, port)
    return TargetAddress(scheme, host, port, request_target, literal)


# Judging addresses -----------------------------------------------------------------------
_V4_RULES = [(ipaddress.ip_network(net), reason) for net, reason in (
    ("0.0.0.0/8", "an unspecified address"), ("127.0.0.0/8", "a loopback address"),
    ("169.254.169.254/32", "the cloud metadata endpoint"), ("168.63.129.16/32", "the Azure platform endpoint (WireServer)"),
    ("10.0.0.0/8", "a private address"), ("172.16.0.0/12", "a private address"), ("192.168.0.0/16", "a private address"),
    ("169.254.0.0/16", "a link-local address"), ("100.64.0.0/10", "a shared (CGNAT) address"),
    ("224.0.0.0/4", "a multicast address"), ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)]
_V6_RULES = [(ipaddress.ip_network(net), reason) for net, reason in (
    ("::/128", "an unspecified address"), ("::1/128", "a loopback address"), ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"), ("fc00::/7", "a private (unique local) address"),
    ("ff00::/8", "a multicast address"),
)]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form reaches (empty for a plain IPv6 address)."""
    value = int(address)
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address in _COMPATIBLE and value > 1:  # IPv4-compatible ::a.b.c.d (not :: and ::1)
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if address in _NAT64:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if address in _NAT64_LOCAL:  # RFC 6052 /48: IPv4 in bits 48-63 and 72-87 (bits 64-71 are zero)
        packed = address.packed
        return [ipaddress.IPv4Address(packed[6:8] + packed[9:11])]
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        server, client = address.teredo
        return [client, server]
    return []


def address_problem(address: IPAddress) -> str | None:
    """Why the bridge must not connect to ``address`` (e.g. "a loopback address"), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "an address with a zone id"
        for network, reason in _V6_RULES:
            if address in network:
                return reason
        embedded = embedded_ipv4(address)
        if embedded:
            for inner in embedded:
                problem = address_problem(inner)
                if problem:
                    return f"{problem} (embedded in {address})"
            return None
    else:
        for network, reason in _V4_RULES:
            if address in network:
                return reason
    if not address.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


# Resolving and vetting -------------------------------------------------------------------
def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the system resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_LOCAL_NAMES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".intranet")


def _check_name(target: TargetAddress, settings: Settings) -> None:
    """The rules on the URL alone: scheme, host allow-list, local and single-label names."""
    if settings.allow_insecure_targets:
        return
    if target.scheme != "https":
        raise TargetRefused("the target URL must use https (set ALLOW_INSECURE_TARGETS=true for local development)")
    host = target.host
    if settings.allowed_target_hosts and not any(host == h or host.endswith("." + h) for h in settings.allowed_target_hosts):
        raise TargetRefused("the target host is not in ALLOWED_TARGET_HOSTS")
    if target.literal is None:
        if host == "localhost" or host.endswith(_LOCAL_NAMES):
            raise TargetRefused("the target URL points at a local host name")
        if "." not in host:
            raise TargetRefused("the target host must be a fully qualified domain name")


def _judge(address: IPAddress, settings: Settings, resolved: bool) -> None:
    if settings.allow_insecure_targets:
        return
    problem = address_problem(address)
    if problem:
        where = "resolves to" if resolved else "is"
        raise TargetRefused(f"the target host {where} {problem}, which the bridge does not call")


def _read(url: str, settings: Settings) -> TargetAddress:
    """The canonical reading, judged on what it shows without DNS (scheme, names, a literal address)."""
    target = parse_target(url)
    _check_name(target, settings)
    if target.literal is not None:
        _judge(target.literal, settings, resolved=False)
    return target


def vet(url: str, settings: Settings, resolver: Resolver | None = None) -> tuple[TargetAddress, str]:
    """Resolve ``url``'s host once and judge every address: the reading and the one address to
    connect to, or TargetRefused (an unresolvable name included)."""
    target = _read(url, settings)
    if target.literal is not None:
        return target, target.host
    try:
        answers = (resolver or system_resolver)(target.host, target.port)
    except (OSError, UnicodeError, ValueError):
        answers = []
    addresses = []
    for text in answers:
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            raise TargetRefused("the target host resolves to something that is not an IP address") from None
    if not addresses:
        raise TargetRefused(f"the target host {target.host} does not resolve")
    for address in addresses:  # one bad answer refuses the name: any of them could be the one used
        _judge(address, settings, resolved=True)
    return target, str(addresses[0])


def check_target_url(url: str, settings: Settings, resolve: bool = True, resolver: Resolver | None = None) -> str:
    """Return ``url`` when the bridge may post to it (at subscribe time), else raise TargetRefused
    (400). ``resolve=False`` judges the URL alone (no DNS), for callers that vet again later."""
    if resolve:
        vet(url, settings, resolver)
    else:
        _read(url, settings)
    return url.strip()
