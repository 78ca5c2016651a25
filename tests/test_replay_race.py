"""A replay never races the retry path into a second POST of the same attempt, on SQLite and on
Table Storage (Azurite): a pending delivery belongs to the retry path (replay answers 409), and of
replays racing each other and the retry path on a dead delivery, exactly one sends."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest

from shared import api
from tests.inprocess import STORES, Caller, compose_on, event
from tests.peers import FakeClock


@pytest.fixture(params=STORES)
def caller(request, tmp_path, sandbox):
    bridge = compose_on(request.param, request, tmp_path, sandbox, clock=FakeClock(datetime(2026, 3, 1, tzinfo=timezone.utc)),
                        env={"DELIVERY_MAX_ATTEMPTS": "2"})
    yield Caller(bridge, sandbox)
    bridge.close()


@pytest.fixture
def clock(caller):
    return caller.bridge.deliveries.clock


def replay(caller: Caller, delivery_id: str):
    return caller.call(api.replay_delivery, "POST", f"/deliveries/{delivery_id}/replay", delivery_id=delivery_id)


def race(*jobs) -> list:
    """Run the jobs at once (released together), return their results in order."""
    start, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, job):
        start.wait()
        try:
            results[i] = job()
        except Exception as exc:  # noqa: BLE001 - recorded, asserted on
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_replaying_a_pending_delivery_is_a_409_and_the_retry_path_sends_it_once(caller, clock, target):
    sub, url = caller.subscribed(target)
    target.respond(default=503)
    delivery_id = json.loads(caller.post_event(url, event(1)).body)["delivery_id"]
    target.respond(default=200)
    clock.advance(120)  # past the in-request attempt's lease
    sent_before = len(target.received)
    answers = race(*[lambda: replay(caller, delivery_id)] * 4,
                   lambda: caller.bridge.deliveries.retry_due(due_only=False))
    # A replay that met the delivery still pending is refused; one that came after the retry
    # path delivered it is a replay of a delivered event (a deliberate resend, sent on its own).
    replays = [json.loads(a.body) for a in answers[:4]]
    refused = [r for r in replays if r.get("error", {}).get("code") in ("delivery_pending", "delivery_replaying", "conflict")]
    resent = [r for r in replays if r.get("status") == "delivered"]
    assert len(refused) + len(resent) == 4 and answers[4]["delivered"] == 1, replays
    assert len(target.received) - sent_before == 1 + len(resent)
    assert all(a.status == 409 for a in answers[:4] if json.loads(a.body).get("error"))
    [item] = caller.deliveries(sub["id"])
    assert item["status"] == "delivered"


def test_racing_replays_of_a_dead_delivery_send_it_once(caller, clock, target):
    sub, url = caller.subscribed(target)
    target.respond(default=503)
    delivery_id = json.loads(caller.post_event(url, event(2)).body)["delivery_id"]
    clock.advance(120)
    caller.bridge.deliveries.retry_due(due_only=False)  # second and last attempt: dead
    [dead] = caller.deliveries(sub["id"])
    assert dead["status"] == "dead"
    target.respond(default=200)
    sent_before = len(target.received)
    # The retry path at its most eager ("redeliver" without --due-only: every pending one, now).
    answers = race(*[lambda: replay(caller, delivery_id)] * 5, lambda: caller.bridge.deliveries.retry_due(due_only=False))
    statuses = sorted(a.status for a in answers[:5])
    # Each replay that won sent exactly one POST (a replay that came after another finished is a
    # resend of a delivered event); every other one lost its compare-and-set or met it in flight.
    assert statuses.count(200) >= 1 and all(s == 409 for s in statuses if s != 200), statuses
    assert len(target.received) - sent_before == statuses.count(200)
