"""``invitee.rescheduled`` (issue 15): one delivery per reschedule, made from Calendly's two halves,
whatever their order, never two; the old and new times in it; when a half never comes, the retry
path fetches the rest from Calendly's API (1 or 2 calls), never the callback path.

In-process bridge on both stores with an injected clock; the Calendly sandbox and the target are
real servers on 127.0.0.1, and the reschedule pair has Calendly's field shapes (devtools/sample_events).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools import sample_events
from shared.reschedules import PAIR_WAIT_SECONDS
from tests.inprocess import STORES, Caller, compose_on
from tests.peers import FakeClock

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=STORES)
def make(request, tmp_path, sandbox):
    made = []

    def build():
        clock = FakeClock(START)
        bridge = compose_on(request.param, request, tmp_path, sandbox, clock=clock)
        made.append(bridge)
        return Caller(bridge, sandbox), clock

    yield build
    for bridge in made:
        bridge.close()


def subscribed(caller: Caller, target, path: str, events: list[str]) -> tuple[dict, str]:
    response = caller.subscribe(f"{target.url}{path}", events=events)
    assert response.status == 201, response.body
    sub = json.loads(response.body)
    return sub, caller.hook(sub)["callback_url"]


def send(caller: Caller, url: str, envelope: dict):
    response = caller.post_event(url, json.dumps(envelope, ensure_ascii=False).encode("utf-8"))
    return response.status, json.loads(response.body)


def received(target, path: str) -> list[dict]:
    return [json.loads(r["body"]) for r in target.delivered() if r["path"] == path]


def calendly_reads(sandbox) -> list[str]:
    return [r["path"] for r in sandbox.app.requests_log() if r["method"] == "GET" and r["path"].startswith("/scheduled_events")]


@pytest.mark.parametrize("order", ["cancel_first", "create_first"])
def test_one_rescheduled_event_with_old_and_new_times_in_either_order(make, target, sandbox, order):
    caller, _clock = make()
    sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    assert sorted(caller.hook(sub)["events"]) == ["invitee.canceled", "invitee.created"]  # what Calendly is asked for
    canceled, created = sample_events.reschedule(sandbox.url)
    first, second = (canceled, created) if order == "cancel_first" else (created, canceled)
    assert send(caller, url, first)[0] == 202  # recorded, waiting for its other half: nothing forwarded yet
    assert received(target, "/moved") == []
    status, answer = send(caller, url, second)
    assert status == 200 and answer["status"] == "delivered"
    [body] = received(target, "/moved")
    old, new = canceled["payload"]["scheduled_event"], created["payload"]["scheduled_event"]
    assert body["event"] == "invitee.rescheduled" and old["start_time"] != new["start_time"]
    payload = body["payload"]
    assert (payload["old_start_time"], payload["old_end_time"]) == (old["start_time"], old["end_time"])
    assert (payload["new_start_time"], payload["new_end_time"]) == (new["start_time"], new["end_time"])
    assert payload["old_scheduled_event"]["uri"] == old["uri"] and payload["invitee"] == created["payload"]
    assert (payload["name"], payload["email"], payload["event_name"]) == ("Zoë Ångström", "zoe.angstrom@example.com", new["name"])
    assert payload["cancel_url"] == created["payload"]["cancel_url"] and payload["reschedule_url"] == created["payload"]["reschedule_url"]
    assert payload["cancellation"] == canceled["payload"]["cancellation"]
    assert calendly_reads(sandbox) == []  # both halves came: no Calendly call
    [delivery] = caller.deliveries(sub["id"])
    assert delivery["event"] == "invitee.rescheduled" and delivery["status"] == "delivered" and delivery["id"] == answer["delivery_id"]


def test_duplicates_and_retries_of_either_half_never_make_a_second_delivery(make, target, sandbox):
    caller, clock = make()
    sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    canceled, created = sample_events.reschedule(sandbox.url)
    assert [send(caller, url, e)[1]["status"] for e in (canceled, canceled)] == ["pending", "duplicate"]
    assert [send(caller, url, e)[1]["status"] for e in (created, created, canceled)] == ["delivered", "duplicate", "duplicate"]
    clock.advance(2 * PAIR_WAIT_SECONDS)
    assert caller.bridge.deliveries.retry_due()["attempted"] == 0  # the queued check finds it delivered
    assert len(received(target, "/moved")) == 1 and len(caller.deliveries(sub["id"])) == 1


def test_plain_bookings_and_cancellations_are_not_reschedules(make, target, sandbox):
    caller, _clock = make()
    _sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    both, both_url = subscribed(caller, target, "/both", ["invitee.created", "invitee.rescheduled"])
    for event in ("invitee.created", "invitee.canceled"):
        status, answer = send(caller, url, sample_events.envelope(event, sandbox.url))
        assert (status, answer["status"]) == (200, "ignored")
    assert send(caller, both_url, sample_events.envelope("invitee.created", sandbox.url))[1]["status"] == "delivered"
    canceled, created = sample_events.reschedule(sandbox.url)
    send(caller, both_url, canceled)
    send(caller, both_url, created)
    # A subscription to both gets a reschedule once, as invitee.rescheduled, never also as its booking half.
    assert [b["event"] for b in received(target, "/both")] == ["invitee.created", "invitee.rescheduled"]
    assert received(target, "/moved") == []


def test_a_new_booking_alone_is_completed_by_the_retry_path_with_one_calendly_call(make, target, sandbox):
    caller, clock = make()
    _sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    canceled, created = sample_events.reschedule(sandbox.url)
    sandbox.app.remember(canceled)  # Calendly knows the old booking; its cancellation webhook never reaches us
    assert send(caller, url, created)[0] == 202
    assert caller.bridge.deliveries.retry_due()["attempted"] == 0  # not before the pairing wait
    clock.advance(PAIR_WAIT_SECONDS + 1)
    assert caller.bridge.deliveries.retry_due() == {"attempted": 1, "delivered": 1, "pending": 0, "dead": 0, "discarded": 0}
    old_event = canceled["payload"]["scheduled_event"]
    assert calendly_reads(sandbox) == ["/scheduled_events/" + old_event["uri"].rsplit("/", 1)[1]]
    [body] = received(target, "/moved")
    assert body["payload"]["old_start_time"] == old_event["start_time"]
    assert body["payload"]["new_start_time"] == created["payload"]["scheduled_event"]["start_time"]
    assert send(caller, url, canceled)[1]["status"] == "duplicate"  # the late half changes nothing


def test_a_cancellation_alone_is_completed_with_two_calendly_calls(make, target, sandbox):
    caller, clock = make()
    _sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    canceled, created = sample_events.reschedule(sandbox.url)
    sandbox.app.remember(created)
    assert send(caller, url, canceled)[0] == 202
    clock.advance(PAIR_WAIT_SECONDS + 1)
    assert caller.bridge.deliveries.retry_due()["delivered"] == 1
    new_invitee = created["payload"]["uri"]
    event_path = "/scheduled_events/" + new_invitee.split("/scheduled_events/")[1].split("/")[0]
    assert calendly_reads(sandbox) == [event_path + "/invitees/" + new_invitee.rsplit("/", 1)[1], event_path]
    [body] = received(target, "/moved")
    assert body["payload"]["new_start_time"] == created["payload"]["scheduled_event"]["start_time"]
    assert body["payload"]["old_start_time"] == canceled["payload"]["scheduled_event"]["start_time"]
    assert body["payload"]["email"] == "zoe.angstrom@example.com"


def test_calendly_failing_while_completing_is_a_failed_attempt_retried_later(make, target, sandbox):
    caller, clock = make()
    sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    canceled, created = sample_events.reschedule(sandbox.url)
    sandbox.app.remember(canceled)
    send(caller, url, created)
    clock.advance(PAIR_WAIT_SECONDS + 1)
    sandbox.app.add_fault("GET", "/scheduled_events", status=503, count=10)
    assert caller.bridge.deliveries.retry_due()["pending"] == 1
    [delivery] = caller.deliveries(sub["id"])
    assert delivery["status"] == "pending" and delivery["last_error"].startswith("reschedule incomplete")
    assert received(target, "/moved") == []
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.remember(canceled)
    clock.advance(3600)
    assert caller.bridge.deliveries.retry_due()["delivered"] == 1 and len(received(target, "/moved")) == 1


def test_links_from_a_payload_are_read_only_on_calendlys_own_api(make, target, sandbox):
    """The old invitee's URI names another host: only its ids are used, on the bridge's Calendly base
    URL, so the PAT never leaves for that host (the sandbox answers 404: a failed attempt)."""
    caller, clock = make()
    sub, url = subscribed(caller, target, "/moved", ["invitee.rescheduled"])
    _canceled, created = sample_events.reschedule(sandbox.url)
    created["payload"]["old_invitee"] = "https://calendly.attacker.example/scheduled_events/EVIL/invitees/X"
    send(caller, url, created)
    clock.advance(PAIR_WAIT_SECONDS + 1)
    assert caller.bridge.deliveries.retry_due()["pending"] == 1
    assert calendly_reads(sandbox) == ["/scheduled_events/EVIL"]
    shapeless = sample_events.envelope("invitee.canceled", sandbox.url, rescheduled=True, new_invitee="not a uri")
    assert send(caller, url, shapeless) == (200, {"status": "ignored", "event": "invitee.canceled"})
    assert len(caller.deliveries(sub["id"])) == 1


def test_the_test_event_and_the_trigger_route_speak_invitee_rescheduled(make, target, sandbox):
    caller, _clock = make()
    from shared import api

    response = caller.call(api.subscribe_trigger, "POST", "/triggers/invitee-rescheduled",
                           {"url": f"{target.url}/t", "scope": "organization"}, trigger="invitee-rescheduled")
    assert response.status == 201, response.body
    sub = json.loads(response.body)
    assert sub["events"] == ["invitee.rescheduled"]
    test = caller.call(api.send_test_event, "POST", f"/subscriptions/{sub['id']}/test", {}, id=sub["id"])
    assert test.status == 200, test.body
    [body] = received(target, "/t")
    assert body["event"] == "invitee.rescheduled" and body["payload"]["old_start_time"] and body["payload"]["new_start_time"]


def test_every_composed_body_follows_the_published_json_schema(make, target, sandbox):
    """docs/invitee.rescheduled.schema.json holds for the pair, for each half completed from
    Calendly, and for odd halves (fields missing, Unicode): the body is best-effort, never broken."""
    import jsonschema

    from shared import reschedules

    schema = json.loads((Path(__file__).resolve().parent.parent / "docs" / "invitee.rescheduled.schema.json").read_text(encoding="utf-8"))
    canceled, created = sample_events.reschedule(sandbox.url)
    halves = {"created": created, "canceled": canceled}
    old_event = canceled["payload"]["scheduled_event"]
    invitee = {k: v for k, v in created["payload"].items() if k != "scheduled_event"}
    resources = {"/scheduled_events/" + old_event["uri"].rsplit("/", 1)[1]: old_event,
                 created["payload"]["uri"].split(sandbox.url, 1)[1]: invitee,
                 created["payload"]["event"].split(sandbox.url, 1)[1]: created["payload"]["scheduled_event"]}
    bodies = [reschedules.compose_pair(halves),
              reschedules.complete({"created": created}, resources.__getitem__),
              reschedules.complete({"canceled": canceled}, resources.__getitem__),
              reschedules.compose_pair({"created": {"event": "invitee.created", "payload": {"name": "‮evil\u202e", "scheduled_event": None}},
                                        "canceled": {"event": "invitee.canceled", "payload": {}}})]
    for body in bodies:
        jsonschema.validate(json.loads(body), schema)
    assert json.loads(bodies[0])["payload"] == json.loads(bodies[1])["payload"] | {"cancellation": canceled["payload"]["cancellation"]}


@pytest.mark.parametrize("order", ["cancel_first", "create_first"])
def test_the_local_host_forwards_one_rescheduled_event_for_a_simulated_reschedule(bridge, sandbox, target, order):
    """End to end over real sockets: the local host, the sandbox posting both halves signed as
    Calendly does, the target receiving one invitee.rescheduled; a trigger subscriber of the plain
    events still gets both halves."""
    from tests.conftest import simulate

    moved = bridge.api("POST", "/triggers/invitee-rescheduled", json={"url": f"{target.url}/moved", "scope": "organization"})
    assert moved.status_code == 201, moved.text
    plain = bridge.api("POST", "/subscriptions", json={"url": f"{target.url}/plain", "events": ["invitee.created", "invitee.canceled"]})
    assert plain.status_code == 201, plain.text
    result = simulate(sandbox, "reschedule", order=order)
    answers = sorted(json.loads(d["response"])["status"] for d in result["deliveries"])
    assert answers == ["delivered", "delivered", "delivered", "pending"]
    target.wait_for(3)
    [body] = received(target, "/moved")
    canceled, created = sorted(result["envelopes"], key=lambda e: e["event"])
    assert body["payload"]["old_start_time"] == canceled["payload"]["scheduled_event"]["start_time"]
    assert body["payload"]["new_start_time"] == created["payload"]["scheduled_event"]["start_time"]
    assert sorted(b["event"] for b in received(target, "/plain")) == ["invitee.canceled", "invitee.created"]
