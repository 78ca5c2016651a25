"""Owners in the records and ids, and the Calendly organization memberships the scope rules use."""
from __future__ import annotations

import pytest
import requests

from shared.calendly import CalendlyClient
from shared.models import HttpEndpoint, Owner, ServiceBusEntity, Subscription
from shared.secrets import EnvironmentPat
from shared.store.records import subscription_from_record, subscription_record
from shared.subscriptions import subscription_id

LOGIC_APP = "https://prod-00.westeurope.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=s"
ALICE = Owner("6f1f7a9e-2c3b-4d5e-8f90-a1b2c3d4e5f6", "aaaaaaaa-1111-4111-8111-111111111111", "alice@contoso.com")


def test_owner_less_subscription_ids_are_exactly_what_they_were_before_owners():
    """Literal vectors computed with the code before owners existed: deployed ids and idempotency depend on them."""
    assert subscription_id(HttpEndpoint(LOGIC_APP), ["invitee.created", "invitee.canceled"], "organization", None, None) \
        == "6716569f014ee2e49bd34d2faae627c5"
    assert subscription_id(HttpEndpoint("https://flow.example/a"), ["invitee.created"], "user",
                           "https://api.calendly.com/users/U", None) == "4120226122e1b3527af343d17c2e7ffb"
    assert subscription_id(ServiceBusEntity("queue", "calendly-events"), ["invitee.created"], "group", None,
                           "https://api.calendly.com/groups/G") == "5fd2fc7cb975c98702510c0890c41dfc"


def test_an_owner_gets_an_id_of_their_own_independent_of_their_display_name():
    base = (HttpEndpoint(LOGIC_APP), ["invitee.created"], "organization", None, None)
    mine = subscription_id(*base, ALICE)
    assert mine != subscription_id(*base)
    assert mine == subscription_id(*base, Owner(ALICE.tenant_id, ALICE.object_id, "Alice (renamed)"))
    assert mine != subscription_id(*base, Owner(ALICE.tenant_id, "bbbbbbbb-2222-4222-8222-222222222222"))
    assert mine != subscription_id(*base, Owner("0b1c2d3e-4f50-4a6b-9c8d-7e6f5a4b3c2d", ALICE.object_id))


def _sub(**owner) -> Subscription:
    return Subscription(id="0" * 32, target=HttpEndpoint(LOGIC_APP), events=["invitee.created"], scope="organization",
                        organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="k",
                        generation="g", **owner)


def test_owner_fields_are_absent_from_owner_less_rows_and_round_trip_when_present():
    plain = subscription_record(_sub())
    assert not {"owner_tenant", "owner_id", "owner_name"} & set(plain)
    assert subscription_from_record(plain, "0" * 32, None).owner is None
    owned = _sub(owner_tenant=ALICE.tenant_id, owner_id=ALICE.object_id, owner_name=ALICE.name)
    back = subscription_from_record(subscription_record(owned), "0" * 32, None)
    assert back.owner == ALICE and back.public()["owner"] == ALICE.public() and _sub().public()["owner"] is None
    assert back.owned_by(Owner(ALICE.tenant_id, ALICE.object_id)) and not back.owned_by(None) and _sub().owned_by(None)


# The sandbox's organization memberships and the client's lookup -----------------------------
MEMBERSHIP_FIELDS = {"uri", "role", "user", "organization", "updated_at", "created_at"}
USER_FIELDS = {"uri", "name", "slug", "email", "scheduling_url", "timezone", "avatar_url", "created_at", "updated_at"}


def memberships(sandbox, pat="test-pat", **params):
    return requests.get(f"{sandbox.url}/organization_memberships", params=params,
                        headers={"Authorization": f"Bearer {pat}"}, timeout=5)


def test_sandbox_lists_the_organizations_members_in_calendlys_shape(sandbox):
    added = sandbox.app.add_member("Alice@Contoso.com", "Alice")
    response = memberships(sandbox, organization=sandbox.app.organization_uri)
    assert response.status_code == 200
    page = response.json()
    assert {"collection", "pagination"} <= set(page) and page["pagination"]["count"] == 2
    for item in page["collection"]:
        assert MEMBERSHIP_FIELDS <= set(item) and USER_FIELDS <= set(item["user"])
        assert item["role"] in ("user", "admin", "owner") and item["organization"] == sandbox.app.organization_uri
    assert {m["user"]["uri"] for m in page["collection"]} == {sandbox.app.user_uri, added["user"]["uri"]}


def test_sandbox_filters_memberships_by_email_case_insensitively_and_pages(sandbox):
    alice = sandbox.app.add_member("alice@contoso.com")
    found = memberships(sandbox, organization=sandbox.app.organization_uri, email="ALICE@contoso.com").json()
    assert [m["user"]["uri"] for m in found["collection"]] == [alice["user"]["uri"]]
    assert memberships(sandbox, organization=sandbox.app.organization_uri, email="nobody@contoso.com").json()["collection"] == []
    first = memberships(sandbox, organization=sandbox.app.organization_uri, count=1).json()
    second = memberships(sandbox, organization=sandbox.app.organization_uri, count=1,
                         page_token=first["pagination"]["next_page_token"]).json()
    assert first["collection"][0]["uri"] != second["collection"][0]["uri"] and second["pagination"]["next_page"] is None


def test_sandbox_refuses_memberships_of_another_organization_or_without_a_filter_or_token(sandbox):
    other = memberships(sandbox, organization="https://api.calendly.com/organizations/OTHER")
    assert other.status_code == 403 and other.json() == {"title": "Permission Denied", "message": "This user is not in your organization"}
    assert memberships(sandbox).status_code == 400
    assert memberships(sandbox, pat="wrong", organization=sandbox.app.organization_uri).status_code == 401


def test_sandbox_forgets_added_members_on_reset(sandbox):
    sandbox.app.add_member("alice@contoso.com")
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()
    assert memberships(sandbox, organization=sandbox.app.organization_uri, email="alice@contoso.com").json()["collection"] == []
    added = requests.post(f"{sandbox.url}/_sandbox/members", json={"email": "bob@contoso.com"}, timeout=5)
    assert added.status_code == 201 and added.json()["resource"]["user"]["email"] == "bob@contoso.com"


def test_the_client_finds_a_member_by_email_and_says_none_when_there_is_none(sandbox):
    alice = sandbox.app.add_member("alice@contoso.com")
    client = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"))
    try:
        assert client.membership_by_email(organization=sandbox.app.organization_uri, email="alice@contoso.com")["user"]["uri"] \
            == alice["user"]["uri"]
        assert client.membership_by_email(organization=sandbox.app.organization_uri, email="zed@contoso.com") is None
        [request] = [r for r in sandbox.app.requests_log() if r["path"] == "/organization_memberships"][:1]
        assert "organization=" in request["query"] and "email=alice%40contoso.com" in request["query"]
    finally:
        client.close()


@pytest.mark.parametrize("bad", ["not-an-email", ""])
def test_sandbox_refuses_members_without_an_email(sandbox, bad):
    assert requests.post(f"{sandbox.url}/_sandbox/members", json={"email": bad}, timeout=5).status_code == 400


def test_the_app_registration_files_define_the_roles_the_settings_name_and_the_scope_the_cli_is_preauthorized_for():
    import json
    import uuid

    from shared.settings import Settings
    from tests.conftest import ROOT

    roles = json.loads((ROOT / "infra" / "entra" / "app-roles.json").read_text())
    declared = Settings.declared()
    values = {r["value"] for r in roles}
    assert {declared["ENTRA_ADMIN_ROLE"]["default"], declared["ENTRA_ORGANIZATION_ROLE"]["default"], "Bridge.Maker"} == values
    assert len({uuid.UUID(r["id"]) for r in roles}) == len(roles)
    for role in roles:
        assert set(role["allowedMemberTypes"]) == {"User", "Application"} and role["isEnabled"] is True
    api = json.loads((ROOT / "infra" / "entra" / "api.json").read_text())["api"]
    [scope] = api["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation" and scope["id"] not in {r["id"] for r in roles}
    [cli] = api["preAuthorizedApplications"]
    assert cli["appId"] == "04b07795-8ddb-461a-bbee-02f9e1bf7b46" and cli["delegatedPermissionIds"] == [scope["id"]]
    assert api["requestedAccessTokenVersion"] == 2


def test_sandbox_memberships_and_the_clients_query_match_the_projects_calendly_contract(sandbox):
    """Checked against tests/contracts/calendly_v2.json (GET /organization_memberships, OrganizationMembership)."""
    from tests.contracts import calendly as contract

    sandbox.app.add_member("alice@contoso.com", "Alice", role="admin")
    page = memberships(sandbox, organization=sandbox.app.organization_uri, count=1).json()
    contract.check(contract.response_schema("/organization_memberships", "get", 200), page)
    found = memberships(sandbox, organization=sandbox.app.organization_uri, email="alice@contoso.com").json()
    contract.check(contract.response_schema("/organization_memberships", "get", 200), found)
    other = memberships(sandbox, organization="https://api.calendly.com/organizations/OTHER")
    contract.check(contract.response_schema("/organization_memberships", "get", 403), other.json())
    client = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"))
    try:
        client.membership_by_email(organization=sandbox.app.organization_uri, email="alice@contoso.com")
    finally:
        client.close()
    [sent] = [r for r in sandbox.app.requests_log() if r["path"] == "/organization_memberships"][-1:]
    assert contract.query_errors("/organization_memberships", "get", sent["query"]) == []
