"""The timer's reads (due retries, expired deliveries) cost what is due, not what is stored, and stay
right through crashes (issue 27).

On Table Storage each delivery has one index row in its subscription's partition, written in the
same entity-group transaction as the delivery (``~d|<due>|<row>`` while pending, ``~x|<status>|
<settled>|<row>`` after), so the timer reads ranges instead of scanning the table. SQLite keeps the
equivalent B-tree indexes. Crashes are injected where they happen: on the wire for Table Storage
(a request refused before it is sent, or its answer lost after the server applied it), around
each write for SQLite.
"""
from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from shared.composition import open_store
from shared.errors import BridgeError
from shared.models import Delivery, DeliveryStatus, isotime
from shared.settings import Settings
from tests.helpers import a_record
from tests.inprocess import STORES, store_env

BASE = datetime(2026, 3, 1, 12, tzinfo=UTC)
NOW = isotime(BASE)
SETTLED = (DeliveryStatus.DELIVERED, DeliveryStatus.DISCARDED, DeliveryStatus.DEAD)


def at(minutes: float) -> str:
    return isotime(BASE + timedelta(minutes=minutes))


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    s = open_store(Settings.from_env(store_env(request.param, request, tmp_path)))
    yield s
    s.close()


def delivery(sub: int, n: int, **kw) -> Delivery:
    fields = dict(id=f"{sub:032x}-{n:024x}", subscription_id=f"{sub:032x}", event="invitee.created", event_key=f"k{n}",
                  body=b'{"event": "invitee.created"}')
    fields.update(kw)
    return Delivery(**fields)


class Crashes:
    """Arms one crash for the next write: ``before`` (nothing reaches the store) or ``after`` (the
    store applied it, the caller never heard). Table Storage: at the SDK's HTTP transport, so the
    SDK's own retries run as they would; SQLite: around the store's write methods."""

    WRITES = ("record_delivery", "update_delivery", "delete_deliveries", "purge_deliveries")

    def __init__(self, store, monkeypatch):
        self.mode: str | None = None
        self.fired = 0
        if store.name == "tables":
            from azure.core.exceptions import ServiceRequestError, ServiceResponseError
            from azure.core.pipeline.transport import RequestsTransport

            original = RequestsTransport.send

            def send(transport, request, **kwargs):
                if request.method == "GET" or self.mode is None:
                    return original(transport, request, **kwargs)
                mode, self.mode = self.mode, None
                self.fired += 1
                if mode == "before":
                    raise ServiceRequestError("connection refused (injected)")
                original(transport, request, **kwargs)
                raise ServiceResponseError("connection reset after the request was sent (injected)")

            monkeypatch.setattr(RequestsTransport, "send", send)
        else:
            for name in self.WRITES:
                monkeypatch.setattr(store, name, self._around(getattr(store, name)))

    def _around(self, write):
        def crashing(*args, **kwargs):
            mode, self.mode = self.mode, None
            if mode is None:
                return write(*args, **kwargs)
            self.fired += 1
            if mode == "before":
                raise BridgeError(503, "store_unavailable", "injected")
            write(*args, **kwargs)
            raise BridgeError(503, "store_unavailable", "injected")
        return crashing


def truth(store, subs: list[int]) -> dict[str, Delivery]:
    """What is stored, read from the delivery rows themselves (not through any index)."""
    out: dict[str, Delivery] = {}
    for sub in subs:
        cursor = None
        while True:
            page, cursor = store.list_deliveries(f"{sub:032x}", 100, cursor)
            out.update((d.id, d) for d in page)
            if cursor is None:
                break
    return out


def test_nothing_due_is_missed_and_nothing_expired_is_kept_through_crashes(store, monkeypatch):
    """300 random writes on 3 subscriptions (record, claim, fail again, settle, replay, delete a
    subscription's deliveries), a third of them crashed before or after the store applied them; then
    the timer's reads agree with the rows themselves: every pending delivery due by now is found,
    none other, and a purge leaves no settled delivery older than the cutoff and nothing else gone."""
    subs = [1, 2, 3]
    for sub in subs:
        store.create_subscription(a_record(sub, url=f"https://flow.example/{sub}"))
    rng = random.Random(27)
    crashes = Crashes(store, monkeypatch)
    made = 0
    for _ in range(300):
        if rng.random() < 0.33:
            crashes.mode = rng.choice(["before", "after"])
        op = rng.random()
        try:
            if op < 0.35 or made == 0:
                made += 1
                store.record_delivery(delivery(rng.choice(subs), made, next_attempt_at=at(rng.uniform(-60, 60)),
                                               updated_at=at(-rng.uniform(0, 3000))))
            elif op < 0.98:
                current = store.get_delivery(delivery(rng.choice(subs), rng.randint(1, made)).id)
                if current is None:
                    crashes.mode = None
                    continue
                if current.status == DeliveryStatus.PENDING and rng.random() < 0.5:  # a claim or a failed attempt
                    store.update_delivery(current.replace(next_attempt_at=at(rng.uniform(-30, 90)), attempts=current.attempts + 1))
                elif current.status == DeliveryStatus.PENDING:  # an outcome
                    store.update_delivery(current.replace(status=rng.choice(SETTLED), updated_at=at(-rng.uniform(0, 3000))))
                else:  # a replay
                    store.update_delivery(current.replace(status=DeliveryStatus.PENDING, next_attempt_at=at(rng.uniform(-10, 10)),
                                                          updated_at=at(0)))
            else:
                store.delete_deliveries(f"{rng.choice(subs):032x}")
        except BridgeError:
            pass  # a conflict, or the injected crash: the caller gives up, as the bridge does
        crashes.mode = None
    assert crashes.fired > 30
    rows = truth(store, subs)
    assert len(rows) > 20
    due = {d.id for d in store.due_deliveries(NOW, 10_000)}
    assert due == {d.id for d in rows.values() if d.status == DeliveryStatus.PENDING and d.next_attempt_at <= NOW}
    assert {d.id for d in store.due_deliveries(at(10**6), 10_000)} == {d.id for d in rows.values() if d.status == DeliveryStatus.PENDING}

    cutoff = at(-1500)
    # A purge that is itself cut short (its first write crashes) and the next run that finishes it.
    crashes.mode = "after"
    try:
        store.purge_deliveries(DeliveryStatus.DELIVERED, cutoff, 10_000)
    except BridgeError:
        pass
    crashes.mode = None
    for status in SETTLED:
        store.purge_deliveries(status, cutoff, 10_000)
    left = truth(store, subs)
    expired = {i for i, d in rows.items() if d.status in SETTLED and d.updated_at < cutoff}
    assert expired and set(left) == set(rows) - expired
    assert store.due_deliveries(NOW, 10_000) and {d.id for d in store.due_deliveries(NOW, 10_000)} == due


def test_a_delivery_recorded_after_its_subscription_was_deleted_goes_with_the_tombstone(store):
    """A callback in flight while its subscription is deleted can record a delivery after the
    deliveries were deleted: when the tombstone is purged, that partition is emptied too."""
    sub = store.create_subscription(a_record(7))
    store.bury_callback("token-7", sub.id, "key", at(-20_000))
    store.delete_deliveries(sub.id)
    store.delete_subscription(sub.id)
    store.record_delivery(delivery(7, 1, status=DeliveryStatus.DELIVERED, updated_at=at(-10)))
    assert store.purge_tombstones(at(0), 10) == 1
    assert store.list_deliveries(sub.id, 10) == ([], None)


def test_the_sqlite_reads_use_their_indexes(tmp_path):
    store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "plan.sqlite3")}))
    store.ping()
    store.close()
    with sqlite3.connect(tmp_path / "plan.sqlite3") as db:
        due = " ".join(str(r) for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM deliveries WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 5",
            ("pending", NOW)))
        settled = " ".join(str(r) for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM deliveries WHERE status = ? AND updated_at < ? ORDER BY updated_at LIMIT 5",
            ("delivered", NOW)))
    assert "deliveries_due" in due and "SCAN deliveries" not in due
    assert "deliveries_settled" in settled and "SCAN deliveries" not in settled


# Table Storage only ------------------------------------------------------------------------------
@pytest.fixture
def tables(request, tmp_path):
    s = open_store(Settings.from_env(store_env("tables", request, tmp_path)))
    yield s
    s.close()


def counted(fn, queries: list[str] | None = None):
    """``fn()`` and the number of Table Storage requests it sent; ``queries`` collects the filters
    of the queries it sent to the deliveries table."""
    from urllib.parse import parse_qs, urlsplit

    from azure.core.pipeline.transport import RequestsTransport

    from benchmarks.isolation import TransportCount

    counter = TransportCount()
    with counter.counting():
        counting = RequestsTransport.send

        def send(transport, request, **kwargs):
            url = urlsplit(request.url)
            if queries is not None and request.method == "GET" and "deliveries()" in url.path:
                queries.extend(parse_qs(url.query).get("$filter", []))
            return counting(transport, request, **kwargs)

        RequestsTransport.send = send
        try:
            result = fn()
        finally:
            RequestsTransport.send = counting
    return result, counter.by_service["table"]


@pytest.mark.azurite
def test_a_delivery_and_its_index_row_are_written_in_one_request(tables):
    tables.create_subscription(a_record(1))
    recorded, requests = counted(lambda: tables.record_delivery(delivery(1, 1, next_attempt_at=at(0))))
    assert requests == 1 and recorded.index_key == f"~d|{at(0)}|{1:024x}"
    settled, requests = counted(lambda: tables.update_delivery(recorded.replace(status=DeliveryStatus.DELIVERED, updated_at=at(1))))
    assert requests == 1 and settled.index_key == f"~x|delivered|{at(1)}|{1:024x}"
    assert counted(lambda: tables.record_delivery(delivery(1, 1)))[0] is None  # a duplicate: no second index row either
    rows = list(tables._table("deliveries").query_entities("PartitionKey eq @p", parameters={"p": f"{1:032x}"}))
    assert sorted(e["RowKey"] for e in rows) == [f"{1:024x}", settled.index_key]


@pytest.mark.azurite
def test_the_timer_reads_grow_with_what_is_due_not_with_what_is_stored(tables):
    """Two subscriptions, 5 due and 5 expired; then 600 more deliveries neither due nor expired:
    the same number of requests finds the due ones and purges the expired ones."""
    for sub in (1, 2):
        tables.create_subscription(a_record(sub, url=f"https://flow.example/{sub}"))
    for n in range(10):
        tables.record_delivery(delivery(1 + n % 2, n, next_attempt_at=at(-5)) if n < 5 else
                               delivery(1 + n % 2, n, status=DeliveryStatus.DELIVERED, updated_at=at(-5000)))

    queries: list[str] = []

    def timer_reads(first: int):
        due, find = counted(lambda: tables.due_deliveries(NOW, 100), queries)
        purged, purge = counted(lambda: sum(tables.purge_deliveries(s, at(-1500), 1000) for s in SETTLED), queries)
        return len(due), purged, find + purge

    small = timer_reads(0)
    # Every query the timer sends is a key range in one partition (no filter over the rows' fields,
    # which Table Storage answers by reading every row); the first run's one-time adoption aside.
    adoption = [q for q in queries if q.startswith("RowKey lt")]
    assert len(adoption) == 1
    assert queries and all(q.startswith("PartitionKey eq") and "RowKey ge" in q for q in queries if q not in adoption)
    from benchmarks.harness import bulk_record

    bulk_record(tables, [delivery(1 + n % 2, n, status=DeliveryStatus.DELIVERED, updated_at=at(-10)) for n in range(100, 700)])
    for n in range(10, 20):  # the same due/expired load again
        tables.record_delivery(delivery(1 + n % 2, n, next_attempt_at=at(-5)) if n < 15 else
                               delivery(1 + n % 2, n, status=DeliveryStatus.DELIVERED, updated_at=at(-5000)))
    large = timer_reads(0)
    assert small[1] == large[1] == 5
    assert large[0] == 10 and small[0] == 5  # due ones stay until retried
    assert large[2] <= small[2] + 5  # the 5 more due ones are read by point; the 600 stored ones cost nothing


@pytest.mark.azurite
def test_deliveries_written_before_the_index_are_adopted_once(tables, azurite):
    """Rows an older version wrote (no index row) are indexed by the first timer run of this
    version (a scan), then a marker keeps every later run from scanning again."""
    tables.create_subscription(a_record(1))
    table = tables._table("deliveries")
    legacy = [delivery(1, 1, next_attempt_at=at(-5)), delivery(1, 2, status=DeliveryStatus.DELIVERED, updated_at=at(-5000))]
    for d in legacy:  # as the previous version wrote them: the delivery row only
        entity = tables._delivery_entity(d, "")
        del entity["index_key"]
        table.create_entity(entity)
    assert [d.id for d in tables.due_deliveries(NOW, 10)] == [legacy[0].id]
    assert tables.purge_deliveries(DeliveryStatus.DELIVERED, at(-1500), 10) == 1
    prefix = tables._tables["deliveries"].table_name[:-len("deliveries")]
    again = open_store(Settings.from_env({"AzureWebJobsStorage": azurite, "BRIDGE_TABLE_PREFIX": prefix}))
    again.ping()
    due, requests = counted(lambda: again.due_deliveries(NOW, 10))
    assert [d.id for d in due] == [legacy[0].id] and requests == 1 + 2 + 1 + 1  # marker, partitions (2), one range, one read
    again.close()


@pytest.mark.azurite
def test_an_index_row_left_without_its_delivery_is_dropped(tables):
    tables.create_subscription(a_record(1))
    pending = tables.record_delivery(delivery(1, 1, next_attempt_at=at(-5)))
    done = tables.record_delivery(delivery(1, 2, status=DeliveryStatus.DELIVERED, updated_at=at(-5000)))
    table = tables._table("deliveries")
    for d in (pending, done):  # an interrupted delete_deliveries removes the delivery rows first
        table.delete_entity(f"{1:032x}", d.id.split("-")[1])
    assert tables.due_deliveries(NOW, 10) == []
    assert tables.purge_deliveries(DeliveryStatus.DELIVERED, at(-1500), 10) == 0
    assert [e["RowKey"] for e in table.query_entities("PartitionKey eq @p", parameters={"p": f"{1:032x}"})] == []


@pytest.mark.azurite
def test_the_timer_benchmark_shows_flat_requests_and_a_bounded_retention_lag(azurite):
    """benchmarks/timer.py (the README's Scale figures) in a small size: five times the stored rows
    with the same 1% due/expired share costs only the point reads of the extra due ones; a simulated
    hour of ingest leaves nothing expired after any run, and nothing waits longer than one period."""
    from benchmarks import timer

    small, large = (timer.timer_run(azurite, size, 5) for size in (500, 2500))
    assert (small["due"], small["purged"], large["due"], large["purged"]) == (5, 5, 25, 25)
    assert large["requests"] - small["requests"] <= (large["due"] - small["due"]) + 5
    lag = timer.retention_lag(azurite, 5, rate=1)
    assert [run["purged"] for run in lag["runs"]] == [900] * 4
    assert all(run["expired_left_after_run"] == 0 for run in lag["runs"]) and lag["max_lag_minutes"] <= 15
