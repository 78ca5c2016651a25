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
from urllib.parse import urlsplit

from .http import Response
from .settings import Settings

ASSETS = Path(__file__).resolve().parent / "console_assets"
TYPES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8",
         "msal-browser.min.js": "text/javascript; charset=utf-8"}  # MSAL: vendored, see console_assets/VENDORED.md
SIGN_IN_SCOPE = "user_impersonation"  # the delegated scope of the bridge's registration (infra/entra/api.json)


def content_security_policy(sign_in_origin: str | None = None) -> str:
    """Only this app's own script and style; fetch to this app and, with Entra ID, to the sign-in
    authority (MSAL redeems the authorization code there); no inline script, no framing."""
    connect = "'self'" + (f" {sign_in_origin}" if sign_in_origin else "")
    return ("default-src 'none'; script-src 'self'; style-src 'self'; " f"connect-src {connect}; img-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def headers(sign_in_origin: str | None = None) -> dict[str, str]:
    return {"Content-Security-Policy": content_security_policy(sign_in_origin), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin"}


HEADERS = headers()


def sign_in(settings: Settings) -> dict | None:
    """How the page signs a user in with Microsoft Entra ID (MSAL, authorization code + PKCE), or None
    without Entra ID: the registration's client id, the home tenant's authority (the first v2.0 issuer
    of ENTRA_ISSUERS, e.g. https://login.microsoftonline.com/<tenant>) and the API scope. Public values:
    every sign-in request carries them."""
    if settings.management_auth == "function_key" or not settings.entra_client_id or not settings.entra_tenant_id:
        return None
    template = next((i for i in settings.entra_issuers if i.rstrip("/").endswith("/v2.0")), None)
    if template is None:
        return None
    authority = template.format(tenant=settings.entra_tenant_id).rstrip("/").removesuffix("/v2.0")
    audience = settings.entra_app_id_uri or f"api://{settings.entra_client_id}"
    return {"client_id": settings.entra_client_id, "authority": authority, "known_authority": urlsplit(authority).netloc,
            "scopes": [f"{audience}/{SIGN_IN_SCOPE}"]}


def sign_in_origin(settings: Settings) -> str | None:
    found = sign_in(settings)
    if not found:
        return None
    parts = urlsplit(found["authority"])
    return f"{parts.scheme}://{parts.netloc}"


@cache
def _read(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def page(settings: Settings | None = None) -> Response:
    origin = sign_in_origin(settings) if settings else None
    return Response(200, _read("index.html"), {"Content-Type": "text/html; charset=utf-8", **headers(origin)})


def asset(name: str) -> Response | None:
    """One of the page's assets by exact name (nothing else of the folder, no paths); None: not one."""
    if name not in TYPES:
        return None
    return Response(200, _read(name), {"Content-Type": TYPES[name], **HEADERS})
