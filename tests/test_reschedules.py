"""Reschedules as makers think of them (issue 15, first part): ``exclude_rescheduled`` leaves out both
halves of a reschedule (Calendly's ``invitee.canceled`` with ``rescheduled: true`` and its
``invitee.created`` with ``old_invitee`` set), in either order, for the subscriptions that ask; the
others get both; plain bookings and cancellations are untouched. Over real sockets: the local host,
the Calendly sandbox (its reschedule pair has Calendly's field shapes) and recording targets."""
from __future__ import annotations

import json

from devtools import sample_events
from tests.conftest import simulate
from tests.helpers import assert_error, callback_url, post_event, signing_key

EVENTS = ["invitee.canceled", "invitee.created"]


def _subscribe(bridge, target, path: str, **extra):
    response = bridge.api("POST", "/subscriptions", json={"url": f"{target.url}{path}", "events": EVENTS, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def _send(bridge, sandbox, sub: dict, envelope: dict):
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    return post_event(bridge, sub, body, key=signing_key(bridge, sub, sandbox))


def _events_at(target, path: str) -> list[tuple[str, bool]]:
    """(event, is a reschedule half) of every delivery the target received on ``path``."""
    out = []
    for request in target.delivered():
        if request["path"] == path:
            envelope = json.loads(request["body"])
            payload = envelope["payload"]
            out.append((envelope["event"], bool(payload.get("rescheduled") or payload.get("old_invitee"))))
    return out


def test_excluding_subscribers_get_neither_half_in_either_order_and_the_others_get_both(bridge, sandbox, target):
    plain = _subscribe(bridge, target, "/all")
    picky = _subscribe(bridge, target, "/picky", exclude_rescheduled=True)
    assert picky["id"] != plain["id"] and picky["exclude_rescheduled"] is True and plain["exclude_rescheduled"] is False
    base = sandbox.url
    cancel_first = sample_events.reschedule(base)
    created, canceled = reversed(sample_events.reschedule(base))  # create first
    for sub in (plain, picky):
        for envelope in (*cancel_first, created, canceled):
            answer = _send(bridge, sandbox, sub, envelope)
            assert answer.status_code == 200, answer.text
            if sub is picky:
                assert answer.json() == {"status": "filtered", "reason": "rescheduled", "event": envelope["event"]}
    target.wait_for(4)
    assert sorted(_events_at(target, "/all")) == sorted([("invitee.canceled", True), ("invitee.created", True)] * 2)
    assert _events_at(target, "/picky") == []
    assert bridge.api("GET", f"/subscriptions/{picky['id']}/deliveries").json()["value"] == []  # not stored either


def test_plain_bookings_and_cancellations_still_reach_excluding_subscribers(bridge, sandbox, target):
    picky = _subscribe(bridge, target, "/picky", exclude_rescheduled=True)
    for event in EVENTS:
        assert _send(bridge, sandbox, picky, sample_events.envelope(event, sandbox.url)).json()["status"] == "delivered"
    assert sorted(_events_at(target, "/picky")) == [("invitee.canceled", False), ("invitee.created", False)]


def test_duplicates_of_a_reschedule_half_change_nothing(bridge, sandbox, target):
    plain = _subscribe(bridge, target, "/all")
    picky = _subscribe(bridge, target, "/picky", exclude_rescheduled=True)
    canceled, _created = sample_events.reschedule(sandbox.url)
    answers = [_send(bridge, sandbox, sub, canceled).json()["status"] for sub in (plain, plain, picky, picky)]
    assert answers == ["delivered", "duplicate", "filtered", "filtered"]
    assert _events_at(target, "/all") == [("invitee.canceled", True)] and _events_at(target, "/picky") == []


def test_the_option_is_part_of_the_subscription_and_only_for_invitee_events(bridge, target):
    first = _subscribe(bridge, target, "/flow", exclude_rescheduled=True)
    again = bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/flow", "events": EVENTS, "exclude_rescheduled": True})
    assert again.status_code == 200 and again.json()["id"] == first["id"]  # idempotent, same options
    trigger = bridge.api("POST", "/triggers/invitee-canceled", json={"url": f"{target.url}/t", "scope": "organization",
                                                                      "exclude_rescheduled": True})
    assert trigger.status_code == 201 and trigger.json()["exclude_rescheduled"] is True
    assert_error(bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/x", "events": ["invitee_no_show.created"],
                                                           "exclude_rescheduled": True}), 400, "invalid_subscription")
    for wrong in ("true", 1, None):  # a boolean, exactly
        assert_error(bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/y", "events": EVENTS,
                                                               "exclude_rescheduled": wrong}), 400, "invalid_subscription")


def test_the_connector_offers_the_option_on_the_invitee_triggers():
    from tests.conftest import ROOT

    swagger = json.loads((ROOT / "connector" / "apiDefinition.swagger.json").read_text(encoding="utf-8"))
    for path in ("/triggers/invitee-created", "/triggers/invitee-canceled"):
        prop = swagger["paths"][path]["post"]["parameters"][0]["schema"]["properties"]["exclude_rescheduled"]
        assert prop["type"] == "boolean" and prop["default"] is False and "x-ms-visibility" not in prop


def test_the_sandbox_simulates_a_reschedule_in_either_order(bridge, sandbox, target):
    plain = _subscribe(bridge, target, "/all")
    picky = _subscribe(bridge, target, "/picky", exclude_rescheduled=True)
    for order, first in (("cancel_first", "invitee.canceled"), ("create_first", "invitee.created")):
        result = simulate(sandbox, "reschedule", order=order)
        canceled, created = sorted(result["envelopes"], key=lambda e: e["event"])
        assert result["envelopes"][0]["event"] == first
        assert canceled["payload"]["rescheduled"] is True and canceled["payload"]["new_invitee"] == created["payload"]["uri"]
        assert created["payload"]["old_invitee"] == canceled["payload"]["uri"]
        statuses = {(d["callback_url"] == callback_url(bridge, picky), d["event"]): json.loads(d["response"])["status"]
                    for d in result["deliveries"]}
        assert statuses == {(False, "invitee.canceled"): "delivered", (False, "invitee.created"): "delivered",
                            (True, "invitee.canceled"): "filtered", (True, "invitee.created"): "filtered"}
    assert len(_events_at(target, "/all")) == 4 and _events_at(target, "/picky") == []
    assert plain["id"] != picky["id"]


def test_the_simulate_command_sends_a_reschedule(bridge, sandbox, target):
    _subscribe(bridge, target, "/all")
    done = bridge.run("simulate", "reschedule", "--order", "create_first", "--sandbox-url", sandbox.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(" ->")[0] for line in lines] == ["invitee.created", "invitee.canceled"] and all(": 200 " in line for line in lines)
