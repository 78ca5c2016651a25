"""One contract suite, run against every store: the embedded SQLite store and Azure Table
Storage (on Azurite)."""
from __future__ import annotations

import uuid

import pytest

from shared.errors import ConcurrencyConflict, StoreUnavailable
from shared.models import DELIVERED, PENDING, Delivery, Subscription, isotime, target_hash


@pytest.fixture(params=["sqlite", "tables"])
def store(request, tmp_path):
    if request.param == "sqlite":
        from shared.store.sqlite import SqliteStore

        s = SqliteStore(str(tmp_path / "contract.sqlite3"))
    else:
        from azure.data.tables import TableServiceClient

        from shared.store.tables import TableStore

        connection = request.getfixturevalue("azurite")
        s = TableStore(TableServiceClient.from_connection_string(connection), prefix=f"t{uuid.uuid4().hex[:10]}")
    yield s
    s.close()


def sub(n=0, url="https://flow.example/a", **kw) -> Subscription:
    fields = dict(id=f"{n:032x}", target={"type": "http", "url": url}, events=["invitee.created"], scope="organization",
                  organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="key", generation="g")
    fields.update(kw)
    return Subscription(**fields)


def delivery(sub_n=0, n=0, body=b"{}", **kw) -> Delivery:
    fields = dict(id=f"{sub_n:032x}-{n:024x}", subscription_id=f"{sub_n:032x}", event="invitee.created", event_key=f"k{n}", body=body)
    fields.update(kw)
    return Delivery(**fields)


def test_create_get_update_delete(store):
    created = store.create_subscription(sub(1, user=None, group="https://api.calendly.com/groups/G"))
    got = store.get_subscription(created.id)
    assert got.target == created.target and got.group == "https://api.calendly.com/groups/G" and got.user is None
    updated = store.update_subscription(got.replace(state="active", calendly_webhook="https://api.calendly.com/webhook_subscriptions/W"))
    assert store.get_subscription(created.id).calendly_webhook.endswith("/W") and updated.etag != got.etag
    store.delete_subscription(created.id)
    assert store.get_subscription(created.id) is None
    store.delete_subscription(created.id)  # idempotent


def test_duplicate_create_is_a_conflict(store):
    store.create_subscription(sub(2))
    with pytest.raises(ConcurrencyConflict):
        store.create_subscription(sub(2))


def test_stale_etag_update_is_a_conflict(store):
    first = store.create_subscription(sub(3))
    store.update_subscription(first.replace(state="active"))
    with pytest.raises(ConcurrencyConflict):
        store.update_subscription(first.replace(state="deleting"))


def test_update_of_a_vanished_record_is_a_conflict(store):
    first = store.create_subscription(sub(4))
    store.delete_subscription(first.id)
    with pytest.raises(ConcurrencyConflict):
        store.update_subscription(first)


def test_list_pages_with_a_cursor(store):
    for n in range(5):
        store.create_subscription(sub(10 + n, url=f"https://flow.example/{n}"))
    page, cursor = store.list_subscriptions(2)
    seen = [s.id for s in page]
    while cursor:
        page, cursor = store.list_subscriptions(2, cursor)
        seen += [s.id for s in page]
    assert seen == [f"{10 + n:032x}" for n in range(5)]


def test_find_by_target_follows_creates_and_deletes(store):
    a = store.create_subscription(sub(20, url="https://flow.example/same"))
    store.create_subscription(sub(21, url="https://flow.example/same", events=["invitee.canceled"]))
    store.create_subscription(sub(22, url="https://flow.example/other"))
    wanted = target_hash({"type": "http", "url": "https://flow.example/same"})
    assert sorted(s.id for s in store.find_subscriptions_by_target(wanted)) == [f"{20:032x}", f"{21:032x}"]
    store.delete_subscription(a.id)
    assert [s.id for s in store.find_subscriptions_by_target(wanted)] == [f"{21:032x}"]


def test_record_delivery_is_insert_if_absent(store):
    first = store.record_delivery(delivery(30, 1))
    assert first is not None and first.etag
    assert store.record_delivery(delivery(30, 1, body=b'{"other": 1}')) is None
    assert store.get_delivery(first.id).body == b"{}"


def test_256_kib_body_round_trips_byte_exact(store):
    body = ("Zoë Ångström ¿Dónde? 東京 ".encode("utf-8") * 20000)[: 256 * 1024] + b"\xff\xfe\x00"
    recorded = store.record_delivery(delivery(31, 2, body=body))
    assert store.get_delivery(recorded.id).body == body


def test_delivery_update_uses_etags(store):
    recorded = store.record_delivery(delivery(32, 3))
    done = store.update_delivery(recorded.replace(status=DELIVERED, attempts=1, last_status=200, delivered_at=isotime()))
    got = store.get_delivery(recorded.id)
    assert (got.status, got.attempts, got.last_status) == (DELIVERED, 1, 200) and got.etag == done.etag
    with pytest.raises(ConcurrencyConflict):
        store.update_delivery(recorded.replace(status=PENDING))


def test_list_deliveries_pages_within_a_subscription(store):
    for n in range(5):
        store.record_delivery(delivery(40, n))
    store.record_delivery(delivery(41, 0))
    page, cursor = store.list_deliveries(f"{40:032x}", 3)
    rest, end = store.list_deliveries(f"{40:032x}", 3, cursor)
    assert [d.id for d in page + rest] == [f"{40:032x}-{n:024x}" for n in range(5)] and end is None


def test_due_deliveries_are_pending_and_due_in_order(store):
    store.record_delivery(delivery(50, 1, next_attempt_at="2026-01-01T00:00:02.000000Z"))
    store.record_delivery(delivery(50, 2, next_attempt_at="2026-01-01T00:00:01.000000Z"))
    store.record_delivery(delivery(50, 3, next_attempt_at="2999-01-01T00:00:00.000000Z"))
    store.record_delivery(delivery(50, 4, status=DELIVERED, next_attempt_at="2026-01-01T00:00:00.000000Z"))
    due = store.due_deliveries("2026-06-01T00:00:00.000000Z", 10)
    assert [d.id[-1] for d in due] == ["2", "1"]


def test_unreachable_backend_raises_store_unavailable(request, tmp_path):
    from azure.data.tables import TableServiceClient

    from shared.store.sqlite import SqliteStore
    from shared.store.tables import TableStore
    from tests.azurite import ACCOUNT, KEY
    from tests.conftest import free_port

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(StoreUnavailable):
        SqliteStore(str(blocked / "x" / "db.sqlite3"))
    down = TableStore(TableServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};TableEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT};",
        retry_total=0))
    with pytest.raises(StoreUnavailable):
        down.get_subscription("0" * 32)
