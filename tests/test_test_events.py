"""Test events: Calendly's sample payload through the normal pipeline (signed, deduped, forwarded)."""
import json

from tests.helpers import assert_error, subscribe


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
    # exactly the connector definition's enum, no case folding ("include=" is dropped by the Functions
    # host before the worker sees it, as by the local host: the same as no include)
    for include in ("Payload", "PAYLOAD", " payload", "payload,payload"):
        assert_error(bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": include}), 400,
                     "invalid_include")
    assert bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": "payload"}).status_code == 200


def test_a_test_event_body_must_be_an_object_whose_event_is_a_name(bridge, target):
    """Found by tests/test_connector_fuzz.py: a JSON null, number or list body, and "event": null,
    were taken as "no event" although the connector definition declares an object with a string."""
    sub = subscribe(bridge, target).json()
    for body in (b"null", b"-157", b"[]", b'"invitee.created"', b'{"event": null}'):
        assert_error(bridge.api("POST", f"/subscriptions/{sub['id']}/test", data=body,
                                headers={"Content-Type": "application/json"}), 400, "invalid_body")
    assert bridge.api("POST", f"/subscriptions/{sub['id']}/test", json={}).status_code == 200  # {}: its first event


def test_a_cleared_user_or_group_field_means_none_and_a_malformed_uri_is_a_400(bridge, sandbox, target):
    """The connector's form sends "" for a cleared field; the definition says empty means the PAT owner."""
    body = {"url": f"{target.url}/flow", "scope": "user"}
    cleared = bridge.api("POST", "/triggers/invitee-created", json={**body, "user": "", "group": ""})
    assert cleared.status_code == 201, cleared.text
    assert cleared.json()["user"] == sandbox.app.user_uri and cleared.json()["group"] is None
    nulls = bridge.api("POST", "/triggers/invitee-created", json={**body, "user": None, "group": None})
    assert nulls.status_code == 201 and nulls.json()["id"] == cleared.json()["id"]
    for user in ("https://x", "ftp://api.calendly.com/users/A", "https://api.calendly.com/users/A/B",
                 "https://api.calendly.com/groups/A", "https://api.calendly.com/users/A\n", "https://a b/users/A"):
        assert_error(bridge.api("POST", "/triggers/invitee-created", json={**body, "user": user}), 400, "invalid_subscription")
    assert_error(bridge.api("POST", "/triggers/invitee-created", json={**body, "scope": "group", "group": "https://api.calendly.com/users/A"}),
                 400, "invalid_subscription")
