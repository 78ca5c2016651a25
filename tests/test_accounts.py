"""Several Calendly accounts per deployment (shared.accounts): on both stores, with the sandbox serving
two organizations with their own tokens, the account tokens in a Key Vault on 127.0.0.1 read by the
real SDK, and makers signed in with real tokens of a local Entra issuer."""
from __future__ import annotations

import json
import logging

import pytest

from shared import api
from tests.entra_issuer import LocalIssuer
from tests.fake_keyvault import FakeKeyVault
from tests.inprocess import STORES, Caller, compose_on

SALES_PAT = "sales-pat"
ALICE = "aaaaaaaa-1111-4111-8111-111111111111"
BOB = "bbbbbbbb-2222-4222-8222-222222222222"
ADMIN = "cccccccc-3333-4333-8333-333333333333"


@pytest.fixture
def vault(tmp_path):
    kv = FakeKeyVault(tmp_path).start()
    kv.secrets["calendly-pat-sales"] = SALES_PAT
    yield kv
    kv.stop()


@pytest.fixture
def sales(sandbox):
    """The sandbox's second organization: the Calendly account 'sales'."""
    return sandbox.app.add_organization(SALES_PAT)


@pytest.fixture(params=STORES)
def caller(request, tmp_path, sandbox, vault, sales):
    bridge = compose_on(request.param, request, tmp_path, sandbox, env={"KEY_VAULT_URL": vault.url}, vault=vault.client)
    yield Caller(bridge, sandbox)
    bridge.close()


def body_of(response) -> dict:
    return json.loads(response.body)


def error_of(response, status: int, code: str) -> str:
    assert response.status == status, response.body
    error = body_of(response)["error"]
    assert error["code"] == code, error
    return error["message"]


def declare(caller: Caller, name="sales", secret="calendly-pat-sales", **extra):
    return caller.call(api.declare_account, "POST", "/accounts", {"name": name, "secret_name": secret, **extra})


def subscribe_to(caller: Caller, url: str, **body):
    return caller.call(api.subscribe, "POST", "/subscriptions", {"url": url, "events": ["invitee.created"], **body})


def signed_post(caller: Caller, org, sub: dict, event: str = "invitee.created", hook: dict | None = None):
    """Calendly (organization ``org`` of the sandbox) posting a signed event to the subscription's hook."""
    from devtools import sample_events

    hook = hook or next(h for h in org.hooks() if h["uri"] == sub["calendly_webhook"])
    envelope = sample_events.envelope(event, org.base_url, user_uri=org.user_uri, organization_uri=org.organization_uri)
    return caller.post_event(hook["callback_url"], json.dumps(envelope).encode(), key=org.signing_key(hook["callback_url"]))


# Declaring ------------------------------------------------------------------------------------
def test_an_admin_declares_an_account_by_its_key_vault_secret_and_never_sees_a_token(caller, vault, sales):
    response = declare(caller)
    assert response.status == 201, response.body
    account = body_of(response)
    assert account["name"] == "sales" and account["organization"] == sales.organization_uri
    assert account["user"] == sales.user_uri and account["secret_name"] == "calendly-pat-sales"
    assert response.headers["Location"].endswith("/api/accounts/sales")
    assert SALES_PAT not in response.body.decode()
    again = declare(caller)  # repeating the declaration: the same account
    assert again.status == 200 and body_of(again)["name"] == "sales"
    listed = body_of(caller.call(api.list_accounts, "GET", "/accounts"))["value"]
    assert [a["name"] for a in listed] == ["default", "sales"]
    assert listed[0]["organization"] == caller.sandbox.app.organization_uri
    assert SALES_PAT not in json.dumps(listed) and "test-pat" not in json.dumps(listed)
    got = caller.call(api.get_account, "GET", "/accounts/sales", name="sales")
    assert got.status == 200 and body_of(got)["organization"] == sales.organization_uri


@pytest.mark.parametrize("body, status, code", [
    ({"name": "Sales!", "secret_name": "calendly-pat-sales"}, 400, "invalid_account_name"),
    ({"name": "default", "secret_name": "calendly-pat-sales"}, 400, "invalid_account_name"),
    ({"name": "sales", "secret_name": "no/such name"}, 400, "invalid_secret_name"),
    ({"name": "sales", "secret_name": "calendly-pat-sales", "token": SALES_PAT}, 400, "invalid_body"),
    ({"name": "sales", "secret_name": "missing-secret"}, 503, "pat_unavailable"),
    ({"name": "sales", "secret_name": "wrong-token"}, 502, "calendly_unauthorized"),
    ({"name": "again", "secret_name": "calendly-pat-default"}, 409, "account_organization_taken"),
])
def test_declaring_refuses_bad_names_tokens_in_bodies_unreadable_secrets_bad_tokens_and_a_served_organization(
        caller, vault, body, status, code):
    vault.secrets["wrong-token"] = "not-a-token-calendly-knows"
    vault.secrets["calendly-pat-default"] = "test-pat"  # the default account's organization
    message = error_of(caller.call(api.declare_account, "POST", "/accounts", body), status, code)
    assert SALES_PAT not in message and "not-a-token-calendly-knows" not in message
    assert caller.bridge.store.list_accounts() == []


def test_two_accounts_for_one_organization_are_refused_and_a_name_is_not_reused_for_another_secret(caller, vault):
    assert declare(caller).status == 201
    vault.secrets["copy"] = SALES_PAT
    assert "'sales'" in error_of(declare(caller, name="sales-two", secret="copy"), 409, "account_organization_taken")
    error_of(declare(caller, secret="copy"), 409, "account_exists")


def test_without_key_vault_declaring_says_what_to_set(request, tmp_path, sandbox):
    bridge = compose_on("sqlite", request, tmp_path, sandbox)
    try:
        message = error_of(declare(Caller(bridge, sandbox)), 400, "key_vault_not_configured")
        assert "KEY_VAULT_URL" in message
    finally:
        bridge.close()


# Side by side -----------------------------------------------------------------------------------
def test_subscriptions_of_two_accounts_live_side_by_side_and_each_callback_reaches_its_own_target(caller, sales, target):
    assert declare(caller).status == 201
    first = subscribe_to(caller, f"{target.url}/default-flow")
    second = subscribe_to(caller, f"{target.url}/sales-flow", account="sales")
    assert first.status == 201 and second.status == 201, (first.body, second.body)
    mine, theirs = body_of(first), body_of(second)
    assert (mine["account"], theirs["account"]) == ("default", "sales")
    assert theirs["organization"] == sales.organization_uri and mine["organization"] == caller.sandbox.app.organization_uri
    # Each hook lives in its own organization, made with its own token.
    assert [h["uri"] for h in caller.sandbox.app.hooks()] == [mine["calendly_webhook"]]
    assert [h["uri"] for h in sales.hooks()] == [theirs["calendly_webhook"]]
    assert [r["path"] for r in sales.requests_log() if r["method"] == "POST"] == ["/webhook_subscriptions"]
    # The same target and events in another account is another subscription.
    same = subscribe_to(caller, f"{target.url}/default-flow", account="sales")
    assert same.status == 201 and body_of(same)["id"] != mine["id"]

    assert signed_post(caller, caller.sandbox.app, mine).status == 200
    assert signed_post(caller, sales, theirs).status == 200
    delivered = target.wait_for(2)
    assert sorted(d["path"] for d in delivered) == ["/default-flow", "/sales-flow"]
    # A callback is verified with its subscription's key, whatever the account: another org's key fails.
    hook = next(h for h in sales.hooks() if h["uri"] == theirs["calendly_webhook"])
    forged = caller.post_event(hook["callback_url"], b'{"event":"invitee.created","payload":{}}',
                               key=caller.sandbox.app.signing_key(caller.sandbox.app.hooks()[0]["callback_url"]))
    assert forged.status == 401


def test_unknown_accounts_are_404_and_malformed_ones_400(caller, target):
    error_of(subscribe_to(caller, f"{target.url}/x", account="nobody"), 404, "account_not_found")
    error_of(subscribe_to(caller, f"{target.url}/x", account="Not A Name"), 400, "invalid_subscription")
    error_of(caller.call(api.get_account, "GET", "/accounts/nobody", name="nobody"), 404, "account_not_found")
    error_of(caller.call(api.retire_account, "DELETE", "/accounts/nobody", name="nobody"), 404, "account_not_found")
    error_of(caller.call(api.list_event_types, "GET", "/event-types", params={"account": "nobody"}), 404, "account_not_found")


def test_dropdowns_and_test_events_use_the_accounts_token(caller, sales, target):
    assert declare(caller).status == 201
    hosts = caller.call(api.list_hosts, "GET", "/hosts", params={"scope": "organization", "account": "sales"})
    assert hosts.status == 200, hosts.body
    assert [h["uri"] for h in body_of(hosts)["value"]] == [sales.user_uri]
    sub = body_of(subscribe_to(caller, f"{target.url}/t", account="sales"))
    before = len(sales.requests_log())
    tested = caller.call(api.send_test_event, "POST", f"/subscriptions/{sub['id']}/test", id=sub["id"])
    assert tested.status in (200, 202), tested.body
    assert any(r["path"] == "/sample_webhook_data" for r in sales.requests_log()[before:])


# Reconcile ----------------------------------------------------------------------------------------
def test_reconcile_lists_each_account_once_per_scope_and_repairs_each_with_its_own_token(caller, sales, target):
    assert declare(caller).status == 201
    mine = body_of(subscribe_to(caller, f"{target.url}/a"))
    theirs = body_of(subscribe_to(caller, f"{target.url}/b", account="sales"))
    sales.remove(theirs["calendly_webhook"].rsplit("/", 1)[1])  # Calendly lost the sales hook
    before, default_before = len(sales.requests_log()), len(caller.sandbox.app.requests_log())
    report = caller.bridge.reconciler.reconcile()
    assert report.errors == [] and report.accounts == 2 and report.recreated == 1, report
    listed = [r for r in sales.requests_log()[before:] if r["method"] == "GET" and r["path"] == "/webhook_subscriptions"]
    default_listed = [r for r in caller.sandbox.app.requests_log()[default_before:] if r["path"] == "/webhook_subscriptions" and r["method"] == "GET"]
    # organization + the token owner's user scope, once each, per account (one page each)
    assert len(listed) == 2 and len(default_listed) == 2, (listed, default_listed)
    [hook] = sales.hooks()
    record = caller.bridge.store.get_subscription(theirs["id"])
    assert record.calendly_webhook == hook["uri"] and record.account == "sales"
    assert [h["uri"] for h in caller.sandbox.app.hooks()] == [mine["calendly_webhook"]]


def test_one_accounts_outage_or_revoked_token_leaves_the_other_untouched(caller, vault, sales, target):
    assert declare(caller).status == 201
    theirs = body_of(subscribe_to(caller, f"{target.url}/b", account="sales"))
    sales.add_fault(path_prefix="/", status=503, count=1000)  # the sales organization's Calendly answers 503
    error_of(subscribe_to(caller, f"{target.url}/c", account="sales"), 503, "calendly_unavailable")
    assert subscribe_to(caller, f"{target.url}/a").status == 201
    report = caller.bridge.reconciler.reconcile()
    assert {e.code for e in report.errors} == {"calendly_unavailable"} and report.healthy == 1, report
    sales.clear_faults()
    # The sales token revoked (Calendly no longer knows it) and re-read from Key Vault on the 401: 502 for sales only.
    sales.pat = "rotated-elsewhere"
    error_of(subscribe_to(caller, f"{target.url}/c", account="sales"), 502, "calendly_unauthorized")
    assert subscribe_to(caller, f"{target.url}/d").status == 201
    # Its secret deleted from Key Vault: 503 for sales only, naming the secret, not a value.
    del vault.secrets["calendly-pat-sales"]
    caller.bridge.accounts.client("sales")._pat.invalidate()
    message = error_of(subscribe_to(caller, f"{target.url}/c", account="sales"), 503, "pat_unavailable")
    assert "calendly-pat-sales" in message
    assert subscribe_to(caller, f"{target.url}/e").status == 201
    # Calendly's calls on the sales hook still arrive: the callback path needs no token.
    sales.pat = SALES_PAT
    assert signed_post(caller, sales, theirs).status == 200
    assert [d["path"] for d in target.wait_for(1)] == ["/b"]


# Retiring -----------------------------------------------------------------------------------------
def test_retiring_an_account_stops_its_subscriptions_and_leaves_the_others(caller, sales, target, caplog):
    assert declare(caller).status == 201
    mine = body_of(subscribe_to(caller, f"{target.url}/a"))
    theirs = [body_of(subscribe_to(caller, f"{target.url}/{n}", account="sales")) for n in ("b", "c")]
    hook = next(h for h in sales.hooks() if h["uri"] == theirs[0]["calendly_webhook"])
    key = sales.signing_key(hook["callback_url"])
    assert signed_post(caller, sales, theirs[0]).status == 200
    with caplog.at_level(logging.INFO):
        retired = caller.call(api.retire_account, "DELETE", "/accounts/sales", name="sales")
    assert retired.status == 200, retired.body
    assert body_of(retired) == {"name": "sales", "status": "retired", "subscriptions_stopped": 2}
    assert sales.hooks() == []  # deleted in Calendly with its token
    assert all(caller.bridge.store.get_subscription(s["id"]) is None for s in theirs)
    assert caller.bridge.store.list_deliveries(theirs[0]["id"], 10)[0] == []
    assert caller.bridge.store.get_subscription(mine["id"]) is not None
    assert [h["uri"] for h in caller.sandbox.app.hooks()] == [mine["calendly_webhook"]]
    # Makers' flows: their trigger's calls now fail clearly.
    error_of(subscribe_to(caller, f"{target.url}/b", account="sales"), 404, "account_not_found")
    assert [a["name"] for a in body_of(caller.call(api.list_accounts, "GET", "/accounts"))["value"]] == ["default"]
    # Calendly calling the old hook is told it is gone.
    gone = caller.post_event(hook["callback_url"], b'{"event":"invitee.created","payload":{}}', key=key)
    assert gone.status == 410, gone.body
    assert "account outcome=retired account=sales subscriptions=2" in caplog.text
    error_of(caller.call(api.retire_account, "DELETE", "/accounts/default", name="default"), 400, "account_not_retirable")


def test_retiring_an_account_whose_token_was_revoked_still_removes_its_records(caller, sales, target):
    assert declare(caller).status == 201
    theirs = body_of(subscribe_to(caller, f"{target.url}/b", account="sales"))
    sales.pat = "revoked"
    retired = caller.call(api.retire_account, "DELETE", "/accounts/sales", name="sales")
    assert retired.status == 200 and body_of(retired)["subscriptions_stopped"] == 1, retired.body
    assert caller.bridge.store.get_subscription(theirs["id"]) is None
    assert len(sales.hooks()) == 1  # left: Calendly is answered 410 on it and stops calling
    assert caller.bridge.store.get_account("sales") is None


# Who may use which ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def issuer():
    with LocalIssuer() as running:
        yield running


@pytest.fixture
def entra(request, tmp_path, sandbox, vault, sales, issuer):
    bridge = compose_on("sqlite", request, tmp_path, sandbox, env={"KEY_VAULT_URL": vault.url, **issuer.settings()},
                        vault=vault.client)
    sandbox.app.add_member("alice@contoso.com", "Alice")
    sales.add_member("alice@contoso.com", "Alice")
    sales.add_member("bob@contoso.com", "Bob")
    tokens = {"alice": issuer.token(oid=ALICE, upn="alice@contoso.com", roles=["Calendly.Account.sales"]),
              "bob": issuer.token(oid=BOB, upn="bob@contoso.com"),
              "admin": issuer.token(oid=ADMIN, upn="admin@contoso.com", roles=["Bridge.Admin"])}
    yield bridge, {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}
    bridge.close()


def test_makers_use_the_accounts_whose_app_role_they_hold_and_only_admins_declare_or_retire(entra, sandbox, sales, target):
    bridge, headers = entra
    caller = Caller(bridge, sandbox)

    def as_(who, handler, method, path, body=None, **kw):
        return caller.call(handler, method, path, body, headers=headers[who], **kw)

    error_of(as_("bob", api.declare_account, "POST", "/accounts", {"name": "sales", "secret_name": "calendly-pat-sales"}),
             403, "forbidden")
    assert as_("admin", api.declare_account, "POST", "/accounts", {"name": "sales", "secret_name": "calendly-pat-sales"}).status == 201
    listed = {who: [a["name"] for a in body_of(as_(who, api.list_accounts, "GET", "/accounts"))["value"]] for who in headers}
    assert listed == {"alice": ["default", "sales"], "bob": ["default"], "admin": ["default", "sales"]}
    assert "secret_name" not in body_of(as_("alice", api.list_accounts, "GET", "/accounts"))["value"][1]

    body = {"url": f"{target.url}/alice", "events": ["invitee.created"], "scope": "user", "account": "sales"}
    made = as_("alice", api.subscribe, "POST", "/subscriptions", body)
    assert made.status == 201, made.body
    assert body_of(made)["user"] == next(m for m in sales.hooks())["user"]  # Alice's user in the sales organization
    message = error_of(as_("bob", api.subscribe, "POST", "/subscriptions", {**body, "url": f"{target.url}/bob"}),
                       403, "account_forbidden")
    assert "Calendly.Account.sales" in message
    error_of(as_("bob", api.get_account, "GET", "/accounts/sales", name="sales"), 403, "account_forbidden")
    error_of(as_("bob", api.list_hosts, "GET", "/hosts", params={"account": "sales"}), 403, "account_forbidden")
    error_of(as_("alice", api.retire_account, "DELETE", "/accounts/sales", name="sales"), 403, "forbidden")
    assert as_("admin", api.retire_account, "DELETE", "/accounts/sales", name="sales").status == 200


def test_without_a_default_pat_a_maker_with_one_account_uses_it_without_naming_it(request, tmp_path, sandbox, vault, sales,
                                                                                  issuer, target):
    bridge = compose_on("sqlite", request, tmp_path, sandbox, vault=vault.client,
                        env={"KEY_VAULT_URL": vault.url, "CALENDLY_PAT": "", "CALENDLY_PAT_SECRET_NAME": "no-default",
                             **issuer.settings()})
    try:
        caller = Caller(bridge, sandbox)
        admin = {"Authorization": f"Bearer {issuer.token(oid=ADMIN, upn='admin@contoso.com', roles=['Bridge.Admin'])}"}
        alice = {"Authorization": f"Bearer {issuer.token(oid=ALICE, upn='alice@contoso.com', roles=['Calendly.Account.sales'])}"}
        sales.add_member("alice@contoso.com", "Alice")
        declared = caller.call(api.declare_account, "POST", "/accounts", {"name": "sales", "secret_name": "calendly-pat-sales"},
                               headers=admin)
        assert declared.status == 201, declared.body
        made = caller.call(api.subscribe, "POST", "/subscriptions",
                           {"url": f"{target.url}/a", "events": ["invitee.created"], "scope": "user"}, headers=alice)
        assert made.status == 201 and body_of(made)["account"] == "sales", made.body
        # An admin may use two (none named "default" has a PAT): they must say which.
        vault.secrets["other"] = "other-pat"
        sandbox.app.add_organization("other-pat")
        assert caller.call(api.declare_account, "POST", "/accounts", {"name": "other", "secret_name": "other"},
                           headers=admin).status == 201
        error_of(caller.call(api.subscribe, "POST", "/subscriptions", {"url": f"{target.url}/b", "events": ["invitee.created"]},
                             headers=admin), 400, "account_required")
    finally:
        bridge.close()


# The sandbox's second organization -------------------------------------------------------------
def test_the_sandboxs_organizations_answer_by_token_with_their_own_user_hooks_and_control_routes(sandbox):
    import requests

    made = requests.post(f"{sandbox.url}/_sandbox/organizations", json={"pat": "second"}, timeout=5)
    assert made.status_code == 201
    second = sandbox.app.organizations[0]
    assert made.json() == {"n": 1, "organization": second.organization_uri, "user": second.user_uri}
    me = [requests.get(f"{sandbox.url}/users/me", headers={"Authorization": f"Bearer {pat}"}, timeout=5).json()["resource"]
          for pat in ("test-pat", "second")]
    assert [m["current_organization"] for m in me] == [sandbox.app.organization_uri, second.organization_uri]
    assert me[0]["uri"] != me[1]["uri"]
    assert requests.get(f"{sandbox.url}/users/me", headers={"Authorization": "Bearer other"}, timeout=5).status_code == 401
    listed = requests.get(f"{sandbox.url}/webhook_subscriptions", params={"organization": sandbox.app.organization_uri,
                                                                          "scope": "organization"},
                          headers={"Authorization": "Bearer second"}, timeout=5)
    assert listed.status_code == 403  # one organization's token cannot list the other's hooks
    assert requests.get(f"{sandbox.url}/_sandbox/organizations/1/hooks", timeout=5).json() == {"hooks": []}
    assert requests.post(f"{sandbox.url}/_sandbox/organizations", json={"pat": "second"}, timeout=5).status_code == 400


def test_reconcile_stops_a_subscription_whose_account_no_longer_exists(caller):
    """A subscribe on another worker that read the account just before it was retired: the next run stops it."""
    from tests.helpers import a_record

    stray = caller.bridge.store.create_subscription(a_record(7, account="gone-account", callback_token="t" * 43))
    report = caller.bridge.reconciler.reconcile()
    assert report.deleted == 1 and caller.bridge.store.get_subscription(stray.id) is None, report


def test_an_accounts_token_is_rotated_in_key_vault_alone(caller, vault, sales, target):
    """Calendly answers 401 to the old token: the bridge re-reads that account's secret once and carries on."""
    assert declare(caller).status == 201
    assert subscribe_to(caller, f"{target.url}/a", account="sales").status == 201
    reads = vault.reads
    sales.pat = vault.secrets["calendly-pat-sales"] = "sales-pat-2"  # rotated in Calendly and in Key Vault
    made = subscribe_to(caller, f"{target.url}/b", account="sales")
    assert made.status == 201, made.body
    assert vault.reads == reads + 1


def test_the_connectors_account_dropdown_lists_the_accounts_and_its_choice_subscribes_with_that_account(caller, sales, target):
    """What the Power Automate designer does with the trigger's "Calendly account" field: call the
    x-ms-dynamic-values operation, offer value-path/value-title of value-collection, send the choice."""
    import jsonschema

    from tests.conftest import ROOT
    from tests.swagger import to_json_schema

    swagger = json.loads((ROOT / "connector" / "apiDefinition.swagger.json").read_text("utf-8"))
    assert declare(caller).status == 201
    body_param = next(p for p in swagger["paths"]["/triggers/invitee-created"]["post"]["parameters"] if p["in"] == "body")
    field = body_param["schema"]["properties"]["account"]
    dynamic = field["x-ms-dynamic-values"]
    [(path, operation)] = [(p, item["get"]) for p, item in swagger["paths"].items()
                           if item.get("get", {}).get("operationId") == dynamic["operationId"]]
    assert path == "/accounts" and operation["x-ms-visibility"] == "internal"
    listed = caller.call(api.list_accounts, "GET", path)
    jsonschema.validate(body_of(listed), to_json_schema(operation["responses"]["200"]["schema"], swagger["definitions"]))
    offered = {item[dynamic["value-title"]]: item[dynamic["value-path"]] for item in body_of(listed)[dynamic["value-collection"]]}
    assert offered == {"default": "default", "sales": "sales"}
    # The event type dropdown of the same trigger passes the chosen account on.
    event_types = body_param["schema"]["properties"]["event_types"]["items"]["x-ms-dynamic-values"]
    assert event_types["parameters"]["account"] == {"parameter": "account"}
    import re

    assert re.fullmatch(field["pattern"], offered["sales"]) and re.fullmatch(field["pattern"], "")
    made = caller.call(api.subscribe_trigger, "POST", "/triggers/invitee-created",
                       {"url": f"{target.url}/flow", "scope": "organization", "account": offered["sales"]}, trigger="invitee-created")
    assert made.status == 201 and body_of(made)["account"] == "sales", made.body
    assert [h["uri"] for h in sales.hooks()] == [body_of(made)["calendly_webhook"]]
    cleared = caller.call(api.subscribe_trigger, "POST", "/triggers/invitee-created",
                          {"url": f"{target.url}/flow", "scope": "organization", "account": ""}, trigger="invitee-created")
    assert cleared.status == 201 and body_of(cleared)["account"] == "default", cleared.body
