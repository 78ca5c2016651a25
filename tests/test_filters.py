"""Filters at subscribe (issue 25, first part): event types and hosts, read from Calendly's payload
(no Calendly call, no storage request on the callback path). Over real sockets: the local host, the
Calendly sandbox and a recording target; and the store round trip on SQLite and Table Storage."""
from __future__ import annotations

import json

import pytest

from devtools import sample_events
from shared.filters import Filters
from shared.models import HttpEndpoint, Subscription
from tests.helpers import assert_error, post_event, signing_key
from tests.inprocess import STORES, compose_on

EVENTS = ["invitee.canceled", "invitee.created"]
DEMO = "https://api.calendly.com/event_types/DEMO"
OTHER = "https://api.calendly.com/event_types/OTHER"


def _booking(sandbox, event_type: str = DEMO, host_email: str = "host@example.com",
             host_uri: str = "https://api.calendly.com/users/HOST", event: str = "invitee.created") -> dict:
    envelope = sample_events.envelope(event, sandbox.url)
    scheduled = envelope["payload"]["scheduled_event"]
    scheduled["event_type"] = event_type
    scheduled["event_memberships"] = [{"user": host_uri, "user_email": host_email, "user_name": "Host"}]
    return envelope


def _send(bridge, sandbox, sub: dict, envelope: dict) -> dict:
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    response = post_event(bridge, sub, body, key=signing_key(bridge, sub, sandbox))
    assert response.status_code == 200, response.text
    return response.json()


def _subscribe(bridge, target, path="/flow", **filters) -> dict:
    response = bridge.api("POST", "/subscriptions", json={"url": f"{target.url}{path}", "events": EVENTS, **filters})
    assert response.status_code == 201, response.text
    return response.json()


def test_an_event_type_filter_forwards_matching_bookings_and_answers_the_rest_200(bridge, sandbox, target):
    sub = _subscribe(bridge, target, event_types=[DEMO])
    assert sub["filters"] == {"event_types": [DEMO], "hosts": []}
    assert _send(bridge, sandbox, sub, _booking(sandbox, DEMO))["status"] == "delivered"
    assert _send(bridge, sandbox, sub, _booking(sandbox, OTHER)) == {"status": "filtered", "reason": "filters",
                                                                       "event": "invitee.created"}
    assert _send(bridge, sandbox, sub, _booking(sandbox, DEMO, event="invitee.canceled"))["status"] == "delivered"
    assert len(target.delivered()) == 2
    assert len(bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"]) == 2  # the filtered one is not stored


def test_a_host_filter_matches_by_user_uri_or_by_email_and_all_filters_are_required(bridge, sandbox, target):
    by_email = _subscribe(bridge, target, "/email", hosts=["Host@Example.com"])
    by_uri = _subscribe(bridge, target, "/uri", hosts=["https://api.calendly.com/users/HOST"], event_types=[DEMO])
    assert _send(bridge, sandbox, by_email, _booking(sandbox))["status"] == "delivered"
    assert _send(bridge, sandbox, by_email, _booking(sandbox, host_email="someone@example.com"))["status"] == "filtered"
    assert _send(bridge, sandbox, by_uri, _booking(sandbox))["status"] == "delivered"
    assert _send(bridge, sandbox, by_uri, _booking(sandbox, OTHER))["status"] == "filtered"  # host matches, type does not
    assert _send(bridge, sandbox, by_uri, _booking(sandbox, host_uri="https://api.calendly.com/users/X"))["status"] == "filtered"


def test_filters_are_part_of_the_subscription_and_the_same_filters_again_is_idempotent(bridge, target):
    plain = _subscribe(bridge, target)
    filtered = _subscribe(bridge, target, event_types=[OTHER, DEMO])
    again = bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/flow", "events": EVENTS,
                                                       "event_types": [DEMO, OTHER, DEMO]})
    assert filtered["id"] != plain["id"] and again.status_code == 200 and again.json()["id"] == filtered["id"]
    assert filtered["filters"]["event_types"] == [DEMO, OTHER]


@pytest.mark.parametrize("body, fragment", [
    ({"event_types": ["https://api.calendly.com/users/NOPE"]}, "event type URI"),
    ({"event_types": "https://api.calendly.com/event_types/A"}, "event_types"),
    ({"hosts": ["not an email"]}, "neither a Calendly user URI"),
    ({"hosts": [f"h{n}@example.com" for n in range(51)]}, "hosts"),
    ({"hosts": ["a@example.com"], "events": ["invitee_no_show.created"]}, "apply to invitee.created and invitee.canceled"),
])
def test_filters_of_unknown_shape_are_a_400(bridge, target, body, fragment):
    error = assert_error(bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/x", "events": EVENTS, **body}),
                         400, "invalid_subscription")
    assert fragment in error["message"]


@pytest.mark.parametrize("kind", STORES)
def test_filters_survive_the_store_round_trip(kind, request, tmp_path, sandbox):
    bridge = compose_on(kind, request, tmp_path, sandbox)
    try:
        stored = bridge.store.create_subscription(Subscription(
            id="f" * 32, target=HttpEndpoint("https://flow.example/f"), events=EVENTS, scope="organization",
            organization="o", user=None, group=None, signing_key="k", generation="g",
            filters=Filters((DEMO,), ("host@example.com",))))
        assert bridge.store.get_subscription(stored.id).filters == Filters((DEMO,), ("host@example.com",))
        plain = bridge.store.create_subscription(stored.replace(id="e" * 32, filters=Filters()))
        assert bridge.store.get_subscription(plain.id).filters == Filters() and not Filters()
    finally:
        bridge.close()


def test_odd_payloads_never_match_a_filter_and_never_break():
    only_demo = Filters((DEMO,), ())
    for envelope in ({}, {"payload": None}, {"payload": {"scheduled_event": "x"}},
                     {"payload": {"scheduled_event": {"event_memberships": "x"}}}):
        assert only_demo.matches(envelope) is False
        assert Filters((), ("a@example.com",)).matches(envelope) is False
        assert Filters().matches(envelope) is True


def test_the_event_type_dropdown_lists_calendlys_event_types_cached_briefly(bridge, sandbox):
    from tests.conftest import sandbox_requests

    org = bridge.api("GET", "/event-types", params={"scope": "organization"})
    assert org.status_code == 200, org.text
    assert [t["name"] for t in org.json()["value"]] == ["Café consultation — 30 min", "Demo call", "Support session"]
    assert all(set(t) == {"uri", "name", "slug", "scheduling_url"} and "/event_types/" in t["uri"] for t in org.json()["value"])
    own = bridge.api("GET", "/event-types")  # user scope by default: the PAT owner's
    assert [t["slug"] for t in own.json()["value"]] == ["cafe-consultation", "demo-call"]
    calls = len([r for r in sandbox_requests(sandbox) if r["path"] == "/event_types"])
    assert bridge.api("GET", "/event-types", params={"scope": "organization"}).json() == org.json()
    assert len([r for r in sandbox_requests(sandbox) if r["path"] == "/event_types"]) == calls  # from the cache
    # What the dropdown offers is what a filter takes.
    demo = next(t["uri"] for t in org.json()["value"] if t["slug"] == "demo-call")
    assert bridge.api("POST", "/subscriptions", json={"url": "http://127.0.0.1:9/x", "events": ["invitee.created"],
                                                      "event_types": [demo]}).status_code == 201


def test_the_event_type_dropdown_refuses_bad_queries_and_says_when_calendly_fails(bridge, sandbox):
    assert_error(bridge.api("GET", "/event-types", params={"scope": "planet"}), 400, "invalid_query")
    assert_error(bridge.api("GET", "/event-types", params={"scope": "group"}), 400, "invalid_query")
    assert_error(bridge.api("GET", "/event-types", params={"user": "https://evil.example/x"}), 400, "invalid_query")
    sandbox.app.add_fault("GET", "/event_types", status=503, count=5)
    failed = bridge.api("GET", "/event-types", params={"user": f"{sandbox.url}/users/SOMEONE"})
    assert failed.status_code in (502, 503) and failed.json()["error"]["code"].startswith("calendly_")


def test_the_host_dropdown_lists_the_organizations_members_or_the_one_user(bridge, sandbox):
    sandbox.app.add_member("ada@example.com", "Ada Lovelace")
    org = bridge.api("GET", "/hosts", params={"scope": "organization"})
    assert org.status_code == 200, org.text
    assert [(h["name"], h["email"]) for h in org.json()["value"]] == [("Ada Lovelace", "ada@example.com"),
                                                                      (sample_events.HOST_NAME, sample_events.HOST_EMAIL)]
    own = bridge.api("GET", "/hosts").json()["value"]  # user scope: the PAT owner
    assert [h["email"] for h in own] == [sample_events.HOST_EMAIL]
    ada = org.json()["value"][0]["uri"]
    # What the dropdown offers is what a filter takes.
    assert bridge.api("POST", "/subscriptions", json={"url": "http://127.0.0.1:9/h", "events": ["invitee.created"],
                                                      "hosts": [ada]}).status_code == 201
