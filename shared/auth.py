"""Who is calling the management API, and what they may do.

``MANAGEMENT_AUTH`` decides (README: "Who can do what"):
- ``function_key``: the management routes are FUNCTION level, so the Functions host has checked the
  function key before the app runs. Every caller is the key holder, with every right (as before).
- ``entra``: the routes are anonymous at the host and the app itself requires a Microsoft Entra ID
  access token: RS256 only, signed by a key Entra ID publishes (JWKS, cached, refreshed on an unknown
  ``kid``), from an allowed tenant and issuer, for this bridge's audience, within its lifetime.
- ``both``: a token as above, or ``MANAGEMENT_KEY`` (what function-key callers send), compared in
  constant time by the app, since the host no longer checks keys on anonymous routes.

The bridge validates tokens itself and never reads App Service Authentication's
``X-MS-CLIENT-PRINCIPAL*`` headers: anyone can send those where the platform's module is not in front.
"""
from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import BridgeError
from .models import Owner

if TYPE_CHECKING:
    from .http import Request
    from .models import Subscription
    from .settings import Settings

log = logging.getLogger("shared.auth")

LEEWAY_SECONDS = 60              # accepted clock skew on exp / nbf
JWKS_LIFESPAN_SECONDS = 12 * 3600  # as Microsoft.IdentityModel refreshes its metadata
JWKS_COOLDOWN_SECONDS = 300      # at most one forced refresh per 5 min, however many unknown kids arrive
JWKS_TIMEOUT_SECONDS = 5
MAX_TOKEN_LENGTH = 16 * 1024
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BEARER = re.compile(r"^\s*Bearer\s+([A-Za-z0-9\-_.~+/]+=*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Caller:
    """An authenticated management caller."""

    kind: Literal["function_key", "management_key", "entra"]
    tenant_id: str | None = None
    object_id: str | None = None
    name: str | None = None
    email: str | None = None  # the UPN or email Calendly users are matched by
    roles: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False                 # sees and manages every subscription
    organization_scope: bool = False    # may subscribe at organization and group scope

    @property
    def owner(self) -> Owner | None:
        """What this caller's subscriptions record (key holders record none: their ids stay as before)."""
        if self.kind != "entra" or not self.tenant_id or not self.object_id:
            return None
        return Owner(self.tenant_id, self.object_id, self.name)

    def may_manage(self, sub: Subscription) -> bool:
        return self.admin or (self.owner is not None and sub.owned_by(self.owner))

    def describe(self) -> str:
        """For logs: the kind and object id, never a token or key."""
        return f"entra:{self.object_id}" if self.kind == "entra" else self.kind


FUNCTION_KEY_CALLER = Caller("function_key", admin=True, organization_scope=True)
MANAGEMENT_KEY_CALLER = Caller("management_key", admin=True, organization_scope=True)


def unauthenticated(message: str, error: str | None = "invalid_token") -> BridgeError:
    """401 with the RFC 6750 challenge; ``error=None`` when no credential was sent at all."""
    challenge = 'Bearer realm="calendly-bridge"' + (f', error="{error}"' if error else "")
    return BridgeError(401, "unauthenticated", message, {"WWW-Authenticate": challenge})


class EntraTokens:
    """Validates Microsoft Entra ID access tokens with PyJWT; keys from the JWKS via PyJWKClient."""

    def __init__(self, *, tenants: tuple[str, ...], audiences: tuple[str, ...], issuer_templates: tuple[str, ...],
                 jwks_url: str, admin_role: str, organization_role: str, home_tenant: str | None = None,
                 allowed_clients: tuple[str, ...] = (), jwks_lifespan: float = JWKS_LIFESPAN_SECONDS,
                 jwks_cooldown: float = JWKS_COOLDOWN_SECONDS, leeway: float = LEEWAY_SECONDS):
        import jwt  # imported when Entra ID is configured, not at every cold start

        if not tenants or not audiences or not issuer_templates:
            raise ValueError("tenants, audiences and issuer templates are all needed")
        self._jwt = jwt
        self.tenants = frozenset(tenants)
        # Only the home tenant vouches for roles and user names: a partner tenant's admin can assign
        # this app's roles to anyone in *their* directory and name their users anything.
        self.home_tenant = home_tenant or tenants[0]
        self.allowed_clients = frozenset(c.lower() for c in allowed_clients)
        self.audiences = list(audiences)
        self.issuer_templates = issuer_templates
        self.issuers = frozenset(t.format(tenant=tenant) for t in issuer_templates for tenant in tenants)
        self.admin_role = admin_role
        self.organization_role = organization_role
        self.leeway = leeway
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=False, cache_jwk_set=True, lifespan=jwks_lifespan,
                                    timeout=JWKS_TIMEOUT_SECONDS, cooldown_duration=jwks_cooldown,
                                    headers={"User-Agent": "calendly-azure-trigger-bridge/1.0"})

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims once every check passed; else a 401 (or 503 when the keys cannot be fetched)."""
        jwt = self._jwt
        if len(token) > MAX_TOKEN_LENGTH:
            raise unauthenticated("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("the bearer token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise unauthenticated("only RS256-signed Entra ID access tokens are accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise unauthenticated("the token names no signing key (kid)")
        key = self._signing_key(kid)
        try:
            claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=self.audiences, issuer=self.issuers,
                                leeway=self.leeway, options={"require": ["exp", "iss", "aud", "tid", "oid"]})
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthenticated("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("the token is for another audience, not this bridge") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("the token's issuer or tenant is not allowed") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthenticated(f"the token lacks the '{exc.claim}' claim") from None
        except jwt.PyJWTError:
            raise unauthenticated("the token's signature or claims are invalid") from None
        return self._checked(claims)

    def _signing_key(self, kid: str):
        jwt = self._jwt
        try:
            return self.jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("auth outcome=jwks_unavailable error=%s", type(exc.__cause__ or exc).__name__)
            raise BridgeError(503, "identity_provider_unavailable",
                              "Microsoft Entra ID's signing keys could not be fetched; retry", {"Retry-After": "30"}) from None
        except jwt.PyJWKClientError:
            raise unauthenticated("the token is not signed by a key Entra ID publishes") from None
        except jwt.PyJWTError:  # a JWKS that is not a JWK set
            log.warning("auth outcome=jwks_invalid")
            raise BridgeError(503, "identity_provider_unavailable", "Microsoft Entra ID's signing keys could not be read",
                              {"Retry-After": "30"}) from None

    def _checked(self, claims: dict[str, Any]) -> dict[str, Any]:
        tenant, issuer = claims.get("tid"), claims.get("iss")
        if tenant not in self.tenants or issuer not in {t.format(tenant=tenant) for t in self.issuer_templates}:
            raise unauthenticated("the token's issuer or tenant is not allowed")
        if not isinstance(claims.get("oid"), str) or not _GUID.match(claims["oid"]):
            raise unauthenticated("the token's object id (oid) is not a GUID")
        # An access token names the client it was issued to (azp v2, appid v1) and carries delegated
        # scopes (scp) or app roles (roles); an ID token does not, so it cannot stand in for one.
        client = claims.get("azp") or claims.get("appid")
        if not client or not (claims.get("scp") or claims.get("roles")):
            raise unauthenticated("the token is not an access token for this bridge (no scp or roles)")
        if self.allowed_clients and (not isinstance(client, str) or client.lower() not in self.allowed_clients):
            raise BridgeError(403, "client_not_allowed",
                              "the token was issued to a client application that ENTRA_ALLOWED_CLIENT_APPS does not list")
        return claims

    def caller(self, token: str) -> Caller:
        claims = self.claims(token)
        home = claims["tid"] == self.home_tenant
        claimed = claims.get("roles")
        roles = frozenset(r for r in (claimed if isinstance(claimed, list) and home else []) if isinstance(r, str))
        admin = self.admin_role in roles
        return Caller(kind="entra", tenant_id=claims["tid"], object_id=claims["oid"], name=_display_name(claims),
                      email=_user_name(claims) if home else None, roles=roles, admin=admin,
                      organization_scope=admin or self.organization_role in roles)


def _display_name(claims: dict[str, Any]) -> str | None:
    for name in ("preferred_username", "upn", "unique_name", "email", "name", "azp", "appid"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    return None


_ADDRESS = re.compile(r"[A-Za-z0-9.!$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _user_name(claims: dict[str, Any]) -> str | None:
    """The address a Calendly user is matched by, for a home-tenant token only: the user principal
    name (``upn``, v1; ``preferred_username``, v2), which the tenant's admins set within its verified
    domains. Never the ``email`` claim (unverified, user-editable). Plain ASCII only, compared
    ASCII-case-insensitively: ``\u212Aate@…`` (Kelvin sign) is no one's address. Guest UPNs
    (``…#EXT#@…``) are not addresses."""
    for name in ("upn", "preferred_username"):
        value = claims.get(name)
        if isinstance(value, str) and _ADDRESS.fullmatch(value) and "#EXT#" not in value.upper():
            return value.lower()  # ASCII only (checked above): lower() maps A-Z and nothing else
    return None


class Authenticator:
    """``authenticate(request) -> Caller`` for the configured MANAGEMENT_AUTH mode."""

    def __init__(self, mode: str, tokens: EntraTokens | None = None, management_key: str | None = None):
        if mode != "function_key" and tokens is None:
            raise ValueError(f"MANAGEMENT_AUTH={mode} needs Entra ID token validation")
        if mode == "both" and not management_key:
            raise ValueError("MANAGEMENT_AUTH=both needs MANAGEMENT_KEY")
        self.mode = mode
        self.tokens = tokens
        self._key = (management_key or "").encode("utf-8")

    @classmethod
    def from_settings(cls, settings: Settings, **token_options: Any) -> Authenticator:
        settings.require_entra()
        if settings.management_auth == "function_key":
            return cls("function_key")
        tokens = EntraTokens(tenants=settings.entra_tenants, audiences=settings.entra_audiences,
                             issuer_templates=settings.entra_issuers, jwks_url=settings.entra_jwks_url,
                             admin_role=settings.entra_admin_role, organization_role=settings.entra_organization_role,
                             home_tenant=settings.entra_tenant_id, allowed_clients=settings.entra_allowed_client_apps,
                             **token_options)
        return cls(settings.management_auth, tokens, settings.management_key)

    def authenticate(self, req: Request) -> Caller:
        if self.mode == "function_key":
            return FUNCTION_KEY_CALLER  # the host let the request through: it carried a valid function key
        authorization = req.headers.get("Authorization")
        if authorization:
            match = _BEARER.match(authorization)
            if not match:
                raise unauthenticated("the Authorization header must be 'Bearer <Entra ID access token>'")
            if self.tokens is None:  # from_settings always gives entra and both modes their validator
                raise unauthenticated("this bridge does not accept Entra ID tokens")
            return self.tokens.caller(match.group(1))
        if self.mode == "both":
            key = req.headers.get("x-functions-key") or req.params.get("code")
            if key:
                if hmac.compare_digest(key.encode("utf-8"), self._key):
                    return MANAGEMENT_KEY_CALLER
                raise unauthenticated("the management key is not valid", error=None)
        raise unauthenticated("sign in: send a Microsoft Entra ID access token as 'Authorization: Bearer <token>'"
                              + (", or the management key as x-functions-key" if self.mode == "both" else ""), error=None)
