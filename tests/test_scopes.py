"""Calendly's PAT scopes (since March 2026): a 403 for a missing scope names the scopes and the
call, distinct from "not an admin" and "plan too low"; the preflight tells a deployer what a token
can do, per event family, leaving nothing behind in Calendly. The sandbox enforces scopes as
Calendly does when a token has chosen ones."""
from __future__ import annotations

import json

import pytest
import requests

from shared import scopes
from shared.calendly import CalendlyClient, CalendlyError
from shared.preflight import FAMILY_EVENTS, preflight
from shared.secrets import EnvironmentPat
from tests.conftest import sandbox_hooks
from tests.inprocess import Caller, compose_on

EVERYTHING = list(scopes.ALL_SCOPES)


def token(sandbox, granted: list[str] | None) -> None:
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "test-pat", "scopes": granted}, timeout=5).raise_for_status()


@pytest.fixture
def client(sandbox):
    made = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"))
    yield made
    made.close()
    token(sandbox, None)


def test_the_scopes_the_deploy_guide_lists_are_the_ones_the_bridge_needs():
    guide = open("docs/deploy.md", encoding="utf-8").read()
    for scope in scopes.ALL_SCOPES:
        assert f"`{scope}`" in guide, scope
    assert scopes.subscribe_scopes(["invitee.created", "routing_form_submission.created"]) == (
        "webhooks:write", "scheduled_events:read", "routing_forms:read")
    assert scopes.granted({"webhooks:write"}, ("webhooks:read",)) == []  # write covers read


def test_a_legacy_token_passes_the_preflight_and_nothing_is_left_behind(client, sandbox):
    report = preflight(client, "http://127.0.0.1:7071")
    assert report["ok"] and report["token"]["role"] == "owner"
    assert {f: r["status"] for f, r in report["families"].items()} == {f: "ok" for f in FAMILY_EVENTS}
    assert sandbox_hooks(sandbox) == [] and report["left_behind"] == []


def test_a_token_without_some_family_scopes_is_told_which(client, sandbox):
    token(sandbox, ["users:read", "organizations:read", "webhooks:write", "scheduled_events:read"])
    report = preflight(client, None)
    statuses = {f: r["status"] for f, r in report["families"].items()}
    assert statuses["invitee"] == statuses["invitee_no_show"] == "ok"
    assert statuses["routing_form_submission"] == statuses["event_type"] == "scope_missing"
    assert report["families"]["event_type"]["needs"] == ["webhooks:write", "event_types:read"]
    assert "event_types:read" in report["families"]["event_type"]["message"]
    assert not report["ok"] and sandbox_hooks(sandbox) == []


def test_a_token_with_no_scopes_stops_at_whose_token_it_is(client, sandbox):
    token(sandbox, [])
    report = preflight(client, None)
    assert report["checks"]["users:read"]["status"] == "scope_missing" and not report["ok"]


def test_subscribing_with_a_token_that_lacks_a_family_scope_names_it(request, tmp_path, sandbox, target):
    bridge = compose_on("sqlite", request, tmp_path, sandbox)
    try:
        token(sandbox, ["users:read", "organizations:read", "webhooks:write"])
        response = Caller(bridge, sandbox).subscribe(f"{target.url}/flow")
        error = json.loads(response.body)["error"]
        assert response.status == 502 and error["code"] == "calendly_scope_missing"
        assert "scheduled_events:read" in error["message"] and "POST /webhook_subscriptions" in error["message"]
    finally:
        bridge.close()
        token(sandbox, None)


@pytest.mark.parametrize("body, code, hint", [
    ({"title": "Permission Denied", "message": "This operation requires the scopes listed in the 'required_scopes' array",
      "required_scopes": ["webhooks:write", "routing_forms:read"]}, "calendly_scope_missing", "routing_forms:read"),
    ({"title": "Permission Denied", "message": "Permission denied or insufficient scope"}, "calendly_scope_missing",
     "users:read"),  # no list: the bridge's own table names what /users/me needs
    ({"title": "Permission Denied", "message": "Please upgrade to a paid Calendly account."}, "calendly_plan_required",
     "plan"),
    ({"title": "Permission Denied", "message": "You do not have permission to access this resource."},
     "calendly_forbidden", "owner or admin"),
])
def test_calendlys_403s_are_told_apart(target, body, code, hint):
    target.respond((403, {}, json.dumps(body).encode()))
    made = CalendlyClient(target.url, EnvironmentPat("x"))
    try:
        with pytest.raises(CalendlyError) as info:
            made.me()
    finally:
        made.close()
    assert (info.value.status, info.value.code) == (502, code) and hint in info.value.message


def test_the_preflight_command(make_host, sandbox):
    bridge = make_host()
    done = bridge.run("preflight")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
    token(sandbox, ["users:read", "organizations:read", "webhooks:read"])
    try:
        refused = bridge.run("preflight")
        assert refused.returncode == 1 and json.loads(refused.stdout)["families"]["invitee"]["status"] == "scope_missing"
    finally:
        token(sandbox, None)
