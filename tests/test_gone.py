"""Calendly deletes a webhook at once when its callback answers 410 Gone (no 24 h of retries).
The bridge answers 410 for a subscription it knows it deleted or retired — only to a request
signed with that subscription's key; never for a live subscription, never on a store failure
(503), and an unsigned or wrongly signed request gets the same 404 as a random path. On SQLite
and on Table Storage (Azurite)."""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

import pytest

from shared import api, signatures
from shared.errors import StoreUnavailable
from shared.retention import TOMBSTONE_DAYS
from tests.inprocess import STORES, Caller, compose_on, event
from tests.peers import FakeClock


@pytest.fixture(params=STORES)
def made(request, tmp_path, sandbox):
    clock = FakeClock(datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc))
    bridge = compose_on(request.param, request, tmp_path, sandbox, clock=clock)
    yield Caller(bridge, sandbox), clock
    bridge.close()


def deleted(caller: Caller, target) -> tuple[str, str]:
    """A subscription that was subscribed, then deleted: its old callback URL and signing key."""
    sub, url = caller.subscribed(target)
    key = caller.sandbox.app.signing_key(url)
    assert caller.unsubscribe(sub["id"]).status == 204
    return url, key


def random_path_answer(caller: Caller, url: str) -> tuple[int, bytes]:
    other = url.rsplit("/", 1)[0] + "/" + secrets.token_urlsafe(32)
    response = caller.post_event(other, event(9), key="some-key")
    return response.status, response.body


def test_a_deleted_subscriptions_hook_is_told_410_when_calendly_signs_the_call(made, target):
    caller, _ = made
    url, key = deleted(caller, target)
    gone = caller.post_event(url, event(1), key=key)
    assert gone.status == 410 and json.loads(gone.body)["error"]["code"] == "subscription_deleted"


def test_unsigned_or_wrongly_signed_calls_learn_nothing_more_than_from_a_random_path(made, target):
    caller, _ = made
    url, key = deleted(caller, target)
    baseline = random_path_answer(caller, url)
    assert baseline[0] == 404
    for wrong in ("another-key", key[:-1] + ("A" if key[-1] != "A" else "B")):
        response = caller.post_event(url, event(2), key=wrong)
        assert (response.status, response.body) == baseline
    path_token = url.rsplit("/", 1)[1]
    unsigned = caller.call(api.calendly_event, "POST", f"/calendly/events/{path_token}", event(3), id=path_token)
    assert (unsigned.status, unsigned.body) == baseline


def test_a_live_subscription_is_never_410(made, target):
    caller, _ = made
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(4)).status == 200
    assert caller.post_event(url, event(5), key="wrong").status == 401


def test_a_store_failure_is_a_503_never_a_410(made, target, monkeypatch):
    caller, _ = made
    url, key = deleted(caller, target)
    store = caller.bridge.store._inner

    def down(*args, **kwargs):
        raise StoreUnavailable()

    monkeypatch.setattr(store, "callback_tombstone", down)
    assert caller.post_event(url, event(6), key=key).status == 503
    monkeypatch.setattr(store, "callback_subscription_id", down)
    assert caller.post_event(url, event(7), key=key).status == 503


def test_a_retired_subscription_is_410_too(made, target):
    caller, _ = made
    sub, url = caller.subscribed(target)
    target.respond(default=410)  # the flow is gone: the bridge retires the subscription
    assert caller.post_event(url, event(8)).status == 200
    target.respond(default=200)
    key = caller.bridge.store.get_subscription(sub["id"]).signing_key
    body = event(10)
    response = caller.call(api.calendly_event, "POST", "/x", body, headers={signatures.HEADER: signatures.sign(body, key)},
                           id=url.rsplit("/", 1)[1])
    assert response.status == 410


def test_tombstones_are_purged_after_a_week(made, target):
    caller, clock = made
    url, key = deleted(caller, target)
    clock.advance(TOMBSTONE_DAYS * 86400 - 60)
    caller.bridge.retention.purge()
    assert caller.post_event(url, event(11), key=key).status == 410
    clock.advance(120)
    caller.bridge.retention.purge()
    assert caller.post_event(url, event(12), key=key).status == 404
