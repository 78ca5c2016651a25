"""Durable retries on Azurite: failed deliveries go to the Storage queue with a backoff
(visibility timeout) and are retried by the function the queue trigger declares, driven here the
way the Functions host drives it (receive with the real SDK, call the handler, delete on success)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared import signatures
from shared.composition import Bridge, compose
from shared.delivery import DeliveryPolicy
from shared.models import Delivery, DeliveryStatus, HttpEndpoint, Subscription, SubscriptionState
from shared.azure_clients import queue_client
from shared.retry_queue import QueueScheduler, handle_message, message_text
from shared.settings import Settings
from tests.azurite import ACCOUNT
from tests.conftest import ROOT, declared_functions, functions_over
from tests.peers import FakeClock, free_port

DEAD, DELIVERED, PENDING = DeliveryStatus.DEAD, DeliveryStatus.DELIVERED, DeliveryStatus.PENDING

MAX_ATTEMPTS = 3


def retry_function():
    [fn] = [f for f in declared_functions() if f.get_function_name() == "retry_delivery"]
    return fn


def storage_env(azurite: str, **extra: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": azurite, "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "DELIVERY_QUEUE": f"q{uuid.uuid4().hex[:12]}", "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071",
            "CALENDLY_PAT": "x", "ALLOW_INSECURE_TARGETS": "true", "DELIVERY_MAX_ATTEMPTS": str(MAX_ATTEMPTS), **extra}


# Backoff of about a second (hidden in the real queue that long), and one-second attempts.
FAST = DeliveryPolicy(max_attempts=MAX_ATTEMPTS, in_request_budget=1.0, worker_budget=1.0, backoff_base=1.0)


def queue_bridge(env: dict[str, str], target, clock=None) -> tuple[Bridge, Subscription]:
    bridge = compose(Settings.from_env(env), policy=FAST, **({"clock": clock} if clock else {}))
    sub = bridge.store.create_subscription(Subscription(
        id=uuid.uuid4().hex, target=HttpEndpoint(f"{target.url}/flow"), events=["invitee.created"], scope="organization",
        organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="k", generation="g",
        state=SubscriptionState.ACTIVE))
    return bridge, sub


@pytest.fixture
def azure_bridge(azurite, target):
    env = storage_env(azurite)
    clock = FakeClock()
    bridge, sub = queue_bridge(env, target, clock)
    reader = QueueClient.from_connection_string(azurite, env["DELIVERY_QUEUE"], message_decode_policy=TextBase64DecodePolicy())
    yield bridge, sub, reader, clock
    bridge.close()
    reader.close()


def receive_signed(bridge, sub, n=0):
    body = json.dumps({"event": "invitee.created", "payload": {"uri": f"https://api.calendly.com/x/invitees/{n}", "name": "Zoë"}},
                      ensure_ascii=False).encode()
    return bridge.callbacks.receive(sub.id, {signatures.HEADER: signatures.sign(body, "k")}, body)


def run_host(bridge, reader, until, timeout=20.0) -> int:
    """The Functions host's loop: receive visible messages, run the queue-triggered function (declared
    over ``bridge``) with the decoded body, delete the message when the function returns. Returns
    messages handled."""
    handler = functions_over(bridge)["retry_delivery"].get_user_function()
    deadline = time.monotonic() + timeout
    handled = 0
    while time.monotonic() < deadline and not until():
        for message in reader.receive_messages(visibility_timeout=30, max_messages=8):
            handler(func.QueueMessage(id=message.id, body=message.content.encode("utf-8"), pop_receipt=message.pop_receipt))
            reader.delete_message(message)
            handled += 1
        time.sleep(0.1)
    return handled


def status_of(bridge, delivery_id):
    return bridge.store.get_delivery(delivery_id).status


def failed_first_attempt(bridge, sub, target, n=0) -> str:
    """An event whose in-request attempt met a target answering 503: pending, queued for a retry."""
    target.respond(default=503)
    response = receive_signed(bridge, sub, n)
    assert response.status == 202
    return json.loads(response.body)["delivery_id"]


@pytest.mark.azurite
def test_target_down_then_up_is_delivered_exactly_once(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target)
    assert reader.get_queue_properties().approximate_message_count == 1
    assert reader.peek_messages() == [], "hidden for its backoff"
    target.respond(default=200)
    run_host(bridge, reader, until=lambda: status_of(bridge, delivery_id) == DELIVERED)
    assert [r["headers"]["x-bridge-delivery-id"] for r in target.delivered()] == [delivery_id]
    assert bridge.store.get_delivery(delivery_id).attempts == 2  # the failed in-request attempt, then the retry
    assert reader.get_queue_properties().approximate_message_count == 0, "nothing more is scheduled (hidden or not)"


@pytest.mark.azurite
def test_target_down_past_the_last_attempt_is_dead_and_kept_for_replay(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target, 1)
    run_host(bridge, reader, until=lambda: status_of(bridge, delivery_id) == DEAD, timeout=40)
    dead = bridge.store.get_delivery(delivery_id)
    assert (dead.status, dead.attempts, dead.last_status) == (DEAD, MAX_ATTEMPTS, 503)
    assert [d.id for d in bridge.store.list_deliveries(sub.id, 10)[0]] == [delivery_id]
    assert reader.get_queue_properties().approximate_message_count == 0, "nothing left to retry: it is dead, not dropped"
    target.respond(default=200)
    assert bridge.deliveries.replay(delivery_id).status == DELIVERED
    assert [r["headers"]["x-bridge-delivery-id"] for r in target.delivered()] == [delivery_id]


def test_the_backoff_spans_hours_with_the_default_attempts():
    delays = [DeliveryPolicy(jitter=lambda low, high: low).backoff_seconds(n) for n in range(1, 8)]  # the shortest draws
    assert int(Settings.from_env({}).delivery_max_attempts) == 8 and sum(delays) > 3 * 3600


def test_the_backoff_jitter_is_injected_and_bounded():
    draws: list = []
    policy = DeliveryPolicy(jitter=lambda low, high: draws.append((low, high)) or high)
    assert policy.backoff_seconds(2) == pytest.approx(180 * 1.1) and draws == [(0.9, 1.1)]
    assert DeliveryPolicy(jitter=lambda low, high: low).backoff_seconds(20) == pytest.approx(4 * 3600 * 0.9)
    real = [DeliveryPolicy().backoff_seconds(1) for _ in range(50)]  # the default draws from random.uniform
    assert all(54 <= d <= 66 for d in real) and len(set(real)) > 1


@pytest.mark.azurite
def test_a_message_delivered_twice_sends_once(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target, 2)
    pending = bridge.store.get_delivery(delivery_id)
    bridge.deliveries.scheduler.schedule(pending, 0)  # the queue's at-least-once: a second copy
    target.respond(default=200)
    deadline, copies = time.monotonic() + 10, []
    while len(copies) < 2 and time.monotonic() < deadline:
        copies += [m.content for m in reader.receive_messages(max_messages=8, visibility_timeout=60)]
        time.sleep(0.1)
    assert len(copies) == 2
    with ThreadPoolExecutor(2) as workers:  # two Functions instances, each with one copy, at once
        outcomes = list(workers.map(lambda text: handle_message(bridge.deliveries, text), copies))
    assert DELIVERED in outcomes and set(outcomes) <= {DELIVERED, "claimed elsewhere", "not due"}
    assert len(target.delivered()) == 1


@pytest.mark.azurite
def test_a_message_for_a_delivery_another_worker_holds_is_put_back_not_sent(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target, 3)
    leased = bridge.deliveries.claim(bridge.store.get_delivery(delivery_id))  # another worker is attempting it
    target.respond(default=200)
    assert handle_message(bridge.deliveries, message_text(leased)) == "not due"
    assert target.delivered() == [] and status_of(bridge, delivery_id) == PENDING
    assert reader.get_queue_properties().approximate_message_count == 2, "put back for when the lease ends"


@pytest.mark.azurite
def test_a_message_that_a_later_attempt_overtook_is_dropped(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target, 4)
    old = bridge.store.get_delivery(delivery_id)
    target.respond(default=200)
    assert bridge.deliveries.retry(delivery_id).status == DELIVERED  # the retry path got there first
    assert handle_message(bridge.deliveries, message_text(old)) == DELIVERED
    assert handle_message(bridge.deliveries, message_text(old.replace(attempts=old.attempts - 1))) == DELIVERED
    assert len(target.delivered()) == 1


@pytest.mark.azurite
def test_a_lost_queue_message_is_caught_by_the_overdue_safety_net(azure_bridge, target):
    bridge, sub, reader, clock = azure_bridge
    delivery_id = failed_first_attempt(bridge, sub, target, 5)
    reader.clear_messages()  # the message is gone (a crash before enqueueing)
    target.respond(default=200)
    assert bridge.deliveries.retry_due(overdue_seconds=600)["attempted"] == 0, "not overdue yet"
    clock.advance(601 + 1.1 * FAST.backoff_base)
    assert bridge.deliveries.retry_due(overdue_seconds=600)["delivered"] == 1
    assert status_of(bridge, delivery_id) == DELIVERED and len(target.delivered()) == 1


@pytest.mark.azurite
def test_queue_down_when_scheduling_still_answers_202_and_the_safety_net_sends_it(azurite, target):
    parts = dict(part.split("=", 1) for part in azurite.split(";") if part)
    parts["QueueEndpoint"] = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"  # nothing listens there
    clock = FakeClock()
    bridge, sub = queue_bridge(storage_env(";".join(f"{k}={v}" for k, v in parts.items())), target, clock)
    try:
        target.respond(default=503)
        response = receive_signed(bridge, sub, 6)
        assert response.status == 202
        delivery_id = json.loads(response.body)["delivery_id"]
        assert status_of(bridge, delivery_id) == PENDING
        target.respond(default=200)
        assert bridge.deliveries.retry_due()["attempted"] == 0, "not due yet"
        clock.advance(1.1 * FAST.backoff_base)
        assert bridge.deliveries.retry_due()["delivered"] == 1
    finally:
        bridge.close()


@pytest.mark.azurite
def test_redeliver_command_works_against_table_storage(azurite, target, tmp_path):
    env = storage_env(azurite)
    bridge, sub = queue_bridge(env, target)
    try:
        target.respond(default=503)
        delivery_id = json.loads(receive_signed(bridge, sub, 7).body)["delivery_id"]
        target.respond(default=200)
        done = subprocess.run([sys.executable, "-m", "shared", "redeliver"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["delivered"] == 1
        assert status_of(bridge, delivery_id) == DELIVERED and len(target.delivered()) == 1
    finally:
        bridge.close()


@pytest.mark.azurite
def test_malformed_messages_are_dropped_not_retried_forever(azure_bridge):
    bridge, _, _, _ = azure_bridge
    for text in ("not json", '{"delivery_id": 5}', "[]", '{"delivery_id": "x", "attempts": "1"}', ""):
        assert handle_message(bridge.deliveries, text) == "malformed"
    assert handle_message(bridge.deliveries, json.dumps({"delivery_id": f"{uuid.uuid4().hex}-{'0' * 24}"})) == "unknown"


@pytest.mark.azurite
def test_a_backoff_longer_than_a_message_can_hide_is_capped_at_seven_days(azurite):
    env = storage_env(azurite)
    scheduler = QueueScheduler(queue_client(Settings.from_env(env)))
    scheduler.schedule(Delivery(id=f"{'a' * 32}-{'0' * 24}", subscription_id="a" * 32, event="e", event_key="k", body=b""),
                       30 * 24 * 3600)  # e.g. a Retry-After of 30 days: Storage refuses more than 7
    reader = QueueClient.from_connection_string(azurite, env["DELIVERY_QUEUE"])
    assert reader.get_queue_properties().approximate_message_count == 1
    scheduler.close()
    reader.close()


def test_queue_trigger_is_declared_on_the_delivery_queue():
    trigger = retry_function().get_trigger()
    assert trigger.queue_name == "%DELIVERY_QUEUE%" and trigger.connection == "AzureWebJobsStorage"
    assert trigger.get_binding_name() == "queueTrigger"
