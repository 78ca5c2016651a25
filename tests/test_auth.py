"""Management authentication (shared/auth.py) with real RS256 tokens from a local issuer whose JWKS
is served on a real socket: what is accepted, what is refused, and how the keys are fetched."""
from __future__ import annotations

import pytest

from shared.auth import Authenticator
from shared.errors import BridgeError, SettingsError
from shared.http import Request
from shared.settings import Settings
from tests.entra_issuer import APP_ID_URI, CLIENT_ID, OTHER_TENANT, TENANT, LocalIssuer

ALICE = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def issuer():
    with LocalIssuer() as running:
        yield running


def authenticator(issuer: LocalIssuer, cooldown: float = 0, **settings: str) -> Authenticator:
    return Authenticator.from_settings(Settings.from_env(issuer.settings(**settings)), jwks_cooldown=cooldown)


def request(token: str | None = None, headers: dict | None = None, params: dict | None = None) -> Request:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return Request("GET", "http://127.0.0.1:7071/api/subscriptions", headers=headers, params=params or {})


def refused(auth: Authenticator, req: Request) -> BridgeError:
    with pytest.raises(BridgeError) as caught:
        auth.authenticate(req)
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    return caught.value


# Accepted -------------------------------------------------------------------------------------
def test_a_valid_v2_token_is_accepted_with_its_owner_roles_and_email(issuer):
    caller = authenticator(issuer).authenticate(request(issuer.token(oid=ALICE, upn="Alice@Contoso.com", roles=["Calendly.Organization"])))
    assert (caller.kind, caller.tenant_id, caller.object_id) == ("entra", TENANT, ALICE)
    assert caller.email == "alice@contoso.com" and caller.name == "Alice@Contoso.com"
    assert caller.organization_scope and not caller.admin
    assert caller.owner.object_id == ALICE and caller.describe() == f"entra:{ALICE}"


def test_a_valid_v1_token_for_the_application_id_uri_is_accepted(issuer):
    token = issuer.token(oid=ALICE, version="1.0", upn="alice@contoso.com")
    caller = authenticator(issuer).authenticate(request(token))
    assert caller.object_id == ALICE and caller.email == "alice@contoso.com"


def test_an_app_only_managed_identity_token_with_a_role_is_accepted_without_an_email(issuer):
    token = issuer.token(oid=ALICE, scp=None, roles=["Bridge.Maker"])
    caller = authenticator(issuer).authenticate(request(token))
    assert caller.email is None and caller.roles == {"Bridge.Maker"} and not caller.organization_scope


def test_the_admin_role_is_configurable_and_implies_organization_scope(issuer):
    auth = authenticator(issuer, ENTRA_ADMIN_ROLE="Ops.All")
    assert not auth.authenticate(request(issuer.token(oid=ALICE, roles=["Bridge.Admin"]))).admin
    caller = auth.authenticate(request(issuer.token(oid=ALICE, roles=["Ops.All"])))
    assert caller.admin and caller.organization_scope


def test_a_token_within_the_clock_skew_is_accepted(issuer):
    auth = authenticator(issuer)
    assert auth.authenticate(request(issuer.token(oid=ALICE, expires_in=-20))).object_id == ALICE
    assert auth.authenticate(request(issuer.token(oid=ALICE, not_before=20))).object_id == ALICE


def test_an_allow_listed_second_tenant_is_accepted(issuer):
    auth = authenticator(issuer, ENTRA_ALLOWED_TENANTS=OTHER_TENANT)
    assert auth.authenticate(request(issuer.token(oid=ALICE, tenant=OTHER_TENANT))).tenant_id == OTHER_TENANT


# Refused ----------------------------------------------------------------------------------------
def test_no_credential_is_refused_with_a_bare_bearer_challenge(issuer):
    error = refused(authenticator(issuer), request())
    assert "error=" not in error.headers["WWW-Authenticate"] and "Bearer" in error.message


def test_wrong_audience_is_refused(issuer):
    token = issuer.token(oid=ALICE, aud="api://someone-else")
    assert "audience" in refused(authenticator(issuer), request(token)).message


def test_the_application_id_uri_is_only_the_default_audience_when_none_is_set(issuer):
    token = issuer.token(oid=ALICE, version="1.0")
    refused(authenticator(issuer, ENTRA_APP_ID_URI="api://bridge.contoso.com"), request(token))
    assert authenticator(issuer, ENTRA_APP_ID_URI=APP_ID_URI).authenticate(request(token)).object_id == ALICE


def test_a_tenant_that_is_not_allowed_is_refused(issuer):
    token = issuer.token(oid=ALICE, tenant=OTHER_TENANT)
    assert "tenant" in refused(authenticator(issuer), request(token)).message


def test_a_tid_that_contradicts_the_issuer_is_refused(issuer):
    claims = issuer.claims(oid=ALICE, tenant=OTHER_TENANT)
    claims["iss"] = f"{issuer.url}/{TENANT}/v2.0"  # an allowed issuer, another tenant's tid
    refused(authenticator(issuer, ENTRA_ALLOWED_TENANTS=OTHER_TENANT), request(issuer.sign(claims)))
    assert authenticator(issuer, ENTRA_ALLOWED_TENANTS=OTHER_TENANT).authenticate(
        request(issuer.token(oid=ALICE, tenant=OTHER_TENANT))).tenant_id == OTHER_TENANT


def test_an_expired_token_is_refused(issuer):
    assert "expired" in refused(authenticator(issuer), request(issuer.token(oid=ALICE, expires_in=-120))).message


def test_a_token_not_valid_yet_is_refused(issuer):
    refused(authenticator(issuer), request(issuer.token(oid=ALICE, not_before=600, issued_at=0)))


def test_alg_none_is_refused(issuer):
    assert "RS256" in refused(authenticator(issuer), request(issuer.unsigned(oid=ALICE))).message


def test_hs256_signed_with_the_public_key_is_refused(issuer):
    assert "RS256" in refused(authenticator(issuer), request(issuer.hs256_with_public_key(oid=ALICE))).message


def test_a_token_without_kid_is_refused_without_fetching_keys(issuer):
    auth = authenticator(issuer)
    before = issuer.jwks_requests
    assert "kid" in refused(auth, request(issuer.without_kid(oid=ALICE))).message
    assert issuer.jwks_requests == before


def test_a_token_signed_by_an_unpublished_key_is_refused(issuer):
    from tests.entra_issuer import SigningKey

    stranger = SigningKey(kid=issuer.keys[-1].kid)  # the published kid, another private key
    refused(authenticator(issuer), request(issuer.token(key=stranger, oid=ALICE)))


def test_an_id_token_is_not_an_access_token(issuer):
    claims = issuer.claims(oid=ALICE, scp=None, upn="alice@contoso.com", nonce="n")
    del claims["azp"]
    assert "access token" in refused(authenticator(issuer), request(issuer.sign(claims))).message


def test_tokens_missing_tid_or_oid_are_refused(issuer):
    auth = authenticator(issuer)
    for claim in ("tid", "oid"):
        claims = issuer.claims(oid=ALICE)
        del claims[claim]
        refused(auth, request(issuer.sign(claims)))
    refused(auth, request(issuer.token(oid="not-a-guid")))


def test_garbage_and_wrong_schemes_are_refused(issuer):
    auth = authenticator(issuer)
    for header in ("Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 20000, "Bearer a b"):
        refused(auth, request(headers={"Authorization": header}))


def test_app_service_principal_headers_are_never_trusted(issuer):
    """Without a token, a forged X-MS-CLIENT-PRINCIPAL (what App Service Authentication would add) gets nothing."""
    forged = {"X-MS-CLIENT-PRINCIPAL-ID": ALICE, "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com",
              "X-MS-CLIENT-PRINCIPAL": "eyJhdXRoX3R5cCI6ImFhZCIsImNsYWltcyI6W119"}
    refused(authenticator(issuer), request(headers=forged))


# Keys: fetched, cached, refreshed on an unknown kid, rotated ------------------------------------
def test_keys_are_fetched_once_and_cached(issuer):
    auth = authenticator(issuer)
    for _ in range(5):
        auth.authenticate(request(issuer.token(oid=ALICE)))
    assert issuer.jwks_requests == 1


def test_rotated_keys_new_key_fetched_on_its_unknown_kid_and_the_withdrawn_key_refused(issuer):
    auth = authenticator(issuer)
    old = issuer.keys[-1]
    auth.authenticate(request(issuer.token(oid=ALICE)))
    new = issuer.rotate()  # Entra ID publishes a new key and withdraws the old one
    assert auth.authenticate(request(issuer.token(key=new, oid=ALICE))).object_id == ALICE
    assert issuer.jwks_requests == 2
    refused(auth, request(issuer.token(key=old, oid=ALICE)))


def test_unknown_kids_cannot_make_the_bridge_hammer_the_jwks_endpoint(issuer):
    from tests.entra_issuer import SigningKey

    auth = authenticator(issuer, cooldown=300)
    auth.authenticate(request(issuer.token(oid=ALICE)))
    for _ in range(20):
        refused(auth, request(issuer.token(key=SigningKey(), oid=ALICE)))
    assert issuer.jwks_requests == 1  # the cooldown holds back forced refreshes


def test_jwks_endpoint_down_is_a_503_not_a_401(issuer):
    issuer.down = True
    with pytest.raises(BridgeError) as caught:
        authenticator(issuer).authenticate(request(issuer.token(oid=ALICE)))
    assert (caught.value.status, caught.value.code) == (503, "identity_provider_unavailable")
    assert caught.value.headers["Retry-After"]


# Modes -------------------------------------------------------------------------------------------
def test_function_key_mode_trusts_the_host_and_gives_the_key_holder_every_right():
    caller = Authenticator.from_settings(Settings.from_env({})).authenticate(request())
    assert caller.kind == "function_key" and caller.admin and caller.organization_scope and caller.owner is None


def test_both_mode_takes_a_token_or_the_management_key_and_nothing_else(issuer):
    key = "k" * 40
    auth = authenticator(issuer, MANAGEMENT_AUTH="both", MANAGEMENT_KEY=key)
    assert auth.authenticate(request(headers={"x-functions-key": key})).kind == "management_key"
    assert auth.authenticate(request(params={"code": key})).kind == "management_key"
    assert auth.authenticate(request(issuer.token(oid=ALICE))).kind == "entra"
    refused(auth, request(headers={"x-functions-key": key[:-1] + "x"}))
    refused(auth, request())


def test_entra_mode_ignores_function_keys(issuer):
    refused(authenticator(issuer), request(headers={"x-functions-key": "k" * 40}, params={"code": "k" * 40}))


@pytest.mark.parametrize("env, missing", [
    ({"MANAGEMENT_AUTH": "entra", "ENTRA_CLIENT_ID": CLIENT_ID}, "ENTRA_TENANT_ID"),
    ({"MANAGEMENT_AUTH": "entra", "ENTRA_TENANT_ID": TENANT}, "ENTRA_CLIENT_ID"),
    ({"MANAGEMENT_AUTH": "both", "ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT_ID}, "MANAGEMENT_KEY"),
])
def test_a_missing_entra_setting_is_named(env, missing):
    with pytest.raises(SettingsError) as caught:
        Authenticator.from_settings(Settings.from_env(env))
    assert caught.value.setting == missing


@pytest.mark.parametrize("name, value", [("MANAGEMENT_AUTH", "entraid"), ("ENTRA_TENANT_ID", "contoso"),
                                         ("ENTRA_ISSUERS", "https://login.microsoftonline.com/v2.0"),
                                         ("MANAGEMENT_KEY", "short")])
def test_invalid_entra_settings_are_named(name, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert caught.value.setting == name
    if name == "MANAGEMENT_KEY":  # a secret is named, never echoed
        assert value not in str(caught.value)


def test_the_host_auth_level_follows_the_mode_and_fails_closed():
    from shared.hostauth import management_host_auth_level as level

    assert level({}) == "FUNCTION" and level({"MANAGEMENT_AUTH": "function_key"}) == "FUNCTION"
    assert level({"MANAGEMENT_AUTH": "entra"}) == level({"MANAGEMENT_AUTH": "both"}) == "ANONYMOUS"
    with pytest.raises(SettingsError, match="MANAGEMENT_AUTH"):  # unknown: no function is indexed on a guess
        level({"MANAGEMENT_AUTH": "Entra"})


# Only the home tenant vouches for roles and user names ------------------------------------------
def test_a_partner_tenants_roles_and_user_names_count_for_nothing(issuer):
    auth = authenticator(issuer, ENTRA_ALLOWED_TENANTS=OTHER_TENANT)
    partner = auth.authenticate(request(issuer.token(oid=ALICE, tenant=OTHER_TENANT, upn="kate@contoso.com",
                                                     roles=["Bridge.Admin", "Calendly.Organization"])))
    assert (partner.admin, partner.organization_scope, partner.roles, partner.email) == (False, False, frozenset(), None)
    assert partner.owner.tenant_id == OTHER_TENANT  # still the owner of what they make
    home = auth.authenticate(request(issuer.token(oid=ALICE, upn="kate@contoso.com", roles=["Bridge.Admin"])))
    assert home.admin and home.organization_scope and home.email == "kate@contoso.com"


@pytest.mark.parametrize("claims, email", [
    ({"upn": "Kate@Contoso.com"}, "kate@contoso.com"),
    ({"upn": "\u212Aate@contoso.com"}, None),                     # Kelvin sign: lower() would give kate@…
    ({"upn": "kate@contoso.com\u200b"}, None), ({"upn": "kat\u00e9@contoso.com"}, None),
    ({"upn": "k\u0130te@contoso.com"}, None),                     # dotted capital I
    ({"email": "kate@contoso.com"}, None),                       # unverified, user-editable: never used
    ({"upn": "kate_contoso.com#EXT#@fabrikam.onmicrosoft.com"}, None),  # a guest's UPN is not an address
    ({"upn": "kate@contoso.com kate@evil.example"}, None), ({"upn": "not-an-address"}, None),
])
def test_the_user_name_is_plain_ascii_from_upn_or_preferred_username_only(issuer, claims, email):
    for version, name in (("1.0", "upn"), ("2.0", "preferred_username")):
        extra = {name if key == "upn" else key: value for key, value in claims.items()}
        caller = authenticator(issuer).authenticate(request(issuer.token(oid=ALICE, version=version, **extra)))
        assert caller.email == email, (version, extra)


def test_allowed_client_apps_refuse_a_token_issued_to_another_client(issuer):
    from tests.entra_issuer import CONNECTOR_CLIENT

    other = "99999999-9999-4999-8999-999999999999"
    auth = authenticator(issuer, ENTRA_ALLOWED_CLIENT_APPS=f"{other},{CONNECTOR_CLIENT.upper()}")
    assert auth.authenticate(request(issuer.token(oid=ALICE))).object_id == ALICE  # azp = the connector
    assert auth.authenticate(request(issuer.token(oid=ALICE, version="1.0"))).object_id == ALICE  # appid
    with pytest.raises(BridgeError) as caught:
        authenticator(issuer, ENTRA_ALLOWED_CLIENT_APPS=other).authenticate(request(issuer.token(oid=ALICE)))
    assert caught.value.status == 403 and caught.value.code == "client_not_allowed"
