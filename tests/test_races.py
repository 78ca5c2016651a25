"""Subscribe and unsubscribe of the same target racing (issue 9, part 6), on SQLite and on Table
Storage (Azurite): once both requests have answered, the subscription exists with its Calendly
hook or neither does; no reconcile is needed to get there.

First the interleavings that used to leave debris, forced in-process by holding one Calendly call;
then 50 rounds of real concurrent HTTP requests against the local host and the sandbox."""
from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from shared.models import HttpEndpoint
from shared.subscriptions import subscription_id
from tests.inprocess import PUBLIC_URL, STORES, Caller, compose_on, event

EVENTS = ["invitee.created"]


@pytest.fixture(params=STORES)
def caller(request, tmp_path, sandbox):
    bridge = compose_on(request.param, request, tmp_path, sandbox)
    yield Caller(bridge, sandbox)
    bridge.close()


class Hold:
    """Holds the first call of one Calendly client method right after Calendly answered it,
    until ``release``; ``reached`` says the call got there."""

    def __init__(self, monkeypatch, calendly, method: str):
        self.reached, self.released, self._first = threading.Event(), threading.Event(), True
        real = getattr(calendly, method)

        def held(*args, **kwargs):
            result = real(*args, **kwargs)
            if self._first:
                self._first = False
                self.reached.set()
                assert self.released.wait(30), "never released"
            return result

        monkeypatch.setattr(calendly, method, held)

    def release(self) -> None:
        self.released.set()


def in_thread(fn, *args):
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=fn(*args)))
    thread.start()
    return thread, out


def bridge_hooks(caller: Caller) -> list[dict]:
    return [h for h in caller.sandbox.app.hooks() if h["callback_url"].startswith(PUBLIC_URL)]


def assert_consistent(caller: Caller, sub_id: str) -> str:
    """Either the record (active) with exactly its hook, calling its URL, or neither."""
    record = caller.bridge.store.get_subscription(sub_id)
    hooks = bridge_hooks(caller)
    if record is None:
        assert hooks == [], hooks
        return "neither"
    assert record.state == "active" and [h["uri"] for h in hooks] == [record.calendly_webhook], (record, hooks)
    assert hooks[0]["callback_url"] == caller.bridge.subscriptions.callback_url(record) and hooks[0]["state"] == "active"
    return "subscribed"


def test_an_unsubscribe_while_the_hook_is_being_created_leaves_neither(caller, target, monkeypatch):
    url = f"{target.url}/flow"
    sub_id = subscription_id(HttpEndpoint(url), EVENTS, "organization", None, None)
    hold = Hold(monkeypatch, caller.bridge.calendly, "create_webhook")
    thread, out = in_thread(caller.subscribe, url)
    assert hold.reached.wait(30)  # Calendly made the hook; the record still says 'creating'
    assert caller.unsubscribe(sub_id).status == 204
    hold.release()
    thread.join(30)
    lost = out["result"]
    assert lost.status == 409 and json.loads(lost.body)["error"]["code"] == "subscription_deleted", lost.body
    assert assert_consistent(caller, sub_id) == "neither"


def test_a_subscribe_while_an_unsubscribe_deletes_the_hook_ends_subscribed(caller, target, monkeypatch):
    url = f"{target.url}/flow"
    first = json.loads(caller.subscribe(url).body)
    hold = Hold(monkeypatch, caller.bridge.calendly, "delete_webhook")
    thread, out = in_thread(caller.unsubscribe, first["id"])
    assert hold.reached.wait(30)  # the record says 'deleting'; its hook is gone
    again = caller.subscribe(url)  # finishes that delete itself, then subscribes anew
    assert again.status == 201, again.body
    hold.release()
    thread.join(30)
    assert out["result"].status == 204
    assert assert_consistent(caller, first["id"]) == "subscribed"
    # ... and it works: Calendly's events for it are delivered.
    assert caller.post_event(caller.hook(json.loads(again.body))["callback_url"], event(1)).status == 200


def test_an_unsubscribe_while_reconcile_moves_an_old_record_leaves_no_hook(caller, target, monkeypatch):
    from tests.helpers import legacy_subscription

    record, _ = legacy_subscription(caller, target)
    hold = Hold(monkeypatch, caller.bridge.calendly, "create_webhook")
    thread, out = in_thread(caller.bridge.reconciler.reconcile)
    assert hold.reached.wait(30)  # the token path's hook exists; the record does not know it yet
    assert caller.unsubscribe(record.id).status == 204
    hold.release()
    thread.join(30)
    assert out["result"].moved == 0
    assert assert_consistent(caller, record.id) == "neither"


# 50 rounds over HTTP ---------------------------------------------------------------------------
def hang(sandbox, method: str, path: str, seconds: float) -> None:
    sandbox.app.add_fault(method=method, path_prefix=path, hang_seconds=seconds, count=1)


@pytest.mark.parametrize("kind", STORES)
def test_fifty_racing_rounds_leave_calendlys_hooks_and_the_records_in_agreement(kind, make_host, sandbox, target, request):
    env = {} if kind == "sqlite" else {"AzureWebJobsStorage": request.getfixturevalue("azurite"),
                                       "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}",
                                       "DELIVERY_QUEUE": f"q{uuid.uuid4().hex[:12]}"}
    host = make_host(**env)
    rng = random.Random(20260301)
    answers: Counter = Counter()

    def subscribe(url):
        response = host.api("POST", "/subscriptions", json={"url": url, "events": EVENTS})
        code = response.json()["error"]["code"] if response.status_code >= 400 else ""
        return f"subscribe {response.status_code} {code}".strip()

    def delete_by_id(url):
        sub_id = subscription_id(HttpEndpoint(url), EVENTS, "organization", None, None)
        return f"delete {host.api('DELETE', f'/subscriptions/{sub_id}').status_code}"

    def delete_by_callback(url):
        return f"delete {host.api('DELETE', '/subscriptions', params={'callbackUrl': url}).status_code}"

    with ThreadPoolExecutor(2) as pool:
        for n in range(50):
            url = f"{target.url}/race/{n}"
            shape = n % 4
            if shape in (0, 1):    # the unsubscribe lands while Calendly is making the hook
                hang(sandbox, "POST", "/webhook_subscriptions", 0.3)
                first, second = subscribe, (delete_by_id if shape == 0 else delete_by_callback)
            elif shape == 2:       # the subscribe lands while the unsubscribe is deleting the hook
                assert subscribe(url) == "subscribe 201"
                hang(sandbox, "DELETE", "/webhook_subscriptions/", 0.3)
                first, second = delete_by_id, subscribe
            else:                  # no help: whatever order the two happen to run in
                first, second = rng.sample([subscribe, delete_by_id], 2)
            running = pool.submit(first, url)
            threading.Event().wait(rng.uniform(0.0, 0.15))
            answers.update([pool.submit(second, url).result(timeout=60), running.result(timeout=60)])
            sandbox.app.clear_faults()

    # Calendly's hooks against the records, without any reconcile.
    records, cursor = [], None
    while True:
        page = host.api("GET", "/subscriptions", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        records += page["value"]
        if not (cursor := page["next_cursor"]):
            break
    hooks = [h for h in requests.get(f"{sandbox.url}/_sandbox/hooks", timeout=5).json()["hooks"]
             if h["callback_url"].startswith(host.url)]
    assert [r["state"] for r in records] == ["active"] * len(records)
    assert sorted(r["calendly_webhook"] for r in records) == sorted(h["uri"] for h in hooks)
    assert all(h["state"] == "active" for h in hooks) and 0 < len(records) < 50, (len(records), answers)
    assert set(answers) <= {"subscribe 201", "subscribe 200", "subscribe 409 subscription_deleted",
                            "subscribe 409 subscription_in_progress", "delete 204"}, answers
    assert answers["subscribe 409 subscription_deleted"] >= 5, answers  # the races did happen
