"""The operator console (README "Console"): one static page and its two assets, shipped inside the
app (``shared/console_assets``), no build step and nothing loaded from elsewhere at run time.

The page holds no data: it signs in and then calls the management API like any client, so owners and
roles apply exactly as for the API. What is served here is safe by construction: a Content-Security-
Policy allowing only this app's own script and style (no inline script, no framing), ``nosniff``,
no referrer, and ``no-store`` (the API's answers carry it too: ``shared.api.management``).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from .http import Response

ASSETS = Path(__file__).resolve().parent / "console_assets"
TYPES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
           "Cross-Origin-Opener-Policy": "same-origin"}


@cache
def _read(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def page() -> Response:
    return Response(200, _read("index.html"), {"Content-Type": "text/html; charset=utf-8", **HEADERS})


def asset(name: str) -> Response | None:
    """One of the page's assets by exact name (nothing else of the folder, no paths); None: not one."""
    if name not in TYPES:
        return None
    return Response(200, _read(name), {"Content-Type": TYPES[name], **HEADERS})
