"""A local stand-in for Microsoft Entra ID's token side: RSA signing keys made with ``cryptography``,
their JWKS served on a real socket on 127.0.0.1, and access tokens signed with PyJWT, shaped like
Entra's (v2: ``iss`` https://…/{tenant}/v2.0, ``aud`` = client id, ``azp``; v1: ``iss`` …/{tenant}/,
``aud`` = application ID URI, ``appid``). Plus the forgeries a bridge must refuse.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers import serve_wsgi

TENANT = "6f1f7a9e-2c3b-4d5e-8f90-a1b2c3d4e5f6"
OTHER_TENANT = "0b1c2d3e-4f50-4a6b-9c8d-7e6f5a4b3c2d"
CLIENT_ID = "3c9d2e1f-8a7b-4c6d-9e0f-1a2b3c4d5e6f"
APP_ID_URI = f"api://{CLIENT_ID}"
CONNECTOR_CLIENT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SigningKey:
    def __init__(self, kid: str | None = None):
        self.kid = kid or _b64(uuid.uuid4().bytes)
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "kty": "RSA"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


class LocalIssuer:
    """``with LocalIssuer() as issuer: issuer.token(oid=…)``; ``issuer.jwks_url`` for ENTRA_JWKS_URL."""

    def __init__(self):
        self.keys = [SigningKey()]
        self.jwks_requests = 0
        self.down = False
        self._lock = threading.Lock()
        self.server = None
        self.url = ""

    # The JWKS endpoint ------------------------------------------------------------------
    def __call__(self, environ, start_response):
        with self._lock:
            self.jwks_requests += 1
            keys = [k.jwk() for k in self.keys]
            down = self.down
        if down:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error":"temporarily_unavailable"}']
        body = json.dumps({"keys": keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def start(self) -> "LocalIssuer":
        self.server, self.url = serve_wsgi(self)
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def __enter__(self) -> "LocalIssuer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def settings(self, **extra: str) -> dict[str, str]:
        """The bridge's Entra settings for this issuer: ENTRA_ISSUERS in a v2 and a v1 shape, as Entra ID has."""
        issuers = f"{self.url}/{{tenant}}/v2.0,{self.url}/sts/{{tenant}}/"
        return {"MANAGEMENT_AUTH": "entra", "ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT_ID,
                "ENTRA_ISSUERS": issuers, "ENTRA_JWKS_URL": f"{self.url}/common/discovery/v2.0/keys", **extra}

    def rotate(self, keep_old: bool = False) -> SigningKey:
        """Publish a new signing key; the old one is withdrawn unless ``keep_old``."""
        key = SigningKey()
        with self._lock:
            self.keys = [*self.keys, key] if keep_old else [key]
        return key

    # Tokens ---------------------------------------------------------------------------------
    def claims(self, *, oid: str, tenant: str = TENANT, version: str = "2.0", roles=(), scp: str | None = "Subscriptions.Manage",
               upn: str | None = None, name: str | None = None, expires_in: float = 3600, not_before: float = -5,
               issued_at: float | None = None, **extra) -> dict:
        now = time.time()
        claims = {"iss": f"{self.url}/{tenant}/v2.0" if version == "2.0" else f"{self.url}/sts/{tenant}/",
                  "aud": CLIENT_ID if version == "2.0" else APP_ID_URI, "tid": tenant, "oid": oid, "sub": _b64(oid.encode()),
                  "iat": int(now + (issued_at if issued_at is not None else not_before)), "nbf": int(now + not_before),
                  "exp": int(now + expires_in), "ver": version}
        claims["azp" if version == "2.0" else "appid"] = CONNECTOR_CLIENT
        if scp:
            claims["scp"] = scp
        if roles:
            claims["roles"] = list(roles)
        if upn:
            claims["preferred_username" if version == "2.0" else "upn"] = upn
        if name:
            claims["name"] = name
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict, key: SigningKey | None = None, headers: dict | None = None) -> str:
        key = key or self.keys[-1]
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, **(headers or {})})

    def token(self, key: SigningKey | None = None, **claims) -> str:
        return self.sign(self.claims(**claims), key)

    def unsigned(self, **claims) -> str:
        """``alg: none`` with the published kid: a token anyone can write."""
        header = {"alg": "none", "typ": "JWT", "kid": self.keys[-1].kid}
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**claims)).encode())}."

    def hs256_with_public_key(self, **claims) -> str:
        """HS256 keyed with the issuer's *public* key (the classic algorithm-confusion forgery)."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.keys[-1].kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**claims)).encode())}"
        mac = hmac.new(self.keys[-1].public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def without_kid(self, **claims) -> str:
        return jwt.encode(self.claims(**claims), self.keys[-1].private, algorithm="RS256")


class SignInServer:
    """Microsoft Entra ID's sign-in side for a browser, on 127.0.0.1 over HTTPS (MSAL refuses an
    authority that is not https; the browser is told to accept this self-signed certificate): the
    OpenID configuration, the authorize endpoint (the user named by ``user`` signs in at once and is
    sent back with a code), and the token endpoint (authorization code + PKCE S256 → an ID token and an
    access token for the bridge signed by ``issuer``'s key, with Entra's ``client_info``; CORS as Entra
    answers a single-page app). ``settings()`` lists its issuer first, so the bridge and the console
    take it as the home tenant's authority."""

    def __init__(self, issuer: LocalIssuer, directory):
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import parse_qs, urlencode, urlsplit

        from tests.fake_keyvault import https_server, make_certificate

        self.issuer = issuer
        self.user: dict = {}
        self.codes: dict[str, dict] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "*",
                                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS", "Content-Type": "application/json",
                                    "Content-Length": str(len(data)), **(headers or {})}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_OPTIONS(self):
                self._send(204)

            def do_GET(self):
                parts = urlsplit(self.path)
                server.requests.append(f"GET {parts.path}")
                if parts.path.endswith("/v2.0/.well-known/openid-configuration"):
                    return self._send(200, server.metadata())
                if parts.path.endswith("/oauth2/v2.0/authorize"):
                    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    code = uuid.uuid4().hex
                    server.codes[code] = {**query, "user": dict(server.user)}
                    reply = {"code": code, "state": query.get("state", ""), "client_info": server.client_info(),
                             "session_state": uuid.uuid4().hex}
                    joiner = "#" if query.get("response_mode", "fragment") == "fragment" else ("&" if "?" in query["redirect_uri"] else "?")
                    return self._send(302, None, {"Location": query["redirect_uri"] + joiner + urlencode(reply)})
                return self._send(404, {"error": "not_found"})

            def do_POST(self):
                parts = urlsplit(self.path)
                server.requests.append(f"POST {parts.path}")
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if not parts.path.endswith("/oauth2/v2.0/token"):
                    return self._send(404, {"error": "not_found"})
                grant = server.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if grant is None or challenge != grant.get("code_challenge") or form.get("client_id") != grant.get("client_id"):
                    return self._send(400, {"error": "invalid_grant", "error_description": "AADSTS70008: bad code or PKCE verifier"})
                return self._send(200, server.tokens(grant))

        self.cert_path, key_path = make_certificate(directory)
        self._server, self.url, self._thread = https_server(Handler, self.cert_path, key_path)

    def start(self) -> SignInServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def issuer_v2(self) -> str:
        return f"{self.url}/{TENANT}/v2.0"

    def settings(self, **extra: str) -> dict[str, str]:
        """The issuer's settings with this server's issuer first (the home tenant's sign-in authority)."""
        settings = self.issuer.settings(**extra)
        settings["ENTRA_ISSUERS"] = f"{self.url}/{{tenant}}/v2.0," + settings["ENTRA_ISSUERS"]
        return settings

    def metadata(self) -> dict:
        base = f"{self.url}/{TENANT}"
        return {"issuer": self.issuer_v2, "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token", "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "jwks_uri": f"{self.issuer.url}/common/discovery/v2.0/keys", "response_types_supported": ["code", "id_token"],
                "response_modes_supported": ["query", "fragment", "form_post"], "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "tid", "oid", "preferred_username"],
                "tenant_region_scope": None, "cloud_instance_name": "microsoftonline.com", "http_logout_supported": True,
                "frontchannel_logout_supported": True, "request_uri_parameter_supported": False}

    def client_info(self) -> str:
        info = json.dumps({"uid": self.user.get("oid", ""), "utid": TENANT}).encode()
        return base64.urlsafe_b64encode(info).rstrip(b"=").decode()

    def tokens(self, grant: dict) -> dict:
        user, now = grant["user"], int(time.time())
        id_token = self.issuer.sign({"aud": grant["client_id"], "iss": self.issuer_v2, "iat": now, "nbf": now, "exp": now + 3600,
                                     "name": user.get("name"), "oid": user["oid"], "preferred_username": user.get("upn"),
                                     "sub": _b64(user["oid"].encode()), "tid": TENANT, "nonce": grant.get("nonce"), "ver": "2.0"})
        access = self.issuer.token(oid=user["oid"], upn=user.get("upn"), name=user.get("name"), roles=user.get("roles", ()),
                                   scp="user_impersonation", iss=self.issuer_v2, azp=grant["client_id"])
        return {"token_type": "Bearer", "scope": grant.get("scope", ""), "expires_in": 3600, "ext_expires_in": 3600,
                "access_token": access, "refresh_token": uuid.uuid4().hex, "id_token": id_token,
                "client_info": self.client_info()}
