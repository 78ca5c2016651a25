"""Calendly webhook signatures: ``Calendly-Webhook-Signature: t=<unix>,v1=<hex>``.

``v1`` is HMAC-SHA256 over ``"<t>." + raw body`` keyed with the subscription's
signing key. Pure functions, no I/O: check them against Calendly's docs in a minute.
"""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Calendly-Webhook-Signature"
MAX_HEADER_LENGTH = 1024


class SignatureError(Exception):
    """The signature header is missing, malformed, wrong or outside the tolerance."""


def sign(body: bytes, key: str, timestamp: int | None = None) -> str:
    """Return the header value Calendly would send for ``body``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(body, key, t)}"


def _digest(body: bytes, key: str, t: int) -> str:
    return hmac.new(key.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def parse(header: str | None) -> tuple[int, list[str]]:
    """Split a header into its timestamp and its ``v1`` signatures; never raises but SignatureError."""
    if not header:
        raise SignatureError("missing Calendly-Webhook-Signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("Calendly-Webhook-Signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed Calendly-Webhook-Signature header")
        if name == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed timestamp in Calendly-Webhook-Signature header")
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError("Calendly-Webhook-Signature header needs t= and v1=")
    return timestamp, signatures


def verify(body: bytes, header: str | None, key: str, tolerance: int, now: float | None = None) -> int:
    """Verify ``header`` for ``body``; return its timestamp or raise SignatureError."""
    timestamp, signatures = parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("Calendly-Webhook-Signature timestamp is outside the tolerance")
    expected = _digest(body, key, timestamp).encode("ascii")
    # Compare every candidate in constant time; never short-circuit on a prefix.
    if not any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace")) for candidate in signatures):
        raise SignatureError("Calendly-Webhook-Signature does not match the body")
    return timestamp
