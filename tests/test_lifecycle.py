"""The subscription lifecycle (shared/lifecycle.py), the one writer of a record's state, hook
references, signing key and callback token: each named transition's crash and race guarantees,
on SQLite and on Table Storage (Azurite), against the Calendly sandbox over real sockets.

A "crash" is a step sequence stopped between two transitions (what a killed worker leaves); a
"race" is another writer changing the record between two steps (its ETag moves)."""
from __future__ import annotations

import pytest

from shared.errors import BridgeError, ConcurrencyConflict
from shared.lifecycle import Lifecycle
from shared.models import Delivery, HttpEndpoint, Subscription, SubscriptionState
from tests.inprocess import PUBLIC_URL, STORES, compose_on

ACTIVE, CREATING = SubscriptionState.ACTIVE, SubscriptionState.CREATING
DELETING, RETIRED = SubscriptionState.DELETING, SubscriptionState.RETIRED


@pytest.fixture(params=STORES)
def bridge(request, tmp_path, sandbox):
    bridge = compose_on(request.param, request, tmp_path, sandbox)
    yield bridge
    bridge.close()


@pytest.fixture
def life(bridge) -> Lifecycle:
    return bridge.lifecycle


def draft(bridge, sandbox, n: int = 0) -> Subscription:
    return Subscription(id=f"{n:032x}", target=HttpEndpoint(f"https://flow.example/{n}"), events=["invitee.created"],
                        scope="organization", organization=sandbox.app.organization_uri, user=None, group=None,
                        signing_key=bridge.lifecycle.new_key(), generation=f"g{n}", callback_token=bridge.lifecycle.new_token())


def hooks(sandbox) -> list[dict]:
    return sandbox.app.hooks()


def changed_elsewhere(bridge, sub: Subscription) -> Subscription:
    """Another writer's update: the record's ETag moves, ``sub`` is now stale."""
    return bridge.store.update_subscription(sub.replace(updated_at="2026-01-01T00:00:00.000000Z"))


def active(bridge, life, sandbox, n: int = 0) -> Subscription:
    record, inserted = life.claim(draft(bridge, sandbox, n))
    return life.activate(record, inserted)


# claim / activate -----------------------------------------------------------------------------
def test_claim_inserts_a_creating_record_and_activate_gives_it_a_hook_signed_with_its_key(bridge, life, sandbox):
    record, inserted = life.claim(draft(bridge, sandbox))
    assert inserted and record.state == CREATING and record.calendly_webhook is None and hooks(sandbox) == []
    record = life.activate(record, inserted)
    [hook] = hooks(sandbox)
    assert record.state == ACTIVE and record.calendly_webhook == hook["uri"]
    assert sandbox.app.signing_key(life.urls.of(record)) == record.signing_key
    assert bridge.store.get_subscription(record.id) == record
    again, inserted_again = life.claim(draft(bridge, sandbox))  # an active record is returned as it is
    assert (again, inserted_again) == (record, False)


def test_two_claims_inserting_the_same_record_one_wins_the_other_is_told(bridge, life, sandbox, monkeypatch):
    first, _ = life.claim(draft(bridge, sandbox))
    real_get = bridge.store.get_subscription
    monkeypatch.setattr(bridge.store, "get_subscription", lambda sub_id: None)  # it looked before the other inserted
    with pytest.raises(ConcurrencyConflict):
        life.claim(draft(bridge, sandbox))
    monkeypatch.setattr(bridge.store, "get_subscription", real_get)
    assert bridge.store.get_subscription(first.id).signing_key == first.signing_key


def test_crash_after_claim_leaves_a_creating_record_that_a_retry_rekeys_and_finishes(bridge, life, sandbox):
    crashed, _ = life.claim(draft(bridge, sandbox))  # the worker died before creating the hook
    retried, inserted = life.claim(draft(bridge, sandbox))
    assert not inserted and retried.state == CREATING and retried.signing_key != crashed.signing_key
    assert retried.callback_token == crashed.callback_token
    record = life.activate(retried, inserted)
    assert record.state == ACTIVE and len(hooks(sandbox)) == 1


def test_crash_between_the_hook_and_the_record_leaves_a_hook_the_retry_replaces_with_its_new_key(bridge, life, sandbox):
    crashed, _ = life.claim(draft(bridge, sandbox))
    life.create_hook(crashed)  # Calendly made the hook, then the worker died before recording it
    [leftover] = hooks(sandbox)
    retried, inserted = life.claim(draft(bridge, sandbox))
    record = life.activate(retried, inserted)  # Calendly answers 409 for the URL: found, deleted, made again
    [hook] = hooks(sandbox)
    assert hook["uri"] != leftover["uri"] and record.calendly_webhook == hook["uri"]
    assert sandbox.app.signing_key(life.urls.of(record)) == record.signing_key != crashed.signing_key


def test_a_hook_calendly_refuses_leaves_nothing_when_this_request_inserted_the_record(bridge, life, sandbox):
    record, inserted = life.claim(draft(bridge, sandbox))
    sandbox.app.add_fault(method="POST", path_prefix="/webhook_subscriptions", status=400)
    with pytest.raises(BridgeError):
        life.activate(record, inserted)
    assert bridge.store.get_subscription(record.id) is None and hooks(sandbox) == []


def test_a_hook_calendly_refuses_keeps_a_record_this_request_did_not_insert(bridge, life, sandbox):
    life.claim(draft(bridge, sandbox))
    record, inserted = life.claim(draft(bridge, sandbox))  # a retry of a crashed subscribe
    sandbox.app.add_fault(method="POST", path_prefix="/webhook_subscriptions", status=400)
    with pytest.raises(BridgeError):
        life.activate(record, inserted)
    assert bridge.store.get_subscription(record.id).state == CREATING  # reconcile finishes it


def test_activate_losing_the_record_deletes_the_hook_it_made(bridge, life, sandbox):
    record, inserted = life.claim(draft(bridge, sandbox))
    changed_elsewhere(bridge, record)  # e.g. an unsubscribe marked it deleting meanwhile
    with pytest.raises(ConcurrencyConflict):
        life.activate(record, inserted)
    assert hooks(sandbox) == []
    assert bridge.store.get_subscription(record.id).calendly_webhook is None


def test_claim_of_a_record_being_deleted_finishes_the_delete_first(bridge, life, sandbox):
    old = life.mark_deleting(active(bridge, life, sandbox))
    record, inserted = life.claim(draft(bridge, sandbox))
    assert inserted and record.generation == "g0" and record.calendly_webhook is None
    assert old.calendly_webhook not in {h["uri"] for h in hooks(sandbox)}


# mark_deleting / finish_delete / delete_version -------------------------------------------------------
def test_mark_deleting_is_a_compare_and_set(bridge, life, sandbox):
    record = active(bridge, life, sandbox)
    changed_elsewhere(bridge, record)
    with pytest.raises(ConcurrencyConflict):
        life.mark_deleting(record)
    assert bridge.store.get_subscription(record.id).state == ACTIVE


def test_finish_delete_deletes_the_hook_the_deliveries_and_the_record_and_buries_the_token(bridge, life, sandbox):
    record = active(bridge, life, sandbox)
    bridge.store.record_delivery(Delivery(id=f"{record.id}-{'0' * 24}", subscription_id=record.id,
                                          event="invitee.created", event_key="k", body=b"{}"))
    deleting = life.mark_deleting(record)
    assert life.finish_delete(deleting) is True
    assert hooks(sandbox) == [] and bridge.store.get_subscription(record.id) is None
    assert bridge.store.list_deliveries(record.id, 10)[0] == []
    assert bridge.store.callback_tombstone(record.callback_token) is not None  # Calendly is told 410


def test_crash_after_mark_deleting_leaves_a_record_the_next_delete_finishes(bridge, life, sandbox):
    deleting = life.mark_deleting(active(bridge, life, sandbox))  # died before deleting the hook
    assert bridge.store.get_subscription(deleting.id).state == DELETING and len(hooks(sandbox)) == 1
    assert life.finish_delete(bridge.store.get_subscription(deleting.id)) is True
    assert hooks(sandbox) == [] and bridge.store.get_subscription(deleting.id) is None


def test_delete_version_touches_only_the_version_it_was_given(bridge, life, sandbox):
    stale = life.mark_deleting(active(bridge, life, sandbox))
    assert life.finish_delete(stale) is True
    newer, inserted = life.claim(draft(bridge, sandbox))  # a new subscribe took the id meanwhile
    newer = life.activate(newer, inserted)
    bridge.store.record_delivery(Delivery(id=f"{newer.id}-{'1' * 24}", subscription_id=newer.id,
                                          event="invitee.created", event_key="k1", body=b"{}"))
    assert life.delete_version(stale) is False
    assert bridge.store.get_subscription(newer.id) == newer
    assert len(bridge.store.list_deliveries(newer.id, 10)[0]) == 1  # the newer record's deliveries are untouched


# retire / clear_hooks ----------------------------------------------------------------------------
def test_retire_stops_calendly_and_drops_the_deliveries_but_keeps_the_record(bridge, life, sandbox):
    record = active(bridge, life, sandbox)
    life.retire(record, "target answered 410")
    current = bridge.store.get_subscription(record.id)
    assert current.state == RETIRED and hooks(sandbox) == []
    life.retire(current, "again")  # idempotent
    assert bridge.store.get_subscription(record.id) == current


def test_retire_keeps_the_hook_reference_when_calendly_cannot_delete_it_yet(bridge, life, sandbox):
    record = active(bridge, life, sandbox)
    sandbox.app.add_fault(method="DELETE", path_prefix="/webhook_subscriptions/", status=503, count=10)
    life.retire(record, "gone")
    current = bridge.store.get_subscription(record.id)
    assert current.state == RETIRED and current.calendly_webhook == record.calendly_webhook and len(hooks(sandbox)) == 1
    sandbox.app.reset(keep_hooks=True)  # Calendly is back
    current = life.clear_hooks(current, [current.calendly_webhook])  # what reconcile does next
    assert current.calendly_webhook is None and hooks(sandbox) == []


# rekey / start_move / replace_hook / drop_old_hooks -----------------------------------------------
def test_rekey_then_replace_hook_signs_the_new_hook_with_a_key_only_the_record_holds(bridge, life, sandbox):
    record = active(bridge, life, sandbox)
    old_hook = record.calendly_webhook
    rekeyed = life.rekey(record)
    assert rekeyed.signing_key != record.signing_key and rekeyed.calendly_webhook is None
    repaired = life.replace_hook(rekeyed, delete_first=[old_hook])
    [hook] = hooks(sandbox)
    assert repaired.state == ACTIVE and repaired.calendly_webhook == hook["uri"] != old_hook
    assert sandbox.app.signing_key(life.urls.of(repaired)) == repaired.signing_key


def test_rekey_keeps_a_creating_records_age(bridge, life, sandbox):
    record, _ = life.claim(draft(bridge, sandbox))
    assert life.rekey(record).updated_at == record.updated_at


def test_replace_hook_losing_the_record_deletes_the_new_hook(bridge, life, sandbox):
    old = active(bridge, life, sandbox)
    sandbox.app.set_state(old.calendly_webhook.rsplit("/", 1)[1], "disabled")
    record = life.rekey(old)
    changed_elsewhere(bridge, record)
    made: list[str] = []
    real_create = bridge.calendly.create_webhook
    bridge.calendly.create_webhook = lambda **kw: made.append(real_create(**kw)["uri"]) or {"uri": made[-1]}
    try:
        with pytest.raises(ConcurrencyConflict):
            life.replace_hook(record, delete_first=[old.calendly_webhook])
    finally:
        bridge.calendly.create_webhook = real_create
    assert len(made) == 1 and hooks(sandbox) == []  # the hook it made is gone again


def legacy(bridge, life, sandbox) -> Subscription:
    """A record made before callback tokens: its hook calls the (computable) id path."""
    record, inserted = life.claim(draft(bridge, sandbox).replace(callback_token=None))
    record = life.activate(record, inserted)
    assert life.urls.of(record) == f"{PUBLIC_URL}/api/calendly/events/{record.id}"
    return record


def test_a_move_to_a_callback_token_has_no_gap(bridge, life, sandbox):
    """A record made before tokens: its id path answers until the token path's hook exists."""
    record = legacy(bridge, life, sandbox)
    old_url = life.urls.of(record)
    legacy_record = record
    moving = life.start_move(legacy_record)
    assert moving.callback_token and moving.legacy_webhook == record.calendly_webhook
    assert life.urls.answering(moving) == {old_url, life.urls.of(moving)}
    seen: list[set[str]] = []
    real_delete = bridge.calendly.delete_webhook

    def delete(uri):
        seen.append({h["callback_url"] for h in hooks(sandbox)})
        return real_delete(uri)

    bridge.calendly.delete_webhook = delete
    try:
        moved = life.replace_hook(moving, delete_after=[moving.legacy_webhook])
    finally:
        bridge.calendly.delete_webhook = real_delete
    assert seen == [{old_url, life.urls.of(moved)}]  # both hooks existed when the old one went
    assert moved.legacy_webhook is None and life.urls.answering(moved) == {life.urls.of(moved)}
    assert [h["callback_url"] for h in hooks(sandbox)] == [life.urls.of(moved)]


def test_crash_during_a_move_leaves_the_old_path_answering_until_drop_old_hooks(bridge, life, sandbox):
    moving = life.start_move(legacy(bridge, life, sandbox))
    half = life.attach(moving, life.create_hook(moving)["uri"])  # died before deleting the old hook
    assert half.legacy_webhook and len(hooks(sandbox)) == 2 and len(life.urls.answering(half)) == 2
    done = life.drop_old_hooks(half, [half.legacy_webhook])
    assert done.legacy_webhook is None and len(hooks(sandbox)) == 1


def test_the_lifecycle_is_the_only_writer_of_state_hooks_keys_and_tokens():
    """No other module of shared/ sets these fields on a record (a source check, so a new feature
    cannot quietly add a second writer)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "shared"
    writes = re.compile(r"\.replace\([^)]*\b(state|calendly_webhook|legacy_webhook|signing_key|callback_token)=")
    writers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if writes.search(p.read_text(encoding="utf-8")))
    assert writers == ["lifecycle.py"], writers
