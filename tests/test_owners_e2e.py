"""Owners and roles end to end over real sockets: the local host (``python -m shared serve``) with
MANAGEMENT_AUTH=entra, the Calendly sandbox (with organization memberships), a recording target,
and a local Entra ID issuer whose JWKS the bridge fetches. Two makers, an admin, an organization-role
holder, each with real RS256 tokens."""
from __future__ import annotations

import json
import re

import pytest
import requests

from shared import signatures
from tests.conftest import sandbox_hooks, sandbox_requests
from tests.entra_issuer import TENANT, LocalIssuer

ALICE = "aaaaaaaa-1111-4111-8111-111111111111"
BOB = "bbbbbbbb-2222-4222-8222-222222222222"
ADMIN = "cccccccc-3333-4333-8333-333333333333"
OLGA = "dddddddd-4444-4444-8444-444444444444"
STRANGER = "eeeeeeee-5555-4555-8555-555555555555"


@pytest.fixture(scope="module")
def issuer():
    with LocalIssuer() as running:
        yield running


@pytest.fixture
def people(issuer, sandbox):
    """Bearer tokens for each person; Alice and Bob are Calendly users of the sandbox's organization."""
    members = {who: sandbox.app.add_member(f"{who}@contoso.com", who.title())["user"]["uri"] for who in ("alice", "bob")}
    tokens = {
        "alice": issuer.token(oid=ALICE, upn="alice@contoso.com"),
        "bob": issuer.token(oid=BOB, upn="Bob@Contoso.com", version="1.0"),
        "admin": issuer.token(oid=ADMIN, upn="admin@contoso.com", roles=["Bridge.Admin"]),
        "olga": issuer.token(oid=OLGA, upn="olga@contoso.com", roles=["Calendly.Organization"]),
        "stranger": issuer.token(oid=STRANGER, upn="stranger@contoso.com"),
        "robot": issuer.token(oid=STRANGER, scp=None, roles=["Bridge.Maker"]),  # a Logic App's managed identity
    }
    return {"tokens": tokens, "calendly": members}


@pytest.fixture
def bridge(make_host, issuer):
    return make_host(**issuer.settings())


def call(bridge, people, who, method, path, **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if who is not None:
        headers["Authorization"] = f"Bearer {people['tokens'][who]}"
    return bridge.api(method, path, headers=headers, **kwargs)


def subscribe_as(bridge, people, who, target, path="/flow", **body):
    body = {"url": f"{target.url}{path}?sig=SECRET{who}", "events": ["invitee.created"], "scope": "user", **body}
    return call(bridge, people, who, "POST", "/subscriptions", json=body)


def ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {s["id"] for s in response.json()["value"]}


def error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


# Authentication on the wire ---------------------------------------------------------------
def test_without_a_token_management_is_401_json_and_the_callback_and_health_stay_anonymous(bridge, people):
    response = bridge.api("GET", "/subscriptions")
    assert error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert bridge.api("GET", "/health").status_code == 200
    assert bridge.api("POST", "/calendly/events/" + "0" * 32, data=b"{}").status_code == 404  # reached the app: no such sub
    forged = bridge.api("GET", "/subscriptions", headers={"X-MS-CLIENT-PRINCIPAL-ID": ADMIN,
                                                         "X-MS-CLIENT-PRINCIPAL-NAME": "admin@contoso.com"})
    assert forged.status_code == 401


def test_a_forged_or_expired_token_is_401_over_the_wire(bridge, people, issuer):
    for token in (issuer.unsigned(oid=ADMIN, roles=["Bridge.Admin"]), issuer.hs256_with_public_key(oid=ADMIN),
                  issuer.token(oid=ADMIN, expires_in=-3600), issuer.token(oid=ADMIN, aud="api://other")):
        response = bridge.api("GET", "/subscriptions", headers={"Authorization": f"Bearer {token}"})
        assert error(response, 401, "unauthenticated")
        assert token not in bridge.logs()


# Ownership --------------------------------------------------------------------------------
def test_each_maker_sees_only_their_own_and_the_admin_sees_all(bridge, people, target, sandbox):
    alice = subscribe_as(bridge, people, "alice", target)
    bob = subscribe_as(bridge, people, "bob", target)
    assert (alice.status_code, bob.status_code) == (201, 201), (alice.text, bob.text)
    a, b = alice.json(), bob.json()
    assert a["owner"] == {"tenant_id": TENANT, "object_id": ALICE, "name": "alice@contoso.com"}
    assert b["owner"]["object_id"] == BOB and a["user"] == people["calendly"]["alice"] and b["user"] == people["calendly"]["bob"]
    assert ids(call(bridge, people, "alice", "GET", "/subscriptions")) == {a["id"]}
    assert ids(call(bridge, people, "bob", "GET", "/subscriptions")) == {b["id"]}
    assert ids(call(bridge, people, "admin", "GET", "/subscriptions")) == {a["id"], b["id"]}
    assert ids(call(bridge, people, "admin", "GET", f"/subscriptions?owner={ALICE}")) == {a["id"]}
    assert ids(call(bridge, people, "stranger", "GET", "/subscriptions")) == set()
    error(call(bridge, people, "bob", "GET", f"/subscriptions?owner={ALICE}"), 403, "forbidden")
    error(call(bridge, people, "admin", "GET", "/subscriptions?owner=alice"), 400, "invalid_owner")
    assert call(bridge, people, "alice", "GET", f"/subscriptions?owner={ALICE}").status_code == 200


def test_another_owners_subscription_is_404_for_reads_tests_and_replays_and_untouched_by_deletes(bridge, people, target, sandbox):
    sub = subscribe_as(bridge, people, "alice", target).json()
    path = f"/subscriptions/{sub['id']}"
    error(call(bridge, people, "bob", "GET", path), 404, "subscription_not_found")
    error(call(bridge, people, "bob", "GET", f"{path}/deliveries"), 404, "subscription_not_found")
    error(call(bridge, people, "bob", "POST", f"{path}/test", json={}), 404, "subscription_not_found")
    # Calendly delivers an event to Alice's flow; Bob cannot replay it.
    assert call(bridge, people, "alice", "POST", f"{path}/test", json={}).status_code == 200
    [delivery] = call(bridge, people, "alice", "GET", f"{path}/deliveries").json()["value"]
    error(call(bridge, people, "bob", "POST", f"/deliveries/{delivery['id']}/replay"), 404, "delivery_not_found")
    assert call(bridge, people, "alice", "POST", f"/deliveries/{delivery['id']}/replay").status_code == 200
    # Deleting someone else's: as for an id that is not there (204, no existence oracle), and nothing happens.
    assert call(bridge, people, "bob", "DELETE", path).status_code == 204
    assert call(bridge, people, "bob", "DELETE", "/subscriptions", params={"callbackUrl": f"{target.url}/flow?sig=SECRETalice"}).status_code == 204
    assert call(bridge, people, "alice", "GET", path).status_code == 200 and len(sandbox_hooks(sandbox)) == 1
    # The admin manages everyone's.
    assert call(bridge, people, "admin", "GET", path).status_code == 200
    assert call(bridge, people, "admin", "DELETE", path).status_code == 204
    assert call(bridge, people, "alice", "GET", path).status_code == 404 and sandbox_hooks(sandbox) == []


def test_subscribe_is_idempotent_per_owner_and_two_owners_of_one_target_get_two(bridge, people, target, sandbox):
    first = subscribe_as(bridge, people, "olga", target, scope="organization")
    again = subscribe_as(bridge, people, "olga", target, scope="organization")
    admin = subscribe_as(bridge, people, "admin", target, scope="organization")
    assert (first.status_code, again.status_code, admin.status_code) == (201, 200, 201)
    assert first.headers["Location"] == again.headers["Location"] != admin.headers["Location"]
    assert len(sandbox_hooks(sandbox)) == 2
    # Each owner's Calendly hook signs with its own key and reaches the same flow.
    hooks = {hook["uri"]: hook["callback_url"] for hook in sandbox_hooks(sandbox)}
    for sub in (first.json(), admin.json()):
        url = hooks[sub["calendly_webhook"]]  # the callback URL Calendly was given
        body = json.dumps({"event": "invitee.created", "payload": {"uri": f"https://api.calendly.com/x/{sub['id']}"}}).encode()
        headers = {"Content-Type": "application/json", signatures.HEADER: signatures.sign(body, sandbox.app.signing_key(url))}
        assert requests.post(url, data=body, headers=headers, timeout=30).status_code == 200
    assert len(target.wait_for(2)) == 2


def test_unsubscribe_by_callback_url_removes_only_the_callers_own(bridge, people, target, sandbox):
    url = f"{target.url}/shared-flow?sig=S"
    for who in ("alice", "bob"):
        assert call(bridge, people, who, "POST", "/subscriptions", json={"url": url, "events": ["invitee.created"], "scope": "user"}).status_code == 201
    assert call(bridge, people, "alice", "DELETE", "/subscriptions", params={"callbackUrl": url}).status_code == 204
    assert ids(call(bridge, people, "alice", "GET", "/subscriptions")) == set()
    assert len(ids(call(bridge, people, "bob", "GET", "/subscriptions"))) == 1 and len(sandbox_hooks(sandbox)) == 1


# Scope rules ------------------------------------------------------------------------------
def test_a_maker_cannot_take_organization_or_group_scope(bridge, people, target):
    message = error(subscribe_as(bridge, people, "alice", target, scope="organization"), 403, "scope_forbidden")
    assert "Calendly.Organization" in message
    error(subscribe_as(bridge, people, "alice", target, scope="group", group="https://api.calendly.com/groups/G1"), 403, "scope_forbidden")
    assert subscribe_as(bridge, people, "olga", target, scope="organization").status_code == 201
    assert subscribe_as(bridge, people, "admin", target, scope="group", group="https://api.calendly.com/groups/G1").status_code == 201


def test_a_maker_cannot_take_another_calendly_users_scope(bridge, people, target):
    message = error(subscribe_as(bridge, people, "alice", target, user=people["calendly"]["bob"]), 403, "scope_forbidden")
    assert people["calendly"]["alice"] in message
    own = subscribe_as(bridge, people, "alice", target, user=people["calendly"]["alice"])
    assert own.status_code == 201 and own.json()["user"] == people["calendly"]["alice"]
    assert subscribe_as(bridge, people, "olga", target, user=people["calendly"]["bob"]).status_code == 201


def test_a_caller_without_a_calendly_user_gets_403_saying_why(bridge, people, target):
    assert "stranger@contoso.com" in error(subscribe_as(bridge, people, "stranger", target), 403, "scope_forbidden")
    assert "no user principal name" in error(subscribe_as(bridge, people, "robot", target), 403, "scope_forbidden")


def test_the_calendly_user_lookup_is_cached(bridge, people, target, sandbox):
    for path in ("/one", "/two", "/three"):
        assert subscribe_as(bridge, people, "alice", target, path=path).status_code == 201
    lookups = [r for r in sandbox_requests(sandbox) if r["path"] == "/organization_memberships"]
    assert len(lookups) == 1 and "email=alice%40contoso.com" in lookups[0]["query"]


# Audit --------------------------------------------------------------------------------------
def test_every_management_call_is_audited_with_who_what_and_which_never_the_token(bridge, people, target):
    sub = subscribe_as(bridge, people, "alice", target).json()
    call(bridge, people, "bob", "GET", f"/subscriptions/{sub['id']}")
    bridge.api("GET", "/subscriptions")
    logs = bridge.logs()
    assert re.search(rf"audit outcome=ok action=subscribe caller=entra:{ALICE} tenant={TENANT} subscription={sub['id']} status=201", logs)
    call(bridge, people, "bob", "DELETE", f"/subscriptions/{sub['id']}")
    logs = bridge.logs()
    assert re.search(rf"audit outcome=not_found action=get caller=entra:{BOB} tenant={TENANT} subscription={sub['id']} status=404 refused={sub['id']}", logs)
    assert re.search(rf"audit outcome=ok action=unsubscribe caller=entra:{BOB} tenant={TENANT} subscription={sub['id']} status=204 refused={sub['id']}", logs)
    call(bridge, people, "admin", "DELETE", f"/subscriptions/{sub['id']}")
    assert re.search(rf"audit outcome=ok action=unsubscribe caller=entra:{ADMIN} tenant={TENANT} subscription={sub['id']} status=204$",
                     bridge.logs(), re.M)
    assert re.search(r"audit outcome=unauthenticated action=list caller=unauthenticated tenant=- subscription=- status=401", logs)
    for token in people["tokens"].values():
        assert token not in logs and token.split(".")[2] not in logs


# MANAGEMENT_AUTH=both ---------------------------------------------------------------------------
def test_both_mode_takes_the_management_key_as_the_admin_and_tokens_as_makers(make_host, issuer, people, target):
    key = "management-key-" + "x" * 24
    bridge = make_host(**issuer.settings(MANAGEMENT_AUTH="both", MANAGEMENT_KEY=key))
    alice = subscribe_as(bridge, people, "alice", target).json()
    by_key = bridge.api("POST", "/subscriptions", headers={"x-functions-key": key},
                        json={"url": f"{target.url}/keyed?sig=K", "events": ["invitee.created"]})
    assert by_key.status_code == 201 and by_key.json()["owner"] is None and by_key.json()["scope"] == "organization"
    listed = bridge.api("GET", "/subscriptions", params={"code": key})
    assert ids(listed) == {alice["id"], by_key.json()["id"]}
    assert ids(call(bridge, people, "alice", "GET", "/subscriptions")) == {alice["id"]}
    error(bridge.api("GET", "/subscriptions", headers={"x-functions-key": key + "!"}), 401, "unauthenticated")
    assert key not in bridge.logs()


def test_the_connectors_trigger_route_records_the_maker_and_applies_the_scope_rules(bridge, people, target):
    """POST /api/triggers/{trigger} (the custom connector's subscribe) with an Entra ID connection."""
    url = f"{target.url}/connector-flow?sig=C"
    made = call(bridge, people, "alice", "POST", "/triggers/invitee-created", json={"url": url, "scope": "user"})
    assert made.status_code == 201 and made.json()["owner"]["object_id"] == ALICE
    assert made.json()["user"] == people["calendly"]["alice"]
    error(call(bridge, people, "alice", "POST", "/triggers/invitee-created", json={"url": url, "scope": "organization"}),
          403, "scope_forbidden")
    error(bridge.api("POST", "/triggers/invitee-created", json={"url": url, "scope": "user"}), 401, "unauthenticated")
    # The connector deletes on the Location with the same connection: the maker's own subscription.
    assert call(bridge, people, "alice", "DELETE", made.headers["Location"].split("/api", 1)[1]).status_code == 204
    assert ids(call(bridge, people, "alice", "GET", "/subscriptions")) == set()


# Home tenant, user names, defaults -------------------------------------------------------------
def test_user_scope_without_a_user_is_the_callers_own_calendly_user_even_with_the_organization_role(
        bridge, people, target, sandbox):
    """As connector/README.md and examples/logic-app/README.md say: signed in, ``user`` scope follows
    the caller's own Calendly user; the organization role only lets them *name* another user."""
    olga = sandbox.app.add_member("olga@contoso.com", "Olga")["user"]["uri"]
    own = subscribe_as(bridge, people, "olga", target, path="/own")
    assert own.status_code == 201 and own.json()["user"] == olga, own.text
    named = subscribe_as(bridge, people, "olga", target, path="/named", user=people["calendly"]["bob"])
    assert named.status_code == 201 and named.json()["user"] == people["calendly"]["bob"]


def test_a_look_alike_user_name_never_gets_another_users_scope(bridge, people, issuer, target, sandbox):
    kate = sandbox.app.add_member("kate@contoso.com", "Kate")["user"]["uri"]
    people["tokens"]["kelvin"] = issuer.token(oid=STRANGER, upn="\u212Aate@contoso.com")  # KELVIN SIGN + "ate"
    people["tokens"]["mail"] = issuer.token(oid=STRANGER, email="kate@contoso.com")        # unverified email claim
    for who in ("kelvin", "mail"):
        response = subscribe_as(bridge, people, who, target, path=f"/{who}")
        assert "no user principal name" in error(response, 403, "scope_forbidden")
    assert not [h for h in sandbox_hooks(sandbox) if h.get("user") == kate]


def test_a_partner_tenants_admin_is_a_maker_without_a_calendly_user(make_host, issuer, people, target, sandbox):
    from tests.entra_issuer import OTHER_TENANT

    bridge = make_host(**issuer.settings(ENTRA_ALLOWED_TENANTS=OTHER_TENANT))
    home = subscribe_as(bridge, people, "alice", target).json()
    people["tokens"]["partner"] = issuer.token(oid=STRANGER, tenant=OTHER_TENANT, upn="alice@contoso.com",
                                               roles=["Bridge.Admin", "Calendly.Organization"])
    assert ids(call(bridge, people, "partner", "GET", "/subscriptions")) == set()
    assert call(bridge, people, "partner", "GET", f"/subscriptions/{home['id']}").status_code == 404
    assert call(bridge, people, "partner", "GET", f"/subscriptions/{home['id']}/deliveries?include=payload").status_code == 404
    error(call(bridge, people, "partner", "GET", f"/subscriptions?owner={ALICE}"), 403, "forbidden")
    error(subscribe_as(bridge, people, "partner", target, path="/p", scope="organization"), 403, "scope_forbidden")
    error(subscribe_as(bridge, people, "partner", target, path="/p"), 403, "scope_forbidden")  # not Alice's user scope


# What a maker may reach, and the shared Calendly budget -------------------------------------------
def test_service_bus_targets_are_for_admins_and_the_organization_role_only(make_host, issuer, people, sandbox):
    from tests.conftest import free_port

    connection = f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=s;SharedAccessKey=k;UseDevelopmentEmulator=true"
    bridge = make_host(SERVICEBUS_CONNECTION=connection, **issuer.settings())
    body = {"target": {"type": "servicebus", "queue": "team-b-bookings"}, "events": ["invitee.created"]}
    message = error(call(bridge, people, "alice", "POST", "/subscriptions", json={**body, "scope": "user"}), 403,
                    "target_forbidden")
    assert "Calendly.Organization" in message
    assert call(bridge, people, "olga", "POST", "/subscriptions", json={**body, "scope": "organization"}).status_code == 201
    assert call(bridge, people, "admin", "POST", "/subscriptions", json=body).status_code == 201


def test_a_maker_is_limited_per_minute_on_routes_that_spend_calendlys_budget(make_host, issuer, people, target):
    bridge = make_host(CALENDLY_CALLS_PER_CALLER_PER_MINUTE="3", **issuer.settings())
    for n in range(3):
        assert subscribe_as(bridge, people, "alice", target, path=f"/r{n}").status_code == 201
    limited = subscribe_as(bridge, people, "alice", target, path="/r3")
    error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    sub_id = next(iter(ids(call(bridge, people, "alice", "GET", "/subscriptions"))))
    error(call(bridge, people, "alice", "POST", f"/subscriptions/{sub_id}/test"), 429, "rate_limited")
    assert call(bridge, people, "alice", "GET", "/subscriptions").status_code == 200  # reads spend nothing
    assert subscribe_as(bridge, people, "bob", target, path="/b").status_code == 201     # another maker's own minute
    for n in range(4):
        assert subscribe_as(bridge, people, "admin", target, path=f"/a{n}", scope="organization").status_code == 201


def test_an_owner_holds_at_most_max_subscriptions_per_owner(make_host, issuer, people, target):
    bridge = make_host(MAX_SUBSCRIPTIONS_PER_OWNER="2", **issuer.settings())
    assert [subscribe_as(bridge, people, "alice", target, path=p).status_code for p in ("/1", "/2", "/1")] == [201, 201, 200]
    assert "MAX_SUBSCRIPTIONS_PER_OWNER" in error(subscribe_as(bridge, people, "alice", target, path="/3"), 403,
                                                  "subscription_limit_reached")
    assert subscribe_as(bridge, people, "bob", target, path="/3").status_code == 201
    assert all(subscribe_as(bridge, people, "admin", target, path=f"/x{n}", scope="organization").status_code == 201
               for n in range(3))


def test_test_events_reuse_calendlys_sample_payload(bridge, people, target, sandbox):
    sub = subscribe_as(bridge, people, "alice", target).json()
    for _ in range(3):
        assert call(bridge, people, "alice", "POST", f"/subscriptions/{sub['id']}/test").status_code in (200, 202)
    assert len([r for r in sandbox_requests(sandbox) if r["path"] == "/sample_webhook_data"]) == 1


def test_the_event_type_dropdown_follows_the_scope_rules(bridge, people, sandbox):
    """GET /api/event-types (the connector's dropdown) lists what the same trigger may filter on: a
    maker gets their own Calendly user's event types only; the organization's need the role."""
    error(call(bridge, people, "alice", "GET", "/event-types", params={"scope": "organization"}), 403, "scope_forbidden")
    mine = call(bridge, people, "alice", "GET", "/event-types", params={"scope": "user"})
    assert mine.status_code == 200 and mine.json() == {"value": []}  # Alice hosts none in the sandbox
    asked = [r for r in sandbox_requests(sandbox) if r["path"] == "/event_types"]
    assert asked and f"user={people['calendly']['alice']}".replace(":", "%3A").replace("/", "%2F") in asked[-1]["query"]
    everyone = call(bridge, people, "olga", "GET", "/event-types", params={"scope": "organization"})
    assert [t["name"] for t in everyone.json()["value"]] == ["Café consultation — 30 min", "Demo call", "Support session"]


def test_the_host_dropdown_follows_the_scope_rules(bridge, people):
    error(call(bridge, people, "alice", "GET", "/hosts", params={"scope": "group", "group": "https://api.calendly.com/groups/G"}),
          403, "scope_forbidden")
    mine = call(bridge, people, "alice", "GET", "/hosts").json()["value"]
    assert [h["uri"] for h in mine] == [people["calendly"]["alice"]]  # a maker names only themself
    everyone = {h["email"] for h in call(bridge, people, "olga", "GET", "/hosts", params={"scope": "organization"}).json()["value"]}
    assert {"alice@contoso.com", "bob@contoso.com"} <= everyone
