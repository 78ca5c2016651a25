"""Which target URLs the bridge may call (SSRF guard): https only, public addresses only,
optionally only ALLOWED_TARGET_HOSTS — unless ALLOW_INSECURE_TARGETS is true."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import BridgeError
from ..settings import Settings

MAX_URL_LENGTH = 4096


class TargetRefused(BridgeError):
    def __init__(self, message: str):
        super().__init__(400, "target_not_allowed", message)


def _non_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_target_url(url: str, settings: Settings, resolve: bool = True) -> str:
    """Return ``url`` when the bridge may post to it, else raise TargetRefused (400)."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("the target URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the target URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise TargetRefused("the target URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("the target URL must be an absolute https URL")
    if parts.username or parts.password:
        raise TargetRefused("the target URL must not carry credentials before the host")
    if settings.allow_insecure_targets:
        return url
    if parts.scheme != "https":
        raise TargetRefused("the target URL must use https (set ALLOW_INSECURE_TARGETS=true for local development)")
    if settings.allowed_target_hosts and not any(host == h or host.endswith("." + h) for h in settings.allowed_target_hosts):
        raise TargetRefused("the target host is not in ALLOWED_TARGET_HOSTS")
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if _non_public(str(literal)):
            raise TargetRefused("the target URL points at a loopback, private, link-local or reserved address")
        return url
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        raise TargetRefused("the target URL points at a local host name")
    if resolve:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError, OSError):
            infos = []  # unresolvable now: checked again on every delivery
        if any(_non_public(info[4][0]) for info in infos):
            raise TargetRefused("the target host resolves to a loopback, private, link-local or reserved address")
    return url
