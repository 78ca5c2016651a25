"""Delivery isolation and the callback path's cost, on SQLite and on Table Storage (Azurite):
one POST per attempt (a read timeout ends it), a slow target's share of in-request attempts is
bounded (the rest are answered 202 at once and delivered by the retry path, while other
subscriptions' callbacks go through), at most 2 storage requests per forwarded callback, and a
subscription deleted by another bridge process stops forwarding within the cache's bound."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone

import pytest

from shared.isolation import IN_REQUEST_PER_TARGET, SUBSCRIPTION_CACHE_SECONDS
from shared.models import Delivery, HttpEndpoint, Subscription, SubscriptionState
from shared.settings import Settings
from tests.inprocess import STORES, Caller, compose_on, event
from tests.peers import FakeClock

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


class GatedTarget:
    """A flow's callback that holds every request until ``release()``; counts what it got."""

    def __init__(self):
        from devtools.servers import BackgroundServer

        self.gate = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.received: list[str] = []
        self._lock = threading.Lock()
        self.server = BackgroundServer(self, threads=16).start()
        self.url = self.server.url

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self._lock:
            self.received.append(environ.get("HTTP_X_BRIDGE_DELIVERY_ID", ""))
        self.arrived.release()
        self.gate.wait(30)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def release(self):
        self.gate.set()

    def close(self):
        self.gate.set()
        self.server.stop()


@pytest.fixture(params=STORES)
def make(request, tmp_path, sandbox):
    made = []

    shared_store = {"sqlite": {"BRIDGE_SQLITE_PATH": str(tmp_path / "shared.sqlite3")},
                    "tables": {"BRIDGE_TABLE_PREFIX": f"s{uuid.uuid4().hex[:10]}", "DELIVERY_QUEUE": f"s{uuid.uuid4().hex[:12]}"}}

    def build(clock=None, shared=False):
        """A bridge on the parametrized store; ``shared``: the same store as every other shared one."""
        env = shared_store[request.param] if shared else {}
        bridge = compose_on(request.param, request, tmp_path, sandbox, clock=clock or FakeClock(START), env=env)
        made.append(bridge)
        return Caller(bridge, sandbox)

    yield build
    for bridge in made:
        bridge.close()


# One POST per attempt ----------------------------------------------------------------------
def test_a_read_timeout_ends_the_attempt_after_one_post(monkeypatch):
    import urllib3

    from shared.targets import http as http_target

    gated = GatedTarget()
    monkeypatch.setattr(http_target, "ATTEMPT_TIMEOUT", urllib3.Timeout(connect=2.0, read=0.3))
    sub = Subscription(id="c" * 32, target=HttpEndpoint(f"{gated.url}/slow"), events=["invitee.created"],
                       scope="organization", organization="o", user=None, group=None, signing_key="k", generation="g",
                       state=SubscriptionState.ACTIVE)
    delivery = Delivery(id=f"{'c' * 32}-{'0' * 24}", subscription_id=sub.id, event="invitee.created", event_key="k", body=b"{}")
    try:
        result = http_target.HttpTarget(Settings.from_env({"ALLOW_INSECURE_TARGETS": "true"})).send(sub, delivery, 8.0)
    finally:
        gated.close()
    assert not result.ok and result.error == "target unreachable: timed out"
    assert gated.received == [delivery.id]  # not sent again within the attempt


# The bulkhead ------------------------------------------------------------------------------
def test_a_slow_target_holds_at_most_its_share_and_others_go_through(make, target):
    caller = make()
    gated = GatedTarget()
    try:
        slow_sub, slow_url = caller.subscribed(gated, path="/slow")
        fast_sub, fast_url = caller.subscribed(target, path="/fast")
        answers: dict[int, object] = {}

        def post(n):
            answers[n] = caller.post_event(slow_url, event(n))

        held = [threading.Thread(target=post, args=(n,)) for n in range(IN_REQUEST_PER_TARGET)]
        for thread in held:
            thread.start()
        for _ in held:
            assert gated.arrived.acquire(timeout=10)  # every slot is now held by a request in flight
        # Past the share: recorded, answered 202 at once (the target is still holding the others).
        extra = [caller.post_event(slow_url, event(100 + n)) for n in range(3)]
        assert [a.status for a in extra] == [202, 202, 202]
        assert all(json.loads(a.body)["status"] == "pending" for a in extra)
        assert len(gated.received) == IN_REQUEST_PER_TARGET
        # Another subscription's callback is not held up by the slow one.
        fast = caller.post_event(fast_url, event(200))
        assert fast.status == 200 and json.loads(fast.body)["status"] == "delivered" and not gated.gate.is_set()
        gated.release()
        for thread in held:
            thread.join(30)
        assert all(answers[n].status == 200 for n in range(IN_REQUEST_PER_TARGET))
        # The deferred ones are due at once and the retry path delivers them.
        summary = caller.bridge.deliveries.retry_due()
        assert summary["delivered"] == 3
        statuses = {d["status"] for d in caller.deliveries(slow_sub["id"])}
        assert statuses == {"delivered"} and len(gated.received) == IN_REQUEST_PER_TARGET + 3
    finally:
        gated.close()


# Storage requests per callback ----------------------------------------------------------------
class CountingStore:
    """Counts the store's calls (each is one storage request on Table Storage, but for large bodies)."""

    READS_AND_WRITES = ("get_subscription", "callback_subscription_id", "record_delivery", "update_delivery",
                        "get_delivery", "list_subscriptions", "update_subscription")

    def __init__(self, store):
        self.calls: list[str] = []
        for name in self.READS_AND_WRITES:
            original = getattr(store, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                self.calls.append(_name)
                return _original(*args, **kwargs)

            setattr(store, name, counted)


def test_a_forwarded_callback_costs_two_storage_requests_and_a_duplicate_one(make, target):
    caller = make()
    sub, url = caller.subscribed(target)
    counter = CountingStore(caller.bridge.store._inner)
    assert caller.post_event(url, event(1)).status == 200  # first callback: looks the subscription up
    counter.calls.clear()
    assert json.loads(caller.post_event(url, event(2)).body)["status"] == "delivered"
    assert counter.calls == ["record_delivery", "update_delivery"]
    counter.calls.clear()
    assert json.loads(caller.post_event(url, event(2)).body)["status"] == "duplicate"
    assert counter.calls == ["record_delivery"]


# Deleted elsewhere ---------------------------------------------------------------------------
def test_a_subscription_deleted_by_another_process_stops_forwarding_within_the_cache_bound(make, target):
    """Two bridges (as two workers or instances) sharing one store."""
    clock = FakeClock(START)
    a, b = make(clock, shared=True), make(clock, shared=True)
    sub, url = a.subscribed(target)
    key = a.sandbox.app.signing_key(url)  # Calendly's key for the hook, kept: the hook goes with the unsubscribe
    assert b.post_event(url, event(1), key=key).status == 200  # B has now cached the subscription
    assert a.unsubscribe(sub["id"]).status == 204
    assert a.post_event(url, event(2), key=key).status == 410  # the process that deleted it knows at once (gone)
    clock.advance(SUBSCRIPTION_CACHE_SECONDS - 1)
    assert b.post_event(url, event(3), key=key).status == 200  # within the bound B may still forward
    clock.advance(1.5)
    assert b.post_event(url, event(4), key=key).status == 410  # past it, never: Calendly is told it is gone
