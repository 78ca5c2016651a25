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
