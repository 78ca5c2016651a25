"""The core bridge end to end over real sockets: the local host (``python -m shared serve``)
+ the Calendly sandbox + a recording target, exactly as a user or Power Automate runs it."""
from __future__ import annotations

import json
import re
import time

import pytest
import requests

from shared import signatures
from tests.conftest import sandbox_hooks, sandbox_requests, simulate
from tests.helpers import LOGIC_APP_URL_QS, assert_error, callback_url, envelope, post_event, signing_key, subscribe



def count_calls(sandbox, method, path):
    return sum(1 for r in sandbox_requests(sandbox) if r["method"] == method and r["path"] == path)


# Subscribe -------------------------------------------------------------------------
def test_subscribe_creates_a_calendly_hook_and_answers_201_with_location(bridge, sandbox, target):
    response = subscribe(bridge, target)
    assert response.status_code == 201, response.text
    sub = response.json()
    assert response.headers["Location"] == f"{bridge.url}/api/subscriptions/{sub['id']}"
    assert {"id", "events", "scope", "target", "calendly_webhook", "created_at"} <= set(sub)
    assert sub["events"] == ["invitee.created"] and sub["scope"] == "organization"
    assert "LOGICSECRET123" not in response.text and "sig=REDACTED" in sub["target"]["url"]
    [hook] = sandbox_hooks(sandbox)
    assert hook["uri"] == sub["calendly_webhook"]
    # Calendly calls a random token's path, never the (computable) management id's.
    assert re.fullmatch(rf"{re.escape(bridge.url)}/api/calendly/events/[A-Za-z0-9_-]{{43}}", hook["callback_url"])
    assert sub["id"] not in hook["callback_url"]
    assert hook["has_signing_key"] is True and hook["scope"] == "organization"
    created = [r for r in sandbox_requests(sandbox) if r["method"] == "POST" and r["path"] == "/webhook_subscriptions"]
    assert created[0]["body"]["organization"] == hook["organization"]


def test_repeating_a_subscribe_is_idempotent_and_users_me_is_cached(bridge, sandbox, target):
    first = subscribe(bridge, target)
    second = subscribe(bridge, target)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(sandbox_hooks(sandbox)) == 1
    other = subscribe(bridge, target, events=("invitee.canceled",))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert count_calls(sandbox, "GET", "/users/me") == 1
    assert count_calls(sandbox, "POST", "/webhook_subscriptions") == 2


@pytest.mark.parametrize("field", ["callbackUrl", "notificationUrl"])
def test_platform_specific_url_fields_subscribe(bridge, target, field):
    assert subscribe(bridge, target, field=field).status_code == 201


def test_user_scope_defaults_to_the_pat_owner(bridge, sandbox, target):
    response = subscribe(bridge, target, scope="user")
    assert response.status_code == 201, response.text
    [hook] = sandbox_hooks(sandbox)
    me = requests.get(f"{sandbox.url}/users/me", headers={"Authorization": "Bearer test-pat"}, timeout=5).json()["resource"]
    assert hook["scope"] == "user" and hook["user"] == me["uri"] == response.json()["user"]


def test_refused_scope_combinations_are_400_before_calling_calendly(bridge, sandbox, target):
    assert_error(subscribe(bridge, target, events=("routing_form_submission.created",), scope="user"), 400, "invalid_scope")
    assert_error(subscribe(bridge, target, scope="group"), 400)
    assert count_calls(sandbox, "POST", "/webhook_subscriptions") == 0


@pytest.mark.parametrize("data", [b"not json", b"[1,2]", b'"x"', b"\xff\xfe", b"{}", b'{"url": 5, "events": ["invitee.created"]}'])
def test_bad_subscribe_bodies_are_json_400s(bridge, data):
    assert_error(bridge.api("POST", "/subscriptions", data=data), 400)


def test_calendly_rejecting_the_pat_is_a_502_and_leaves_nothing(bridge, sandbox, target):
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated"}, timeout=5)
    error = assert_error(subscribe(bridge, target), 502, "calendly_unauthorized")
    assert "test-pat" not in error["message"]
    assert bridge.api("GET", "/subscriptions").json()["value"] == []


def test_calendly_failing_on_create_leaves_no_half_made_subscription(bridge, sandbox, target):
    subscribe(bridge, target, events=("invitee.canceled",))  # warms the /users/me cache
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"method": "POST", "path_prefix": "/webhook_subscriptions",
                                                         "status": 503, "count": 10}, timeout=5)
    assert_error(subscribe(bridge, target), 503, "calendly_unavailable")
    assert len(bridge.api("GET", "/subscriptions").json()["value"]) == 1
    assert len(sandbox_hooks(sandbox)) == 1


def test_leftover_hook_409_is_replaced_following_every_page(bridge, sandbox, target):
    from shared.models import SubscriptionState
    from shared.store.sqlite import SqliteStore

    first = subscribe(bridge, target).json()
    url = callback_url(bridge, first)
    # Fill the scope past one page so the leftover hook is not on the first page.
    org = sandbox_hooks(sandbox)[0]["organization"]
    for i in range(105):
        requests.post(f"{sandbox.url}/webhook_subscriptions", headers={"Authorization": "Bearer test-pat"}, timeout=5,
                      json={"url": f"https://other.example/{i:03d}", "events": ["invitee.created"], "organization": org,
                            "scope": "organization"}).raise_for_status()
    # A crash after Calendly made the hook but before the record said so: the record is still
    # 'creating' and knows no hook, and Calendly will answer 409 for the same callback URL.
    store = SqliteStore(bridge.env["BRIDGE_SQLITE_PATH"])
    record = store.get_subscription(first["id"])
    store.update_subscription(record.replace(state=SubscriptionState.CREATING, calendly_webhook=None))
    store.close()
    again = subscribe(bridge, target)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first["id"]
    ours = [h for h in sandbox_hooks(sandbox) if h["callback_url"] == url]
    assert len(ours) == 1 and ours[0]["uri"] != first["calendly_webhook"]
    assert [h["uri"] for h in sandbox_hooks(sandbox) if h["callback_url"].startswith(bridge.url)] == [ours[0]["uri"]]
    # The replaced hook signs with the new key the bridge holds: events verify.
    result = simulate(sandbox, "invitee.created", webhook=ours[0]["uri"].rsplit("/", 1)[1])
    assert [d["status"] for d in result["deliveries"]] == [200]
    assert len(target.wait_for(1)) == 1


# List, get, unsubscribe -------------------------------------------------------------
def test_list_is_paged_and_redacted(bridge, target):
    ids = {subscribe(bridge, target, path=f"/flow{i}").json()["id"] for i in range(3)}
    page = bridge.api("GET", "/subscriptions", params={"limit": 2}).json()
    assert len(page["value"]) == 2 and page["next_cursor"]
    rest = bridge.api("GET", "/subscriptions", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert {s["id"] for s in page["value"] + rest["value"]} == ids and rest["next_cursor"] is None
    assert "LOGICSECRET123" not in json.dumps(page) + json.dumps(rest)
    assert_error(bridge.api("GET", "/subscriptions", params={"limit": 0}), 400)
    assert_error(bridge.api("GET", "/subscriptions", params={"cursor": "../../x"}), 400)


def test_get_one_and_unknown_ids(bridge, target):
    sub = subscribe(bridge, target).json()
    got = bridge.api("GET", f"/subscriptions/{sub['id']}")
    assert got.status_code == 200 and got.json()["id"] == sub["id"] and "signing_key" not in got.text
    assert_error(bridge.api("GET", f"/subscriptions/{'0' * 32}"), 404)
    assert_error(bridge.api("GET", "/subscriptions/..%2F..%2Fetc%2Fpasswd"), 404)


def test_delete_location_removes_hook_and_record_and_repeats_are_204(bridge, sandbox, target):
    response = subscribe(bridge, target)
    location = response.headers["Location"]
    assert requests.delete(location, timeout=10).status_code == 204
    assert sandbox_hooks(sandbox) == []
    assert bridge.api("GET", f"/subscriptions/{response.json()['id']}").status_code == 404
    assert requests.delete(location, timeout=10).status_code == 204
    assert bridge.api("DELETE", "/subscriptions/not-an-id").status_code == 204


def test_delete_when_calendly_already_lost_the_hook(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    requests.delete(f"{sandbox.url}/_sandbox/hooks/{sub['calendly_webhook'].rsplit('/', 1)[1]}", timeout=5)
    assert bridge.api("DELETE", f"/subscriptions/{sub['id']}").status_code == 204
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").status_code == 404


def test_delete_failing_at_calendly_is_503_and_keeps_the_record(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"method": "DELETE", "status": 500, "count": 10}, timeout=5)
    assert_error(bridge.api("DELETE", f"/subscriptions/{sub['id']}"), 503)
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").json()["state"] == "deleting"
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"clear": True}, timeout=5)
    requests.post(f"{sandbox.url}/_sandbox/reset", json={"keep_hooks": True}, timeout=5)


def test_unsubscribe_by_callback_url_query_and_body(bridge, sandbox, target):
    url = f"{target.url}/flow{LOGIC_APP_URL_QS}"
    subscribe(bridge, target, events=("invitee.created",))
    subscribe(bridge, target, events=("invitee.canceled",))
    keep = subscribe(bridge, target, path="/other").json()
    assert bridge.api("DELETE", "/subscriptions", params={"callbackUrl": url}).status_code == 204
    assert [s["id"] for s in bridge.api("GET", "/subscriptions").json()["value"]] == [keep["id"]]
    assert len(sandbox_hooks(sandbox)) == 1
    assert bridge.api("DELETE", "/subscriptions", json={"callbackUrl": f"{target.url}/other{LOGIC_APP_URL_QS}"}).status_code == 204
    assert sandbox_hooks(sandbox) == []
    assert_error(bridge.api("DELETE", "/subscriptions"), 400, "missing_callback_url")


# Calendly callbacks -----------------------------------------------------------------
def test_signed_event_is_forwarded_byte_for_byte_with_bridge_headers(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [200]
    [got] = target.wait_for(1)
    sent = json.dumps(result["envelope"], ensure_ascii=False).encode("utf-8")
    assert got["body"] == sent
    assert got["headers"]["content-type"] == "application/json"
    assert got["headers"]["x-calendly-event"] == "invitee.created"
    assert got["headers"]["x-bridge-subscription-id"] == sub["id"]
    assert got["headers"]["x-bridge-delivery-id"].startswith(sub["id"] + "-")
    assert got["path"] == "/flow" and "sig=LOGICSECRET123" in got["query"]


def test_same_event_twice_is_forwarded_once(bridge, sandbox, target):
    subscribe(bridge, target)
    result = simulate(sandbox, "invitee.created", repeat=2)
    assert [d["status"] for d in result["deliveries"]] == [200, 200]
    assert "duplicate" in result["deliveries"][1]["response"]
    # The first answer came after its in-request forward; the duplicate's answer says nothing was sent.
    assert len(target.received) == 1


def test_event_type_not_subscribed_is_200_and_not_forwarded(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    response = post_event(bridge, sub, envelope("invitee.canceled"), key=signing_key(bridge, sub, sandbox))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert target.received == []


def test_signature_problems_are_401(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    key = signing_key(bridge, sub, sandbox)
    body = envelope()
    assert_error(post_event(bridge, sub, body), 401, "invalid_signature")
    assert_error(post_event(bridge, sub, body, key="wrong-key"), 401)
    assert_error(post_event(bridge, sub, body, header=signatures.sign(body, key, int(time.time()) - 1000)), 401)
    assert_error(post_event(bridge, sub, body, header="t=abc,v1=zz"), 401)
    tampered = body.replace(b"zoe@", b"eve@")
    assert_error(post_event(bridge, sub, tampered, header=signatures.sign(body, key)), 401)
    assert target.received == []


def test_unknown_subscription_is_404(bridge):
    assert_error(post_event(bridge, "f" * 32, envelope(), key="k"), 404)
    # The client removes the dot segments: /api/admin, which no function serves (the host's empty 404).
    assert post_event(bridge, "../../admin", envelope(), key="k").status_code == 404


@pytest.mark.parametrize("body", [b"not json", b"[1,2,3]", b'{"payload": {}}', b'{"event": 7}', b"\xff\xfe\xfd"])
def test_malformed_event_bodies_are_400(bridge, sandbox, target, body):
    sub = subscribe(bridge, target).json()
    assert_error(post_event(bridge, sub, body, key=signing_key(bridge, sub, sandbox)), 400, "invalid_event")


def test_oversized_event_is_413(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    body = envelope(notes="x" * (256 * 1024))
    assert_error(post_event(bridge, sub, body, key=signing_key(bridge, sub, sandbox)), 413)


def test_failing_target_leaves_a_pending_delivery_then_redeliver_sends_it_once(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    target.respond(default=503)
    started = time.monotonic()
    result = simulate(sandbox, "invitee.created")
    assert time.monotonic() - started < 10, "Calendly must get its answer within 10 s"
    assert [d["status"] for d in result["deliveries"]] == [202]
    [delivery] = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"]
    assert delivery["status"] == "pending" and delivery["attempts"] == 1 and delivery["last_status"] == 503
    failed_ids = {r["headers"]["x-bridge-delivery-id"] for r in target.received}
    target.respond(default=200)
    done = bridge.run("redeliver")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["delivered"] == 1
    [got] = target.delivered()
    assert failed_ids == {got["headers"]["x-bridge-delivery-id"]} == {delivery["id"]}
    assert got["body"] == json.dumps(result["envelope"], ensure_ascii=False).encode("utf-8")
    assert bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"][0]["status"] == "delivered"
    assert json.loads(bridge.run("redeliver").stdout)["attempted"] == 0


def test_hanging_target_does_not_hold_calendly_past_10_seconds(bridge, sandbox, target):
    subscribe(bridge, target)
    target.delay = 6.5
    started = time.monotonic()
    result = simulate(sandbox, "invitee.created")
    assert time.monotonic() - started < 10
    assert [d["status"] for d in result["deliveries"]] == [202]


def test_target_retry_after_is_honoured_within_the_request(bridge, sandbox, target):
    subscribe(bridge, target)
    target.respond((503, {"Retry-After": "1"}), 200)
    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [200]
    assert [r["status"] for r in target.received] == [503, 200]


def test_target_gone_retires_the_subscription_and_its_hook(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    target.respond(410)
    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [200]
    assert sandbox_hooks(sandbox) == []
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").json()["state"] == "retired"
    assert len(target.received) == 1


# Health and unknown routes -----------------------------------------------------------
def test_health_reports_without_secrets(bridge):
    response = bridge.api("GET", "/health")
    assert response.status_code == 200
    assert response.json()["checks"]["store"] == "ok"
    assert "test-pat" not in response.text and bridge.env["BRIDGE_SQLITE_PATH"] not in response.text


def test_unknown_route_and_wrong_method_are_the_hosts_empty_404(bridge):
    """As the Functions host answers: no function for the path, or none for the method, is an empty 404."""
    for method, path in (("GET", "/nope"), ("PUT", "/subscriptions"), ("PATCH", "/subscriptions/" + "a" * 32)):
        response = bridge.api(method, path)
        assert (response.status_code, response.content) == (404, b""), (method, path)
