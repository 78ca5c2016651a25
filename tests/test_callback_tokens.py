"""Callback URLs cannot be guessed (issue 9, part 4), on SQLite and on Table Storage (Azurite):
Calendly calls ``/api/calendly/events/<random token>``; the management id (a hash of the target,
so computable) opens nothing; records made before tokens keep answering on their id path until
reconcile has moved their hook, gaplessly, and then that path is a plain 404."""
from __future__ import annotations

import base64
import json
import re
import secrets

import pytest

from shared import api
from shared.calendly import CalendlyError
from tests.helpers import legacy_subscription
from tests.inprocess import PUBLIC_URL, STORES, Caller, compose_on, event

TOKEN_URL = re.compile(rf"{re.escape(PUBLIC_URL)}/api/calendly/events/([A-Za-z0-9_-]{{43}})")


@pytest.fixture(params=STORES)
def caller(request, tmp_path, sandbox):
    bridge = compose_on(request.param, request, tmp_path, sandbox)
    yield Caller(bridge, sandbox)
    bridge.close()



def test_calendly_calls_a_random_token_path_unrelated_to_the_management_id(caller, target):
    first, first_url = caller.subscribed(target, "/a")
    second, second_url = caller.subscribed(target, "/b")
    tokens = [TOKEN_URL.fullmatch(url).group(1) for url in (first_url, second_url)]
    assert len(set(tokens)) == 2 and all(len(base64.urlsafe_b64decode(t + "=")) == 32 for t in tokens)  # 256 bits
    assert first["id"] not in first_url and second["id"] not in second_url
    # The same target subscribed again after an unsubscribe: the same management id, a new token.
    assert caller.unsubscribe(first["id"]).status == 204
    again, again_url = caller.subscribed(target, "/a")
    assert again["id"] == first["id"] and again_url != first_url and TOKEN_URL.fullmatch(again_url)


def test_the_management_id_path_is_a_plain_404_even_signed_with_the_right_key(caller, target):
    sub, url = caller.subscribed(target)
    key = caller.sandbox.app.signing_key(url)
    by_id = caller.post_event(f"{PUBLIC_URL}/api/calendly/events/{sub['id']}", event(1), key=key)
    unknown_id = caller.post_event(f"{PUBLIC_URL}/api/calendly/events/{secrets.token_hex(16)}", event(1), key=key)
    unknown_token = caller.post_event(f"{PUBLIC_URL}/api/calendly/events/{secrets.token_urlsafe(32)}", event(1), key=key)
    # Indistinguishable from a path that never existed: same status, same bytes.
    assert by_id.status == unknown_id.status == unknown_token.status == 404
    assert by_id.body == unknown_id.body == unknown_token.body
    assert json.loads(by_id.body)["error"]["code"] == "subscription_not_found"
    assert caller.post_event(url, event(1)).status == 200 and len(target.delivered()) == 1


def test_a_wrong_signature_on_the_token_path_is_still_401(caller, target):
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(2), key="not-the-key").status == 401


def test_a_deleted_subscriptions_token_is_410_to_calendly_and_404_to_anyone_else(caller, target):
    """Calendly (who holds the key) is told to drop the hook; anyone else sees a random path (tests/test_gone.py)."""
    sub, url = caller.subscribed(target)
    key = caller.sandbox.app.signing_key(url)
    assert caller.unsubscribe(sub["id"]).status == 204
    assert caller.post_event(url, event(3), key=key).status == 410
    assert caller.post_event(url, event(3), key="not-the-key").status == 404


def test_the_token_is_never_shown_by_the_management_api(caller, target):
    sub, url = caller.subscribed(target)
    token = url.rsplit("/", 1)[1]
    shown = [caller.call(api.get_subscription, "GET", f"/subscriptions/{sub['id']}", id=sub["id"]),
             caller.call(api.list_subscriptions, "GET", "/subscriptions"), caller.subscribe(f"{target.url}/flow")]
    assert all(r.status == 200 and token not in r.body.decode() for r in shown)
    assert token not in json.dumps(sub)


# Records made before tokens -----------------------------------------------------------------
def calendly_calls(caller: Caller) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in caller.sandbox.app.requests_log() if r["path"].startswith("/webhook_subscriptions")]


def test_a_record_made_before_tokens_answers_on_its_id_until_reconcile_moves_it_without_a_gap(caller, target):
    record, old_url = legacy_subscription(caller, target)
    old_hook = record.calendly_webhook
    assert caller.post_event(old_url, event(4), key="legacy-key").status == 200
    caller.sandbox.app.reset(keep_hooks=True)  # forget the request log

    summary = caller.bridge.reconciler.reconcile()
    assert summary.moved == 1 and summary.errors == [], summary
    moved = caller.bridge.store.get_subscription(record.id)
    [hook] = caller.sandbox.app.hooks()
    assert hook["uri"] == moved.calendly_webhook != old_hook and hook["state"] == "active"
    assert TOKEN_URL.fullmatch(hook["callback_url"]) and hook["callback_url"] == caller.bridge.subscriptions.callback_url(moved)
    # The new hook was made before the old one was deleted: Calendly never had none.
    calls = calendly_calls(caller)
    assert calls.index(("POST", "/webhook_subscriptions")) < calls.index(("DELETE", "/webhook_subscriptions/" + old_hook.rsplit("/", 1)[1]))
    # Same signing key on the new hook; the old path is now a plain 404, the new one delivers.
    assert caller.sandbox.app.signing_key(hook["callback_url"]) == "legacy-key"
    assert caller.post_event(old_url, event(5), key="legacy-key").status == 404
    assert caller.post_event(hook["callback_url"], event(5)).status == 200
    assert len(target.delivered()) == 2
    # The management API did not change: same id, same route.
    got = caller.call(api.get_subscription, "GET", f"/subscriptions/{record.id}", id=record.id)
    assert got.status == 200 and json.loads(got.body)["state"] == "active"
    again = caller.bridge.reconciler.reconcile()
    assert (again.moved, again.healthy, again.orphans_deleted) == (0, 1, 0)


def test_an_interrupted_move_keeps_both_paths_answering_and_the_next_run_finishes_it(caller, target, monkeypatch):
    record, old_url = legacy_subscription(caller, target)
    calendly = caller.bridge.calendly
    real_delete = calendly.delete_webhook

    def calendly_down(uri):
        raise CalendlyError(503, "calendly_unavailable", "Calendly is down (test)")

    monkeypatch.setattr(calendly, "delete_webhook", calendly_down)
    summary = caller.bridge.reconciler.reconcile()
    assert summary.moved == 0 and summary.errors, summary
    halfway = caller.bridge.store.get_subscription(record.id)
    assert halfway.legacy_webhook == record.calendly_webhook and halfway.calendly_webhook != record.calendly_webhook
    new_url = caller.bridge.subscriptions.callback_url(halfway)
    assert caller.bridge.subscriptions.urls.answering(halfway) == {old_url, new_url}
    # Both hooks exist and both paths answer while the old hook is still there.
    assert caller.post_event(old_url, event(6), key="legacy-key").status == 200
    assert caller.post_event(new_url, event(7), key="legacy-key").status == 200
    monkeypatch.setattr(calendly, "delete_webhook", real_delete)
    assert caller.bridge.reconciler.reconcile().moved == 1
    [hook] = caller.sandbox.app.hooks()
    assert hook["callback_url"] == new_url
    assert caller.post_event(old_url, event(8), key="legacy-key").status == 404


@pytest.mark.azurite
def test_the_callback_path_on_table_storage_is_point_operations_only(azurite, sandbox, target, tmp_path, request):
    """What a forwarded callback costs in storage requests, cold: a point read of the token index,
    a point read of the record, the delivery's insert-if-absent and its update, each an entity-group
    transaction with the delivery's index row (issue 27). No query."""
    import uuid

    from azure.data.tables import TableServiceClient

    from shared.azure_clients import TABLE_CLIENT_OPTIONS as CLIENT_OPTIONS
    from shared.store.tables import TableStore

    sent: list[tuple[str, str]] = []
    service = TableServiceClient.from_connection_string(
        azurite, raw_request_hook=lambda r: sent.append((r.http_request.method, r.http_request.url)), **CLIENT_OPTIONS)
    store = TableStore(service, f"t{uuid.uuid4().hex[:10]}")
    bridge = compose_on("tables", request, tmp_path, sandbox, store=store)
    caller = Caller(bridge, sandbox)
    try:
        sub, url = caller.subscribed(target)
        token = url.rsplit("/", 1)[1]
        sent.clear()
        assert caller.post_event(url, event(9)).status == 200
        assert not any("$filter" in u for _, u in sent), sent
        assert [m for m, _ in sent] == ["GET", "GET", "POST", "POST"], sent
        assert all(u.endswith("/$batch") for _, u in sent[2:]), sent
        assert f"callbacks(PartitionKey='{token}'" in sent[0][1]
    finally:
        bridge.close()
