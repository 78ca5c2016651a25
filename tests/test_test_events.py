"""Test events: Calendly's sample payload through the normal pipeline (signed, deduped, forwarded)."""
import json

from tests.test_bridge_e2e import assert_error, subscribe


def test_test_event_reaches_the_target_through_the_pipeline(bridge, sandbox, target):
    sub = subscribe(bridge, target, events=("invitee.created", "invitee.canceled")).json()
    response = bridge.api("POST", f"/subscriptions/{sub['id']}/test", json={"event": "invitee.canceled"})
    assert response.status_code == 200 and response.json()["status"] == "delivered", response.text
    [got] = target.wait_for(1)
    assert json.loads(got["body"])["event"] == "invitee.canceled"
    assert got["headers"]["x-bridge-delivery-id"] == response.json()["delivery_id"]
    first = bridge.api("POST", f"/subscriptions/{sub['id']}/test")  # no body: the subscription's first event
    assert first.status_code == 200 and json.loads(target.wait_for(2)[1]["body"])["event"] == "invitee.canceled"


def test_test_event_for_an_event_not_subscribed_or_unknown_subscription(bridge, target):
    sub = subscribe(bridge, target).json()
    assert_error(bridge.api("POST", f"/subscriptions/{sub['id']}/test", json={"event": "contact.created"}), 400, "event_not_subscribed")
    assert_error(bridge.api("POST", f"/subscriptions/{'0' * 32}/test"), 404)
    assert_error(bridge.api("POST", f"/subscriptions/{sub['id']}/test", json={"event": 5}), 400)


def test_test_event_command(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    done = bridge.run("test-event", sub["id"])
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "delivered", done.stdout + done.stderr
    assert len(target.wait_for(1)) == 1
    missing = bridge.run("test-event", "0" * 32)
    assert missing.returncode == 1 and "subscription_not_found" in missing.stderr


def test_an_empty_event_name_or_an_unknown_include_is_a_400(bridge, target):
    sub = subscribe(bridge, target).json()
    assert_error(bridge.api("POST", f"/subscriptions/{sub['id']}/test", json={"event": ""}), 400, "invalid_body")
    assert_error(bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": "everything"}), 400,
                 "invalid_include")
    assert bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": "Payload"}).status_code == 200
