"""Durable retries on Azurite: failed deliveries go to the Storage queue with a backoff
(visibility timeout) and are retried by the same handler the queue trigger calls."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared import delivery as delivery_module, signatures
from shared.bridge import Bridge
from shared.callbacks import receive
from shared.http import Headers
from shared.models import ACTIVE, Subscription
from shared.retry_queue import handle_message
from shared.settings import Settings
from tests.conftest import declared_functions


@pytest.fixture
def azure_bridge(azurite, target, monkeypatch):
    monkeypatch.setattr(delivery_module, "BACKOFF_BASE_SECONDS", 1.0)
    monkeypatch.setattr(delivery_module, "IN_REQUEST_BUDGET_SECONDS", 1.0)
    queue = f"q{uuid.uuid4().hex[:12]}"
    settings = Settings.from_env({"AzureWebJobsStorage": azurite, "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}",
                                  "DELIVERY_QUEUE": queue, "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071", "CALENDLY_PAT": "x",
                                  "ALLOW_INSECURE_TARGETS": "true", "DELIVERY_MAX_ATTEMPTS": "3"})
    bridge = Bridge(settings)
    sub = bridge.store.create_subscription(Subscription(
        id=uuid.uuid4().hex, target={"type": "http", "url": f"{target.url}/flow"}, events=["invitee.created"], scope="organization",
        organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="k", generation="g", state=ACTIVE))
    reader = QueueClient.from_connection_string(azurite, queue, message_decode_policy=TextBase64DecodePolicy())
    yield bridge, sub, reader
    bridge.close()


def post_event(bridge, sub, n=0):
    body = json.dumps({"event": "invitee.created", "payload": {"uri": f"https://api.calendly.com/x/invitees/{n}", "name": "Zoë"}},
                      ensure_ascii=False).encode()
    return receive(bridge, sub.id, Headers({signatures.HEADER: signatures.sign(body, "k")}), body)


def run_worker(bridge, reader, until, timeout=20.0):
    """What the Functions host does: receive visible messages, call the trigger's handler, delete."""
    deadline = time.monotonic() + timeout
    handled = []
    while time.monotonic() < deadline and not until():
        for message in reader.receive_messages(visibility_timeout=30, max_messages=8):
            handled.append(handle_message(message.content, bridge))
            reader.delete_message(message)
        time.sleep(0.2)
    return handled


def test_target_down_then_up_is_delivered_exactly_once(azure_bridge, target):
    bridge, sub, reader = azure_bridge
    target.respond(default=503)
    response = post_event(bridge, sub)
    assert response.status == 202
    delivery_id = json.loads(response.body)["delivery_id"]
    assert reader.get_queue_properties().approximate_message_count == 1  # scheduled, visible after its backoff
    target.respond(default=200)
    handled = run_worker(bridge, reader, until=lambda: bridge.store.get_delivery(delivery_id).status == "delivered")
    assert handled == ["delivered"]
    assert [r["headers"]["x-bridge-delivery-id"] for r in target.delivered()] == [delivery_id]
    time.sleep(1.5)
    assert reader.peek_messages() == [], "nothing more is scheduled once delivered"


def test_target_down_past_the_last_attempt_is_dead_and_kept_for_replay(azure_bridge, target):
    bridge, sub, reader = azure_bridge
    target.respond(default=503)
    delivery_id = json.loads(post_event(bridge, sub, 1).body)["delivery_id"]
    run_worker(bridge, reader, until=lambda: bridge.store.get_delivery(delivery_id).status == "dead", timeout=40)
    dead = bridge.store.get_delivery(delivery_id)
    assert dead.status == "dead" and dead.attempts == 3 and dead.last_status == 503
    assert [d.id for d in bridge.store.list_deliveries(sub.id, 10)[0]] == [delivery_id]
    target.respond(default=200)
    assert bridge.deliveries.replay(delivery_id).status == "delivered"


def test_a_lost_queue_message_is_caught_by_the_overdue_safety_net(azure_bridge, target):
    bridge, sub, reader = azure_bridge
    target.respond(default=503)
    delivery_id = json.loads(post_event(bridge, sub, 2).body)["delivery_id"]
    reader.clear_messages()  # the message is gone (a crash before enqueueing)
    target.respond(default=200)
    time.sleep(1.5)
    assert bridge.deliveries.redeliver(due_only=True, overdue_seconds=0)["delivered"] == 1
    assert bridge.store.get_delivery(delivery_id).status == "delivered"


def test_malformed_messages_are_dropped_not_retried_forever(azure_bridge):
    bridge, _, _ = azure_bridge
    assert handle_message("not json", bridge) == "malformed"
    assert handle_message('{"delivery_id": 5}', bridge) == "malformed"


def test_queue_trigger_is_declared_on_the_delivery_queue():
    [fn] = [f for f in declared_functions() if f.get_function_name() == "retry_delivery"]
    trigger = fn.get_trigger()
    assert trigger.queue_name == "calendly-deliveries" and trigger.connection == "AzureWebJobsStorage"
