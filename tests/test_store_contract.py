"""One contract suite, run against every store: the embedded SQLite store and Azure Table
Storage (on Azurite). Then: which store the settings select, and stores that are down."""
from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from shared.errors import ConcurrencyConflict, StoreUnavailable
from shared.models import Delivery, DeliveryStatus, HttpEndpoint, Subscription, SubscriptionState, isotime, target_hash
from shared.settings import Settings
from shared.composition import open_store
from tests.azurite import ACCOUNT, KEY, free_port
from tests.helpers import a_record


@pytest.fixture(params=["sqlite", pytest.param("tables", marks=pytest.mark.azurite)])
def store(request, tmp_path):
    if request.param == "sqlite":
        settings = Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "contract.sqlite3")})
    else:
        settings = Settings.from_env({"AzureWebJobsStorage": request.getfixturevalue("azurite"),
                                      "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}"})
    s = open_store(settings)
    assert s.name == request.param
    yield s
    s.close()


def delivery(sub_n=0, n=0, body=b"{}", **kw) -> Delivery:
    fields = dict(id=f"{sub_n:032x}-{n:024x}", subscription_id=f"{sub_n:032x}", event="invitee.created", event_key=f"k{n}", body=body)
    fields.update(kw)
    return Delivery(**fields)


def hash_of(url: str) -> str:
    return target_hash(HttpEndpoint(url))


# Subscriptions -----------------------------------------------------------------------------

def test_ping_answers_when_the_backend_is_up(store):
    assert store.ping() is None  # and raises StoreUnavailable when it is down (tests below)


def test_ping_of_a_sqlite_file_that_went_bad_is_store_unavailable(tmp_path):
    path = tmp_path / "bad.sqlite3"
    store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": str(path)}))
    assert store.ping() is None
    store.close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"bad.sqlite3{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"not a database" * 400)  # e.g. overwritten on disk while the app runs
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_create_get_update_delete(store):
    created = store.create_subscription(a_record(1, user=None, group="https://api.calendly.com/groups/G", events=["a", "b"]))
    assert created.etag
    got = store.get_subscription(created.id)
    assert (got.target, got.events, got.group, got.user, got.etag) == (created.target, ["a", "b"], created.group, None, created.etag)
    updated = store.update_subscription(got.replace(state=SubscriptionState.ACTIVE, calendly_webhook="https://api.calendly.com/webhook_subscriptions/W"))
    again = store.get_subscription(created.id)
    assert again.calendly_webhook.endswith("/W") and again.state == "active"
    assert updated.etag != got.etag and again.etag == updated.etag
    store.delete_subscription(created.id)
    assert store.get_subscription(created.id) is None
    store.delete_subscription(created.id)  # idempotent


def test_unknown_subscription_is_none(store):
    assert store.get_subscription("f" * 32) is None


def test_duplicate_create_is_a_conflict(store):
    store.create_subscription(a_record(2, callback_token="W" * 43))
    with pytest.raises(ConcurrencyConflict):
        store.create_subscription(a_record(2, url="https://flow.example/other", callback_token="L" * 43))
    assert store.callback_subscription_id("W" * 43) == f"{2:032x}" and store.callback_subscription_id("L" * 43) is None
    assert store.get_subscription(f"{2:032x}").target == HttpEndpoint("https://flow.example/a")
    assert store.find_subscriptions_by_target(hash_of("https://flow.example/other")) == []


def test_stale_etag_update_is_a_conflict(store):
    first = store.create_subscription(a_record(3))
    store.update_subscription(first.replace(state=SubscriptionState.ACTIVE))
    with pytest.raises(ConcurrencyConflict):
        store.update_subscription(first.replace(state=SubscriptionState.DELETING))
    assert store.get_subscription(first.id).state == "active"


def test_update_of_a_vanished_record_is_a_conflict(store):
    first = store.create_subscription(a_record(4))
    store.delete_subscription(first.id)
    with pytest.raises(ConcurrencyConflict):
        store.update_subscription(first)
    assert store.get_subscription(first.id) is None


def test_list_pages_with_a_cursor(store):
    assert store.list_subscriptions(10) == ([], None)
    for n in (14, 10, 13, 11, 12):
        store.create_subscription(a_record(n, url=f"https://flow.example/{n}"))
    page, cursor = store.list_subscriptions(2)
    seen = [s.id for s in page]
    while cursor:
        page, cursor = store.list_subscriptions(2, cursor)
        assert len(page) <= 2
        seen += [s.id for s in page]
    assert seen == [f"{10 + n:032x}" for n in range(5)]
    exact, end = store.list_subscriptions(5)
    assert len(exact) == 5 and end is None


def test_find_by_target_follows_creates_updates_and_deletes(store):
    a = store.create_subscription(a_record(20, url="https://flow.example/same"))
    store.create_subscription(a_record(21, url="https://flow.example/same", events=["invitee.canceled"]))
    c = store.create_subscription(a_record(22, url="https://flow.example/other"))
    same, other = hash_of("https://flow.example/same"), hash_of("https://flow.example/other")
    assert [s.id for s in store.find_subscriptions_by_target(same)] == [f"{20:032x}", f"{21:032x}"]
    store.delete_subscription(a.id)
    assert [s.id for s in store.find_subscriptions_by_target(same)] == [f"{21:032x}"]
    store.update_subscription(c.replace(target=HttpEndpoint("https://flow.example/same")))
    assert [s.id for s in store.find_subscriptions_by_target(same)] == [f"{21:032x}", f"{22:032x}"]
    assert store.find_subscriptions_by_target(other) == []


# Deliveries --------------------------------------------------------------------------------

def test_record_delivery_is_insert_if_absent(store):
    first = store.record_delivery(delivery(30, 1))
    assert first is not None and first.etag
    assert store.record_delivery(delivery(30, 1, body=b'{"other": 1}')) is None
    got = store.get_delivery(first.id)
    assert got.body == b"{}" and got.etag == first.etag and got.status == DeliveryStatus.PENDING and got.attempts == 0


def test_unknown_delivery_is_none(store):
    assert store.get_delivery(f"{1:032x}-{1:024x}") is None


@pytest.mark.parametrize("body", [
    b"",
    ("Zoë Ångström ¿Dónde? 東京 🙂 ".encode("utf-8") * 20000)[: 256 * 1024 - 3] + b"\xff\xfe\x00",
    os.urandom(256 * 1024),
], ids=["empty", "256KiB-text-and-invalid-utf8", "256KiB-random"])
def test_bodies_round_trip_byte_exact(store, body):
    recorded = store.record_delivery(delivery(31, 2, body=body))
    assert store.get_delivery(recorded.id).body == body
    updated = store.update_delivery(recorded.replace(attempts=1))
    assert store.get_delivery(updated.id).body == body


def test_delivery_update_uses_etags(store):
    recorded = store.record_delivery(delivery(32, 3))
    done = store.update_delivery(recorded.replace(status=DeliveryStatus.DELIVERED, attempts=1, last_status=200, delivered_at=isotime()))
    got = store.get_delivery(recorded.id)
    assert (got.status, got.attempts, got.last_status, got.etag) == (DeliveryStatus.DELIVERED, 1, 200, done.etag)
    with pytest.raises(ConcurrencyConflict):
        store.update_delivery(recorded.replace(status=DeliveryStatus.PENDING))
    assert store.get_delivery(recorded.id).status == DeliveryStatus.DELIVERED


def test_update_of_a_missing_delivery_is_a_conflict(store):
    real_etag = store.record_delivery(delivery(33, 1)).etag
    with pytest.raises(ConcurrencyConflict):
        store.update_delivery(delivery(33, 2, etag=real_etag))
    assert store.get_delivery(delivery(33, 2).id) is None


def test_delivery_fields_round_trip(store):
    recorded = store.record_delivery(delivery(34, 1, event="invitee.canceled", event_key="invitee.canceled\nuri"))
    dead = recorded.replace(status=DeliveryStatus.DEAD, attempts=8, last_status=None, last_error="connection refused: Zoë", updated_at=isotime())
    store.update_delivery(dead)
    got = store.get_delivery(recorded.id)
    assert (got.subscription_id, got.event, got.event_key, got.status, got.attempts, got.last_status, got.last_error,
            got.delivered_at, got.created_at, got.updated_at) == (
        f"{34:032x}", "invitee.canceled", "invitee.canceled\nuri", DeliveryStatus.DEAD, 8, None, "connection refused: Zoë",
        None, recorded.created_at, dead.updated_at)


def test_list_deliveries_pages_within_a_subscription(store):
    assert store.list_deliveries(f"{40:032x}", 3) == ([], None)
    for n in range(5):
        store.record_delivery(delivery(40, n))
    store.record_delivery(delivery(41, 0))
    page, cursor = store.list_deliveries(f"{40:032x}", 3)
    rest, end = store.list_deliveries(f"{40:032x}", 3, cursor)
    assert [d.id for d in page + rest] == [f"{40:032x}-{n:024x}" for n in range(5)] and end is None
    assert [d.id for d in store.list_deliveries(f"{41:032x}", 3)[0]] == [f"{41:032x}-{0:024x}"]


def test_due_deliveries_are_pending_and_due_oldest_first(store):
    for n in (50, 51, 52, 53):  # deliveries belong to subscriptions: the timer's reads go subscription by subscription
        store.create_subscription(a_record(n, url=f"https://flow.example/{n}"))
    store.record_delivery(delivery(50, 1, next_attempt_at="2026-01-01T00:00:02.000000Z"))
    store.record_delivery(delivery(51, 2, next_attempt_at="2026-01-01T00:00:01.000000Z"))
    store.record_delivery(delivery(52, 3, next_attempt_at="2026-01-01T00:00:03.000000Z"))
    store.record_delivery(delivery(50, 4, next_attempt_at="2999-01-01T00:00:00.000000Z"))
    store.record_delivery(delivery(53, 5, status=DeliveryStatus.DELIVERED, next_attempt_at="2026-01-01T00:00:00.000000Z"))
    store.record_delivery(delivery(53, 6, status=DeliveryStatus.DEAD, next_attempt_at="2026-01-01T00:00:00.000000Z"))
    due = list(store.due_deliveries("2026-06-01T00:00:00.000000Z", 10))
    assert [d.id[-1] for d in due] == ["2", "1", "3"] and all(d.body == b"{}" and d.etag for d in due)
    assert [d.id[-1] for d in store.due_deliveries("2026-06-01T00:00:00.000000Z", 2)] == ["2", "1"]
    assert [d.id[-1] for d in store.due_deliveries("2026-01-01T00:00:01.000000Z", 10)] == ["2"]
    assert len(list(store.due_deliveries("9999-12-31T23:59:59.999999Z", 10))) == 4


def test_callback_token_finds_its_subscription_for_the_records_life(store):
    token = "T" * 43
    created = store.create_subscription(a_record(80, callback_token=token))
    assert store.callback_subscription_id(token) == created.id
    assert store.get_subscription(created.id).callback_token == token
    assert store.callback_subscription_id("U" * 43) is None
    store.create_subscription(a_record(81, url="https://flow.example/legacy"))  # made before tokens: none
    assert store.get_subscription(f"{81:032x}").callback_token is None
    store.delete_subscription(created.id)
    assert store.callback_subscription_id(token) is None


def test_a_legacy_record_gets_its_token_and_the_old_hook_is_remembered(store):
    legacy = store.create_subscription(a_record(82))
    moved = store.update_subscription(legacy.replace(callback_token="M" * 43, legacy_webhook="https://api.calendly.com/webhook_subscriptions/OLD"))
    assert store.callback_subscription_id("M" * 43) == legacy.id
    got = store.get_subscription(legacy.id)
    assert (got.callback_token, got.legacy_webhook, got.answers_legacy_path) == ("M" * 43, moved.legacy_webhook, True)
    store.update_subscription(got.replace(legacy_webhook=None))
    assert store.get_subscription(legacy.id).answers_legacy_path is False


def test_deleting_a_known_version_is_conditional(store):
    first = store.create_subscription(a_record(83, callback_token="D" * 43))
    changed = store.update_subscription(first.replace(state=SubscriptionState.DELETING))
    with pytest.raises(ConcurrencyConflict):
        store.delete_subscription(first.id, etag=first.etag)  # stale: someone moved it on
    assert store.get_subscription(first.id).state == SubscriptionState.DELETING
    store.delete_subscription(first.id, etag=changed.etag)
    assert store.get_subscription(first.id) is None and store.callback_subscription_id("D" * 43) is None
    assert store.find_subscriptions_by_target(first.target_hash) == []
    store.delete_subscription(first.id, etag=changed.etag)  # already gone: fine


def test_a_stale_delete_leaves_the_record_a_new_subscribe_made_under_the_same_id(store):
    old = store.create_subscription(a_record(84, callback_token="O" * 43))
    store.delete_subscription(old.id, etag=old.etag)
    new = store.create_subscription(a_record(84, callback_token="N" * 43, generation="g2"))
    with pytest.raises(ConcurrencyConflict):
        store.delete_subscription(old.id, etag=old.etag)
    assert store.get_subscription(old.id).generation == "g2"
    assert [s.id for s in store.find_subscriptions_by_target(new.target_hash)] == [new.id]
    assert store.callback_subscription_id("N" * 43) == new.id


def test_delete_deliveries_removes_one_subscriptions_log_only(store):
    for n in range(3):
        store.record_delivery(delivery(90, n, body=b'{"email": "zoe@example.com"}'))
    store.record_delivery(delivery(91, 0))
    assert store.delete_deliveries(f"{90:032x}") == 3
    assert store.list_deliveries(f"{90:032x}", 10) == ([], None)
    assert [d.id for d in store.list_deliveries(f"{91:032x}", 10)[0]] == [f"{91:032x}-{0:024x}"]
    assert store.delete_deliveries(f"{90:032x}") == 0


def test_delete_deliveries_of_a_large_log_crosses_transaction_batches(store):
    for n in range(230):
        store.record_delivery(delivery(92, n))
    assert store.delete_deliveries(f"{92:032x}") == 230
    assert store.list_deliveries(f"{92:032x}", 10) == ([], None)


def test_purge_takes_a_bounded_batch_of_one_status_changed_before_the_cutoff(store):
    old, new = "2026-01-01T00:00:00.000000Z", "2026-01-05T00:00:00.000000Z"
    store.create_subscription(a_record(93))
    for n in range(5):
        store.record_delivery(delivery(93, n, status=DeliveryStatus.DELIVERED, updated_at=old))
    store.record_delivery(delivery(93, 10, status=DeliveryStatus.DELIVERED, updated_at=new))
    store.record_delivery(delivery(93, 11, status=DeliveryStatus.DEAD, updated_at=old))
    store.record_delivery(delivery(93, 12, status=DeliveryStatus.PENDING, updated_at=old))
    cutoff = "2026-01-03T00:00:00.000000Z"
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, cutoff, 3) == 3
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, cutoff, 3) == 2
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, cutoff, 3) == 0
    left = {d.id[-2:]: d.status for d in store.list_deliveries(f"{93:032x}", 20)[0]}
    assert left == {"0a": DeliveryStatus.DELIVERED, "0b": DeliveryStatus.DEAD, "0c": DeliveryStatus.PENDING}


def test_purge_follows_the_last_change_not_the_first(store):
    store.create_subscription(a_record(94))
    recorded = store.record_delivery(delivery(94, 1, updated_at="2026-01-01T00:00:00.000000Z"))
    store.update_delivery(recorded.replace(status=DeliveryStatus.DELIVERED, updated_at="2026-01-09T00:00:00.000000Z"))
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, "2026-01-05T00:00:00.000000Z", 10) == 0
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, "2026-01-10T00:00:00.000000Z", 10) == 1
    assert store.get_delivery(recorded.id) is None


def test_an_older_sqlite_file_is_upgraded_in_place(tmp_path):
    """A store file written before callback tokens and purge columns opens, keeps its rows and purges."""
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE subscriptions (id TEXT PRIMARY KEY, target_hash TEXT NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL);
            CREATE TABLE deliveries (id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, status TEXT NOT NULL,
                                     next_attempt_at TEXT NOT NULL, data TEXT NOT NULL, body BLOB NOT NULL, version INTEGER NOT NULL);""")
        from shared.store.records import delivery_record, subscription_record

        legacy = a_record(95)
        db.execute("INSERT INTO subscriptions VALUES (?, ?, ?, 1)", (legacy.id, legacy.target_hash, json.dumps(subscription_record(legacy))))
        old = delivery(95, 1, status=DeliveryStatus.DELIVERED, updated_at="2026-01-01T00:00:00.000000Z")
        db.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, 1)", (old.id, old.subscription_id, old.status.value,
                                                                        old.next_attempt_at, json.dumps(delivery_record(old)), b"{}"))
    store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": str(path)}))
    got = store.get_subscription(legacy.id)
    assert got.callback_token is None and got.answers_legacy_path
    store.update_subscription(got.replace(callback_token="L" * 43))
    assert store.callback_subscription_id("L" * 43) == legacy.id
    assert store.purge_deliveries(DeliveryStatus.DELIVERED, "2026-02-01T00:00:00.000000Z", 10) == 1
    store.close()


# Which store, and stores that are down ---------------------------------------------------------

def test_no_storage_setting_selects_sqlite(tmp_path):
    store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "s.sqlite3")}))
    assert store.name == "sqlite"
    store.close()


def test_use_development_storage_maps_to_azurites_default_endpoints():
    from shared.azure_clients import queue_client

    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    store = open_store(settings)
    assert store.name == "tables" and store.service.url.startswith("http://127.0.0.1:10002/devstoreaccount1")
    assert queue_client(settings).url == "http://127.0.0.1:10001/devstoreaccount1/calendly-deliveries"


def test_identity_based_settings_share_one_managed_identity_credential(monkeypatch):
    """Tables, the retry queue, Key Vault and Service Bus all get the one credential the app composes."""
    import azure.identity

    from shared.composition import compose

    made = []

    class RecordingCredential:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def get_token(self, *scopes, **kwargs):  # never called: nothing is sent
            raise AssertionError("no request expected")

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", RecordingCredential)
    from shared import azure_clients

    given: dict = {}  # the credential each lazily made client (Key Vault, Service Bus) is made with
    monkeypatch.setattr(azure_clients, "secret_client", lambda url, credential, **options: given.setdefault("vault", credential))
    monkeypatch.setattr(azure_clients, "servicebus_client", lambda settings, credential: given.setdefault("servicebus", credential))
    bridge = compose(Settings.from_env({"AzureWebJobsStorage__accountName": "bridgeacct", "AzureWebJobsStorage__clientId": "cid-1",
                                        "KEY_VAULT_URL": "https://kv.vault.azure.net",
                                        "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": "sb.servicebus.windows.net"}))
    assert made == [{"managed_identity_client_id": "cid-1"}]
    assert given == {}  # not made while composing: on first use
    bridge.pat._secret_client()
    bridge.targets._servicebus_client()
    [credential] = {id(given["vault"]), id(given["servicebus"])}
    assert bridge.store.name == "tables" and bridge.store.service.url.startswith("https://bridgeacct.table.core.windows.net")
    assert id(bridge.store.service.credential) == credential
    queue = bridge.deliveries.scheduler._client
    assert queue.url == "https://bridgeacct.queue.core.windows.net/calendly-deliveries" and id(queue.credential) == credential
    explicit = open_store(Settings.from_env({"AzureWebJobsStorage__tableServiceUri": "https://custom.example/tables"}),
                          RecordingCredential())
    assert explicit.name == "tables" and explicit.service.url.startswith("https://custom.example/tables")


def test_azure_client_id_is_the_one_client_id_when_both_are_set():
    settings = Settings.from_env({"AZURE_CLIENT_ID": "app-id", "AzureWebJobsStorage__clientId": "storage-id"})
    assert settings.managed_identity_client_id == "app-id"


def test_unwritable_sqlite_path_is_store_unavailable(tmp_path):
    from shared.store.sqlite import SqliteStore

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(StoreUnavailable):
        SqliteStore(str(blocked / "x" / "db.sqlite3"))


def _tables_at(port: int):
    return open_store(Settings.from_env({"AzureWebJobsStorage": (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")}))


@pytest.mark.parametrize("operation", [
    lambda s: s.ping(),
    lambda s: s.get_subscription("0" * 32),
    lambda s: s.create_subscription(a_record(1)),
    lambda s: s.record_delivery(delivery(1, 1)),
    lambda s: s.update_delivery(delivery(1, 1, etag="x")),
    lambda s: s.due_deliveries(isotime(), 10),
], ids=["ping", "get", "create", "record", "update", "due"])
def test_table_storage_refusing_connections_is_store_unavailable(operation):
    store = _tables_at(free_port())  # nothing listens there
    with pytest.raises(StoreUnavailable):
        operation(store)


def test_table_storage_that_hangs_fails_within_bounded_time(monkeypatch):
    from shared import azure_clients

    monkeypatch.setattr(azure_clients, "TABLE_CLIENT_OPTIONS",
                        {**azure_clients.TABLE_CLIENT_OPTIONS, "connection_timeout": 0.5, "read_timeout": 0.5})
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        store = _tables_at(silent.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get_subscription("0" * 32)
        assert time.monotonic() - started < 5, "the configured timeouts and retry count bound a hung endpoint"


@pytest.mark.azurite
def test_a_dangling_target_index_row_is_skipped(azurite):
    """What a crash between writing the index row and the subscription leaves behind."""
    store = open_store(Settings.from_env({"AzureWebJobsStorage": azurite, "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}"}))
    ghost = a_record(60, url="https://flow.example/ghost")
    store._index(ghost)
    assert store.find_subscriptions_by_target(ghost.target_hash) == []
    store.create_subscription(ghost)
    assert [s.id for s in store.find_subscriptions_by_target(ghost.target_hash)] == [ghost.id]
    store.close()


@pytest.mark.azurite
def test_use_development_storage_true_works_against_azurite(dev_storage_azurite):
    """The sample's connection string, as `func start` users have it, against a real Azurite."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    from shared.azure_clients import queue_client
    from shared.retry_queue import QueueScheduler

    queue = f"q{uuid.uuid4().hex[:12]}"
    settings = Settings.from_env({"AzureWebJobsStorage": dev_storage_azurite, "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}",
                                  "DELIVERY_QUEUE": queue})
    store = open_store(settings)
    recorded = store.record_delivery(delivery(70, 1, body=b"\xff" * 70000))
    assert store.get_delivery(recorded.id).body == b"\xff" * 70000
    QueueScheduler(queue_client(settings)).schedule(recorded, 0)
    reader = QueueClient.from_connection_string(dev_storage_azurite, queue, message_decode_policy=TextBase64DecodePolicy())
    [message] = reader.receive_messages()
    assert recorded.id in message.content
    store.close()


# Owners (Microsoft Entra ID makers) ---------------------------------------------------------------
ALICE_ID, BOB_ID, TENANT_ID = "aaaaaaaa-1111-4111-8111-111111111111", "bbbbbbbb-2222-4222-8222-222222222222", "6f1f7a9e-2c3b-4d5e-8f90-a1b2c3d4e5f6"


def test_owner_fields_round_trip_and_owner_less_rows_stay_owner_less(store):
    store.create_subscription(a_record(1, owner_tenant=TENANT_ID, owner_id=ALICE_ID, owner_name="alice@contoso.com"))
    store.create_subscription(a_record(2))
    owned, plain = store.get_subscription(f"{1:032x}"), store.get_subscription(f"{2:032x}")
    assert (owned.owner_tenant, owned.owner_id, owned.owner_name) == (TENANT_ID, ALICE_ID, "alice@contoso.com")
    assert plain.owner is None


def test_listing_by_owner_pages_through_only_that_owners_subscriptions(store):
    for n in range(1, 8):
        store.create_subscription(a_record(n, url=f"https://flow.example/{n}", owner_tenant=TENANT_ID if n % 3 else None,
                                      owner_id=(ALICE_ID if n % 2 else BOB_ID) if n % 3 else None))
    seen, cursor = [], None
    while True:
        page, cursor = store.list_subscriptions(2, cursor, owner_id=ALICE_ID)
        seen += [s.id for s in page]
        if cursor is None:
            break
    assert seen == [f"{n:032x}" for n in (1, 5, 7)]
    assert [s.id for s in store.list_subscriptions(10, owner_id=BOB_ID)[0]] == [f"{n:032x}" for n in (2, 4)]
    assert len(store.list_subscriptions(10)[0]) == 7
