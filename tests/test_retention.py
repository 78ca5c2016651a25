"""Personal data kept only as long as needed (issue 9, part 3), on SQLite and on Table Storage
(Azurite), with an injected clock: delivered events go DELIVERY_RETENTION_HOURS after their last
attempt, dead ones keep their payload for replay DEAD_DELIVERY_RETENTION_DAYS, pending ones stay;
unsubscribe and retire take a subscription's deliveries with them."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from shared.models import DeliveryStatus
from shared.settings import Settings, SettingsError
from tests.inprocess import STORES, Caller, compose_on, event
from tests.peers import FakeClock

HOUR = 3600.0
DAY = 24 * HOUR
START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=STORES)
def make(request, tmp_path, sandbox):
    """make(**env) -> (Caller, FakeClock): the bridge in-process on the parametrized store."""
    made = []

    def build(**env: str):
        clock = FakeClock(START)
        bridge = compose_on(request.param, request, tmp_path, sandbox, clock=clock, env=env)
        made.append(bridge)
        return Caller(bridge, sandbox), clock

    yield build
    for bridge in made:
        bridge.close()



def stored(caller: Caller, sub_id: str) -> list:
    """Every delivery the store holds for the subscription, read from the store itself."""
    return caller.bridge.store.list_deliveries(sub_id, 100)[0]


# Settings -----------------------------------------------------------------------------------
def test_retention_defaults_are_72_hours_and_14_days():
    settings = Settings.from_env({})
    assert (settings.delivery_retention_hours, settings.dead_delivery_retention_days) == (72, 14)


@pytest.mark.parametrize("hours", ["24", "1", "0", "-5"])
def test_a_delivery_retention_shorter_than_calendlys_retry_window_is_refused(hours):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"DELIVERY_RETENTION_HOURS": hours})
    assert refused.value.setting == "DELIVERY_RETENTION_HOURS"
    assert "at least 25 hours" in str(refused.value) and "24-hour retry window" in str(refused.value)


def test_retention_settings_accept_the_smallest_allowed_values_and_refuse_no_dead_retention():
    settings = Settings.from_env({"DELIVERY_RETENTION_HOURS": "25", "DEAD_DELIVERY_RETENTION_DAYS": "1"})
    assert (settings.delivery_retention_hours, settings.dead_delivery_retention_days) == (25, 1)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"DEAD_DELIVERY_RETENTION_DAYS": "0"})
    assert refused.value.setting == "DEAD_DELIVERY_RETENTION_DAYS"


# Purge ----------------------------------------------------------------------------------------
def test_a_delivered_event_is_kept_for_the_retention_window_then_purged(make, target):
    caller, clock = make()
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(1)).status == 200
    clock.advance(72 * HOUR - 60)
    assert caller.bridge.retention.purge()["delivered"] == 0
    [kept] = caller.deliveries(sub["id"])
    assert "zoe@example.com" in kept["payload"]
    # Still inside the window: Calendly's repeat of the event is still recognised.
    assert json.loads(caller.post_event(url, event(1)).body)["status"] == "duplicate"
    clock.advance(61)
    assert caller.bridge.retention.purge()["delivered"] == 1
    assert stored(caller, sub["id"]) == [] and caller.deliveries(sub["id"]) == []
    assert len(target.delivered()) == 1


def test_the_retention_window_is_the_setting(make, target):
    caller, clock = make(DELIVERY_RETENTION_HOURS="30")
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(2)).status == 200
    clock.advance(29 * HOUR)
    assert caller.bridge.retention.purge()["delivered"] == 0
    clock.advance(HOUR + 1)
    assert caller.bridge.retention.purge()["delivered"] == 1 and stored(caller, sub["id"]) == []


def test_a_dead_delivery_keeps_its_payload_for_replay_until_the_dead_retention(make, target):
    caller, clock = make(DELIVERY_MAX_ATTEMPTS="1")
    sub, url = caller.subscribed(target)
    target.respond(default=503)
    assert json.loads(caller.post_event(url, event(3)).body)["status"] == "dead"
    clock.advance(13 * DAY)
    assert caller.bridge.retention.purge() == {"delivered": 0, "discarded": 0, "dead": 0}
    [dead] = caller.deliveries(sub["id"])
    assert dead["status"] == "dead" and "zoe@example.com" in dead["payload"]
    clock.advance(DAY + 1)
    assert caller.bridge.retention.purge()["dead"] == 1
    assert stored(caller, sub["id"]) == []


def test_a_replayed_dead_delivery_is_kept_from_its_new_delivery(make, target):
    from shared import api

    caller, clock = make(DELIVERY_MAX_ATTEMPTS="1")
    sub, url = caller.subscribed(target)
    target.respond(default=503)
    delivery_id = json.loads(caller.post_event(url, event(4)).body)["delivery_id"]
    clock.advance(10 * DAY)
    target.respond(default=200)
    replayed = caller.call(api.replay_delivery, "POST", f"/deliveries/{delivery_id}/replay", delivery_id=delivery_id)
    assert replayed.status == 200
    clock.advance(71 * HOUR)
    assert sum(caller.bridge.retention.purge().values()) == 0 and len(stored(caller, sub["id"])) == 1
    clock.advance(HOUR + 1)
    assert caller.bridge.retention.purge()["delivered"] == 1


def test_pending_deliveries_are_never_purged(make, target):
    caller, clock = make()
    sub, url = caller.subscribed(target)
    target.respond(default=503)
    assert caller.post_event(url, event(5)).status == 202
    clock.advance(60 * DAY)
    assert sum(caller.bridge.retention.purge().values()) == 0
    [pending] = stored(caller, sub["id"])
    assert pending.status == DeliveryStatus.PENDING and b"zoe@example.com" in pending.body


def expired_deliveries(make, target, count: int, first: int):
    """A subscription with ``count`` delivered events (numbered from ``first``), past their retention."""
    caller, clock = make()
    sub, url = caller.subscribed(target)
    for n in range(count):
        assert caller.post_event(url, event(first + n)).status == 200
    clock.advance(73 * HOUR)
    return caller, sub


def test_each_run_purges_rounds_up_to_its_bound_and_later_runs_finish(make, target):
    caller, sub = expired_deliveries(make, target, 7, 10)
    retention = caller.bridge.retention
    retention.batch, retention.per_run = 2, 5  # rounds of 2, at most 5 a run
    assert [retention.purge()["delivered"] for _ in range(3)] == [5, 2, 0]
    assert stored(caller, sub["id"]) == []


def test_a_run_stops_starting_rounds_once_its_time_budget_is_spent(make, target):
    caller, sub = expired_deliveries(make, target, 6, 40)
    retention = caller.bridge.retention
    ticks = iter(range(0, 1000, 100))  # each reading of the monotonic clock is 100 s later
    retention.batch, retention.budget_seconds, retention.monotonic = 2, 150, lambda: float(next(ticks))
    assert retention.purge()["delivered"] == 4  # deadline 150: round 1 ends at 100, round 2 at 200 > 150
    assert len(stored(caller, sub["id"])) == 2
    retention.monotonic = lambda: 0.0  # the next run: time enough
    assert retention.purge()["delivered"] == 2 and stored(caller, sub["id"]) == []


def test_a_store_failure_during_the_purge_is_logged_and_the_timer_goes_on(make, target, monkeypatch, caplog):
    from shared.errors import StoreUnavailable

    caller, clock = make()

    def store_down(*args):
        raise StoreUnavailable()

    monkeypatch.setattr(caller.bridge.store, "purge_deliveries", store_down)
    assert caller.bridge.retention.purge() == {}
    assert "retention outcome=failed error=store_unavailable" in caplog.text


# Unsubscribe, retire, subscribe again -----------------------------------------------------------
def test_unsubscribe_deletes_the_deliveries_and_subscribing_again_starts_with_an_empty_log(make, target):
    caller, clock = make(DELIVERY_MAX_ATTEMPTS="1")
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(20)).status == 200
    target.respond(default=503)
    assert json.loads(caller.post_event(url, event(21)).body)["status"] == "dead"
    assert len(caller.deliveries(sub["id"])) == 2
    assert caller.unsubscribe(sub["id"]).status == 204
    assert stored(caller, sub["id"]) == []
    again, _ = caller.subscribed(target)
    assert again["id"] == sub["id"]  # the id is derived from the target: the same again
    assert caller.deliveries(again["id"]) == [] and stored(caller, again["id"]) == []


def test_unsubscribe_by_callback_url_deletes_the_deliveries(make, target):
    from shared import api

    caller, clock = make()
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(22)).status == 200
    response = caller.call(api.unsubscribe_by_callback, "DELETE", "/subscriptions", params={"callbackUrl": f"{target.url}/flow"})
    assert response.status == 204 and stored(caller, sub["id"]) == []


def test_a_retired_subscription_keeps_no_deliveries(make, target):
    caller, clock = make()
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(23)).status == 200
    target.respond(410)  # the flow was deleted without unsubscribing
    answer = caller.post_event(url, event(24))
    assert answer.status == 200 and json.loads(answer.body)["status"] == "retired"
    assert caller.bridge.store.get_subscription(sub["id"]).state == "retired"
    assert stored(caller, sub["id"]) == [] and caller.sandbox.app.hooks() == []


# Where purge runs ---------------------------------------------------------------------------------
def test_the_timer_function_purges(make, target, monkeypatch):
    from tests.conftest import functions_over

    caller, clock = make()
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(30)).status == 200
    clock.advance(73 * HOUR)
    timer = functions_over(caller.bridge)["reconcile"]  # the declared timer function, over this bridge
    timer.get_user_function()(None)
    assert stored(caller, sub["id"]) == []
    assert caller.bridge.store.get_subscription(sub["id"]).state == "active"  # and it reconciled


def test_the_local_hosts_background_loop_purges(make, target):
    from devtools.localhost import BackgroundWork

    caller, clock = make()
    sub, url = caller.subscribed(target)
    assert caller.post_event(url, event(31)).status == 200
    clock.advance(73 * HOUR)
    loop = BackgroundWork(lambda: caller.bridge, redeliver_interval=0, reconcile_interval=0.05)
    loop.start()
    try:
        deadline = time.monotonic() + 15
        while stored(caller, sub["id"]) and time.monotonic() < deadline:
            loop.stopped.wait(0.05)
    finally:
        loop.stopped.set()
        loop.join(timeout=10)
    assert stored(caller, sub["id"]) == []


def test_a_record_changed_between_the_purge_read_and_its_delete_stays(make, target, monkeypatch):
    """The purge deletes only the versions it read: Table Storage deletes a subscription's expired
    records in one transaction; when one of them changed meanwhile (a replay), the transaction fails
    as a whole and the others go one by one, the changed one stays. SQLite decides in one statement."""
    caller, sub = expired_deliveries(make, target, 5, 60)
    store = caller.bridge.store
    changed: list[str] = []
    if store.name == "tables":
        inner = store._inner  # the Table store behind the change-notifying wrapper
        real_iter = type(inner)._iter

        def read_then_replayed(pages, count):
            found = real_iter(pages, count)
            if found and not changed:  # a replay lands between the read and the deletes
                index_row = found[0]  # ~x|delivered|<updated_at>|<delivery row>
                first = inner.get_delivery(f"{index_row['PartitionKey']}-{index_row['RowKey'].rsplit('|', 1)[1]}")
                inner.update_delivery(first.replace(attempts=first.attempts + 1))
                changed.append(first.id)
            return found

        monkeypatch.setattr(inner, "_iter", read_then_replayed)
    purged = caller.bridge.retention.purge()["delivered"]
    left = stored(caller, sub["id"])
    if store.name == "tables":
        assert purged == 4 and [d.id for d in left] == changed
    else:
        assert purged == 5 and left == []


@pytest.mark.azurite
def test_the_retention_benchmark_counts_a_request_per_hundred_records(azurite):
    """benchmarks/retention.py (the README's Scale figures) in its smallest size: the batched purge
    sends about one request per 50 records of a subscription, the old way one per record."""
    from benchmarks import retention as bench

    measured = bench.tables(azurite, 300, 3)
    batched, single = measured["batched"], measured["one_by_one"]
    assert batched["purged"] == single["purged"] == 300 and batched["left"] == single["left"] == 0
    # Per status a range query per subscription (after listing subscriptions and tombstones), then a
    # transaction per 50 records of a subscription (each with its index row); once, the adoption
    # check of rows older versions wrote; the tombstone purge.
    assert batched["requests"] <= 3 + 3 * (2 + 3) + 300 // 50 + 1
    assert single["requests"] >= 300
