"""Azure Table Storage store (azure-data-tables).

Keys make the Calendly callback path point operations only:
- subscriptions: PartitionKey = subscription id, RowKey = "subscription" (point read; one
  partition per subscription, so no hot partition caps callback reads; listing is a
  management-path scan in key order, which is also the cursor order);
- targets (index for unsubscribe-by-URL): PartitionKey = target hash, RowKey = subscription id.
  Written before and removed after the subscription itself, so a crash leaves at most a
  dangling index row, which lookups skip;
- callbacks (index for Calendly's callback path): PartitionKey = the record's random callback
  token, RowKey = "callback", ``subscription_id``: a point read. Written before and removed after
  the subscription, like the target index; a token never moves to another record, so the
  callback path may cache what it read (a dangling row leads to a record without that token: 404);
- deliveries: PartitionKey = subscription id, RowKey = the delivery id's suffix, so recording a
  delivery is an insert-if-absent (the dedupe), replay is a point read, and a subscription's
  delivery log is one partition query. Beside each delivery, in the same partition and written in
  the same entity-group transaction (one request, all or nothing), its one index row: ``~d|<due
  time>|<row>`` while pending, ``~x|<status>|<settled time>|<row>`` after; the delivery names it
  (``index_key``). The timer finds due and expired deliveries with one key-range query per
  subscription: its reads grow with the subscriptions and with what is due or expired, not with
  what is stored (README "Scale");
- tombstones (deleted subscriptions' callback paths, so Calendly can be answered 410): PartitionKey
  = the old callback token, RowKey = "gone", with the subscription id, its old signing key and when
  it was deleted: a point read, only for paths no live subscription has; purged after a week;
- accounts (the Calendly accounts an admin declared, shared.accounts): PartitionKey = "account",
  RowKey = the account's name; a few rows, read on the management path and cached.
Updates (and deletes of a known version) are conditional on the entity's ETag.
"""
from __future__ import annotations

import threading
from typing import Any

from ..errors import ConcurrencyConflict, StoreUnavailable
from ..models import Account, Delivery, DeliveryStatus, Subscription
from .records import (
    account_from_record,
    account_record,
    delivery_from_record,
    delivery_record,
    subscription_from_record,
    subscription_record,
)

SUB_ROW = "subscription"
CALLBACK_ROW = "callback"
TOMBSTONE_ROW = "gone"
ACCOUNT_PARTITION = "account"
NOTE_PARTITION = "~note"  # counts table: the bridge's notes about itself (no subscription id starts with "~")
COUNTS_ROW = "filters"  # counts table: PartitionKey = subscription id; matched / filtered (shared.counters)
BATCH = 100  # entity group transactions hold at most 100 operations, all in one partition
BODY_CHUNK = 60 * 1024  # binary properties hold at most 64 KiB
MAX_BODY_CHUNKS = 8     # 480 KiB: room for the 256 KiB event limit, within the 1 MiB entity limit
META_PARTITION = "~meta"  # the store's own markers in the deliveries table (no subscription id starts with "~")
ADOPTED_ROW = "index-adopted"
INDEX = "~"          # index rows sort after every delivery row (hex) in a subscription's partition
DUE = "~d|"          # ~d|<next_attempt_at>|<delivery row>: a pending delivery, by when it is due
SETTLED = "~x|"      # ~x|<status>|<updated_at>|<delivery row>: a delivered/discarded/dead one, by when it settled


class _Failed(Exception):
    """An entity-group transaction failed as a whole; ``index`` is the operation that failed."""

    def __init__(self, index: int, cause: Exception):
        super().__init__(str(cause))
        self.index = index


class TableStore:
    name = "tables"

    def __init__(self, service: Any, prefix: str = "calendlybridge"):
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import TableTransactionError, UpdateMode

        self._errors = (AzureError, OSError)
        self._exists, self._modified = ResourceExistsError, ResourceModifiedError
        self._not_found, self._http = ResourceNotFoundError, HttpResponseError
        self._batch_error = TableTransactionError
        self._if_not_modified = MatchConditions.IfNotModified
        self._replace, self._merge = UpdateMode.REPLACE, UpdateMode.MERGE
        self.service = service
        self._tables = {kind: service.get_table_client(f"{prefix}{kind}")
                        for kind in ("subscriptions", "targets", "callbacks", "deliveries", "tombstones", "counts",
                                                                          "accounts")}
        self._ready = False
        self._adopted = False
        self._ready_lock = threading.Lock()

    # plumbing -------------------------------------------------------------------------------
    def _table(self, kind: str):
        if not self._ready:
            with self._ready_lock:
                if not self._ready:
                    for table in self._tables.values():
                        try:
                            table.create_table()
                        except self._exists:
                            pass
                        except self._errors as exc:
                            raise StoreUnavailable(f"Azure Table Storage is unavailable: {type(exc).__name__}") from None
                    self._ready = True
        return self._tables[kind]

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (self._exists, self._modified, self._not_found, self._batch_error):
            raise
        except self._http as exc:
            if exc.status_code == 412:
                raise self._modified(message=str(exc)) from None
            if exc.status_code == 409:
                raise self._exists(message=str(exc)) from None
            raise StoreUnavailable(f"Azure Table Storage failed: {exc.status_code} {type(exc).__name__}") from None
        except self._errors as exc:
            raise StoreUnavailable(f"Azure Table Storage is unavailable: {type(exc).__name__}") from None

    @staticmethod
    def _etag(result: Any) -> str | None:
        if isinstance(result, dict):
            return result.get("etag")
        return getattr(result, "metadata", {}).get("etag")

    def ping(self) -> None:
        self._call(lambda: next(iter(self._table("subscriptions").query_entities("PartitionKey eq 'ping'", results_per_page=1)), None))

    # subscriptions ---------------------------------------------------------------------------
    @staticmethod
    def _sub_entity(sub: Subscription) -> dict:
        return {"PartitionKey": sub.id, "RowKey": SUB_ROW, "target_hash": sub.target_hash, **subscription_record(sub)}

    @staticmethod
    def _sub(entity: Any) -> Subscription:
        return subscription_from_record(entity, entity["PartitionKey"], entity.metadata.get("etag"))

    def _index(self, sub: Subscription) -> None:
        self._call(self._table("targets").upsert_entity, {"PartitionKey": sub.target_hash, "RowKey": sub.id})

    def _index_callback(self, sub: Subscription) -> None:
        if sub.callback_token:
            self._call(self._table("callbacks").upsert_entity,
                       {"PartitionKey": sub.callback_token, "RowKey": CALLBACK_ROW, "subscription_id": sub.id})

    def _unindex_callback(self, token: str | None) -> None:
        if token:
            try:
                self._call(self._table("callbacks").delete_entity, token, CALLBACK_ROW)
            except self._not_found:
                pass

    def create_subscription(self, sub: Subscription) -> Subscription:
        self._index(sub)
        self._index_callback(sub)
        try:
            result = self._call(self._table("subscriptions").create_entity, self._sub_entity(sub))
        except self._exists:
            self._unindex_callback(sub.callback_token)  # the token of a record that was not made
            raise ConcurrencyConflict(f"subscription {sub.id} already exists") from None
        return sub.replace(etag=self._etag(result))

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        try:
            return self._sub(self._call(self._table("subscriptions").get_entity, subscription_id, SUB_ROW))
        except self._not_found:
            return None

    def callback_subscription_id(self, token: str) -> str | None:
        try:
            return self._call(self._table("callbacks").get_entity, token, CALLBACK_ROW).get("subscription_id")
        except self._not_found:
            return None

    def bury_callback(self, token: str, subscription_id: str, signing_key: str, buried_at: str) -> None:
        self._call(self._table("tombstones").upsert_entity, {"PartitionKey": token, "RowKey": TOMBSTONE_ROW,
                                                            "subscription_id": subscription_id, "signing_key": signing_key,
                                                            "buried_at": buried_at})

    def callback_tombstone(self, token: str) -> tuple[str, str] | None:
        try:
            entity = self._call(self._table("tombstones").get_entity, token, TOMBSTONE_ROW)
        except self._not_found:
            return None
        return entity.get("subscription_id"), entity.get("signing_key")

    def purge_tombstones(self, buried_before: str, limit: int) -> int:
        # A filtered scan of a small table (one row per unsubscribe, kept days), timer path only.
        # Before a tombstone goes, its subscription's delivery partition is emptied: a callback that
        # was in flight while the subscription was deleted may have recorded one after the delete,
        # and once the tombstone is gone the timer no longer visits that partition.
        table = self._table("tombstones")
        found = self._call(lambda: self._iter(table.query_entities(
            "buried_at lt @b", parameters={"b": buried_before}, select=["PartitionKey", "RowKey", "subscription_id"],
            results_per_page=min(limit, 1000)), limit))
        for entity in found:
            if entity.get("subscription_id") and self.get_subscription(entity["subscription_id"]) is None:
                self.delete_deliveries(entity["subscription_id"])
        return sum(self._delete_if_present(table, e["PartitionKey"], e["RowKey"], e.metadata.get("etag")) for e in found)

    def update_subscription(self, sub: Subscription) -> Subscription:
        # Management path only (state changes, key rotation), so a read to keep the index right is fine.
        current = self.get_subscription(sub.id)
        if current is None or current.etag != sub.etag:
            raise ConcurrencyConflict(f"subscription {sub.id} changed or vanished")
        if current.target_hash != sub.target_hash:
            self._index(sub)
        if current.callback_token != sub.callback_token:
            self._index_callback(sub)
        try:
            result = self._call(self._table("subscriptions").update_entity, self._sub_entity(sub), mode=self._replace,
                                etag=sub.etag, match_condition=self._if_not_modified)
        except (self._modified, self._not_found):
            raise ConcurrencyConflict(f"subscription {sub.id} changed or vanished") from None
        if current.target_hash != sub.target_hash:
            self._call(self._table("targets").delete_entity, current.target_hash, sub.id)
        if current.callback_token != sub.callback_token:
            self._unindex_callback(current.callback_token)
        return sub.replace(etag=self._etag(result))

    def delete_subscription(self, subscription_id: str, etag: str | None = None) -> None:
        sub = self.get_subscription(subscription_id)
        if sub is None:
            return
        if etag is not None and sub.etag != etag:
            raise ConcurrencyConflict(f"subscription {subscription_id} changed")
        # The target index row as it is now: a subscribe that takes the id once this record is gone
        # rewrites it (new ETag), and this delete must then leave it be.
        try:
            index_etag = self._call(self._table("targets").get_entity, sub.target_hash, subscription_id).metadata.get("etag")
        except self._not_found:
            index_etag = None
        try:
            self._call(self._table("subscriptions").delete_entity, subscription_id, SUB_ROW,
                       etag=sub.etag, match_condition=self._if_not_modified)
        except self._modified:
            if etag is not None:
                raise ConcurrencyConflict(f"subscription {subscription_id} changed") from None
            return self.delete_subscription(subscription_id)
        if index_etag:
            self._delete_if_present(self._table("targets"), sub.target_hash, subscription_id, index_etag)
        self._unindex_callback(sub.callback_token)
        self._delete_if_present(self._table("counts"), subscription_id, COUNTS_ROW)

    def add_filter_counts(self, subscription_id: str, matched: int, filtered: int) -> None:
        # Read, then write on that version (or insert-if-absent): several instances flushing at once
        # each retry on the other's ETag, so no count is lost. Batched by shared.counters.
        table = self._table("counts")
        for _ in range(8):
            try:
                row = self._call(table.get_entity, subscription_id, COUNTS_ROW)
            except self._not_found:
                try:
                    self._call(table.create_entity, {"PartitionKey": subscription_id, "RowKey": COUNTS_ROW,
                                                     "matched": matched, "filtered": filtered})
                    return
                except self._exists:
                    continue
            entity = {"PartitionKey": subscription_id, "RowKey": COUNTS_ROW, "matched": int(row.get("matched", 0)) + matched,
                      "filtered": int(row.get("filtered", 0)) + filtered}
            try:
                self._call(table.update_entity, entity, mode=self._replace, etag=row.metadata.get("etag"),
                           match_condition=self._if_not_modified)
                return
            except (self._modified, self._not_found):
                continue
        raise ConcurrencyConflict(f"filter counts of {subscription_id} kept changing")

    def filter_counts(self, subscription_id: str) -> tuple[int, int]:
        try:
            row = self._call(self._table("counts").get_entity, subscription_id, COUNTS_ROW)
        except self._not_found:
            return 0, 0
        return int(row.get("matched", 0)), int(row.get("filtered", 0))

    def list_subscriptions(self, limit: int, cursor: str | None = None,
                           owner_id: str | None = None) -> tuple[list[Subscription], str | None]:
        query, parameters = "PartitionKey gt @c", {"c": cursor or ""}
        if owner_id is not None:  # a filtered scan, on the management path only
            query, parameters = f"{query} and owner_id eq @o", {**parameters, "o": owner_id}
        rows = self._call(lambda: self._iter(self._table("subscriptions").query_entities(
            query, parameters=parameters, results_per_page=min(limit + 1, 1000)), limit + 1))
        subs = [self._sub(entity) for entity in rows]
        page = subs[:limit]
        return page, (page[-1].id if len(subs) > limit else None)

    @staticmethod
    def _iter(pages, count: int) -> list:
        out = []
        for entity in pages:
            out.append(entity)
            if len(out) >= count:
                break
        return out

    def find_subscriptions_by_target(self, target_hash: str) -> list[Subscription]:
        rows = self._call(lambda: list(self._table("targets").query_entities("PartitionKey eq @h", parameters={"h": target_hash})))
        subs = [self.get_subscription(row["RowKey"]) for row in rows]
        # A dangling index row (a crash mid-create/delete, or an old target) is skipped.
        return [s for s in subs if s is not None and s.target_hash == target_hash]

    # notes -----------------------------------------------------------------------------------
    def save_note(self, name: str, text: str) -> None:
        self._call(self._table("counts").upsert_entity, {"PartitionKey": NOTE_PARTITION, "RowKey": name, "text": text},
                   mode=self._replace)

    def read_note(self, name: str) -> str | None:
        try:
            return self._call(self._table("counts").get_entity, NOTE_PARTITION, name).get("text")
        except self._not_found:
            return None

    # accounts --------------------------------------------------------------------------------
    def _account(self, entity: Any) -> Account:
        return account_from_record(entity, entity["RowKey"], entity.metadata.get("etag"))

    def create_account(self, account: Account) -> Account:
        try:
            result = self._call(self._table("accounts").create_entity,
                                {"PartitionKey": ACCOUNT_PARTITION, "RowKey": account.name, **account_record(account)})
        except self._exists:
            raise ConcurrencyConflict(f"account {account.name} already exists") from None
        return account.replace(etag=self._etag(result))

    def get_account(self, name: str) -> Account | None:
        try:
            return self._account(self._call(self._table("accounts").get_entity, ACCOUNT_PARTITION, name))
        except self._not_found:
            return None

    def list_accounts(self) -> list[Account]:
        rows = self._call(lambda: list(self._table("accounts").query_entities("PartitionKey eq @p",
                                                                               parameters={"p": ACCOUNT_PARTITION})))
        return sorted((self._account(row) for row in rows), key=lambda a: a.name)

    def update_account(self, account: Account) -> Account:
        try:
            result = self._call(self._table("accounts").update_entity,
                                {"PartitionKey": ACCOUNT_PARTITION, "RowKey": account.name, **account_record(account)},
                                mode=self._replace, etag=account.etag, match_condition=self._if_not_modified)
        except (self._modified, self._not_found):
            raise ConcurrencyConflict(f"account {account.name} changed or vanished") from None
        return account.replace(etag=self._etag(result))

    def delete_account(self, name: str) -> None:
        self._delete_if_present(self._table("accounts"), ACCOUNT_PARTITION, name)

    # deliveries ------------------------------------------------------------------------------
    @staticmethod
    def _split(delivery_id: str) -> tuple[str, str]:
        partition, _, row = delivery_id.partition("-")
        return partition, row

    @staticmethod
    def _index_key(d: Delivery, row: str) -> str:
        """The delivery's one row in its partition's index: when it is due (pending) or when it settled."""
        if d.status == DeliveryStatus.PENDING:
            return f"{DUE}{d.next_attempt_at}|{row}"
        return f"{SETTLED}{d.status.value}|{d.updated_at}|{row}"

    def _delivery_entity(self, d: Delivery, index_key: str) -> dict:
        partition, row = self._split(d.id)
        chunks = [d.body[i:i + BODY_CHUNK] for i in range(0, len(d.body), BODY_CHUNK)] or [b""]
        if len(chunks) > MAX_BODY_CHUNKS:
            raise ValueError("delivery body too large for Table Storage")
        entity = {"PartitionKey": partition, "RowKey": row, **delivery_record(d), "body_parts": len(chunks), "index_key": index_key}
        for i, chunk in enumerate(chunks):
            entity[f"body{i}"] = chunk
        return entity

    @staticmethod
    def _delivery(entity: Any) -> Delivery:
        body = b"".join(bytes(entity.get(f"body{i}") or b"") for i in range(int(entity.get("body_parts", 1))))
        record = {**entity, "subscription_id": entity["PartitionKey"]}
        delivery = delivery_from_record(record, f"{entity['PartitionKey']}-{entity['RowKey']}", body, entity.metadata.get("etag"))
        return delivery.replace(index_key=entity.get("index_key") or None)

    def _transact(self, operations: list) -> list:
        try:
            return self._call(self._table("deliveries").submit_transaction, operations)
        except self._batch_error as exc:
            raise _Failed(getattr(exc, "index", 0), exc) from None
        except (self._exists, self._modified, self._not_found) as exc:
            raise _Failed(0, exc) from None

    def record_delivery(self, delivery: Delivery) -> Delivery | None:
        # One entity-group transaction: the delivery and its index row, or neither.
        partition, row = self._split(delivery.id)
        key = self._index_key(delivery, row)
        try:
            result = self._transact([("create", self._delivery_entity(delivery, key)),
                                     ("create", {"PartitionKey": partition, "RowKey": key})])
        except _Failed:
            return None  # the delivery exists (a duplicate); an index row can only exist with its delivery
        return delivery.replace(etag=self._etag(result[0]), index_key=key)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        partition, row = self._split(delivery_id)
        try:
            return self._delivery(self._call(self._table("deliveries").get_entity, partition, row))
        except self._not_found:
            return None

    def update_delivery(self, delivery: Delivery) -> Delivery:
        # One entity-group transaction: the delivery (if its ETag still matches), its new index row
        # (written even when the key is the same, so its ETag changes: a purge that read the old one
        # then leaves this delivery alone), and the old index row gone.
        partition, row = self._split(delivery.id)
        key = self._index_key(delivery, row)
        update = ("update", self._delivery_entity(delivery, key),
                  {"mode": self._replace, "etag": delivery.etag, "match_condition": self._if_not_modified})
        operations: list[tuple] = [update, ("upsert", {"PartitionKey": partition, "RowKey": key}, {"mode": self._replace})]
        if delivery.index_key and delivery.index_key != key:
            operations.append(("delete", {"PartitionKey": partition, "RowKey": delivery.index_key}))
        try:
            result = self._transact(operations)
        except _Failed as failed:
            if failed.index != 2:
                raise ConcurrencyConflict(f"delivery {delivery.id} changed or vanished") from None
            # The old index row was already gone (a partial delete_deliveries): nothing to remove.
            try:
                result = self._transact(operations[:2])
            except _Failed:
                raise ConcurrencyConflict(f"delivery {delivery.id} changed or vanished") from None
        return delivery.replace(etag=self._etag(result[0]), index_key=key)

    def list_deliveries(self, subscription_id: str, limit: int, cursor: str | None = None) -> tuple[list[Delivery], str | None]:
        after = self._split(cursor)[1] if cursor else ""
        query = "PartitionKey eq @p and RowKey gt @r and RowKey lt @i"
        rows = self._call(lambda: self._iter(self._table("deliveries").query_entities(
            query, parameters={"p": subscription_id, "r": after, "i": INDEX}, results_per_page=min(limit + 1, 1000)), limit + 1))
        items = [self._delivery(e) for e in rows]
        page = items[:limit]
        return page, (page[-1].id if len(items) > limit else None)

    # The timer's index reads -------------------------------------------------------------------
    # Every delivery has exactly one index row in its own partition (same entity-group transaction),
    # so the timer finds what is due or expired with one range query per partition — requests grow
    # with the subscriptions and with what is due/expired, never with what is stored. The partitions
    # are the subscriptions' ids plus those of subscriptions deleted within the tombstone week (a
    # callback in flight while its subscription was deleted may have left a delivery behind).
    def _partitions(self) -> list[str]:
        subs = self._call(lambda: [e["PartitionKey"] for e in self._table("subscriptions").query_entities(
            "RowKey eq @r", parameters={"r": SUB_ROW}, select=["PartitionKey"], results_per_page=1000)])
        gone = self._call(lambda: [e.get("subscription_id") for e in self._table("tombstones").query_entities(
            "RowKey eq @r", parameters={"r": TOMBSTONE_ROW}, select=["subscription_id"], results_per_page=1000)])
        return sorted(set(subs) | {g for g in gone if g})

    def _index_range(self, partition: str, low: str, high: str, inclusive: bool, limit: int) -> list:
        query = f"PartitionKey eq @p and RowKey ge @lo and RowKey {'le' if inclusive else 'lt'} @hi"
        return self._call(lambda: self._iter(self._table("deliveries").query_entities(
            query, parameters={"p": partition, "lo": low, "hi": high}, select=["PartitionKey", "RowKey"],
            results_per_page=min(limit, 1000)), limit))

    def _adopt_legacy(self) -> None:
        """Deliveries written before the index (no ``index_key``) get their index row, once per
        store: a full scan the first time a new version's timer runs, then a marker (one point read
        per process) says it is done. Rows written by this version are indexed when written."""
        if self._adopted:
            return
        table = self._table("deliveries")
        try:
            self._call(table.get_entity, META_PARTITION, ADOPTED_ROW)
        except self._not_found:
            rows = self._call(lambda: list(table.query_entities(
                "RowKey lt @i", parameters={"i": INDEX}, results_per_page=1000,
                select=["PartitionKey", "RowKey", "status", "next_attempt_at", "updated_at", "index_key"])))
            for entity in rows:
                if entity.get("index_key") or entity["PartitionKey"] == META_PARTITION:
                    continue
                delivery = Delivery(id=f"{entity['PartitionKey']}-{entity['RowKey']}", subscription_id=entity["PartitionKey"],
                                    event="", event_key="", body=b"", status=DeliveryStatus(entity["status"]),
                                    next_attempt_at=entity["next_attempt_at"], updated_at=entity["updated_at"])
                key = self._index_key(delivery, entity["RowKey"])
                try:  # conditional on the version read: a delivery changed since is indexed by its writer
                    self._transact([("update", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "index_key": key},
                                     {"mode": self._merge, "etag": entity.metadata.get("etag"), "match_condition": self._if_not_modified}),
                                    ("upsert", {"PartitionKey": entity["PartitionKey"], "RowKey": key}, {"mode": self._replace})])
                except _Failed:
                    pass
            self._call(table.upsert_entity, {"PartitionKey": META_PARTITION, "RowKey": ADOPTED_ROW, "rows": len(rows)})
        self._adopted = True

    def due_deliveries(self, now: str, limit: int) -> list[Delivery]:
        # The timer's retry safety net and `redeliver`, never the callback path.
        self._adopt_legacy()
        found = []
        for partition in self._partitions():
            found.extend(self._index_range(partition, DUE, f"{DUE}{now}|{INDEX}", True, limit))
        found.sort(key=lambda e: (e["RowKey"], e["PartitionKey"]))
        due = []
        for entity in found[:limit]:
            partition, key = entity["PartitionKey"], entity["RowKey"]
            delivery = self.get_delivery(f"{partition}-{key.rsplit('|', 1)[1]}")
            if delivery is None or delivery.index_key != key:  # a row a partial delete left behind
                self._delete_if_present(self._table("deliveries"), partition, key, entity.metadata.get("etag"))
            elif delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at <= now:
                due.append(delivery)
        return due

    def delivery_backlog(self) -> dict[str, int]:
        """Index rows by key range, per subscription (the timer's reads): what is pending or dead, not what is stored."""
        self._adopt_legacy()
        counts = {"pending": 0, "dead": 0}
        for partition in self._partitions():
            counts["pending"] += len(self._index_range(partition, DUE, f"{DUE}{INDEX}", False, 10 ** 9))
            dead = f"{SETTLED}{DeliveryStatus.DEAD.value}|"
            counts["dead"] += len(self._index_range(partition, dead, f"{dead}{INDEX}", False, 10 ** 9))
        return counts

    def delete_deliveries(self, subscription_id: str) -> int:
        # One partition: a keys-only partition query, then batched deletes, in key order: the
        # deliveries before the index rows (which sort last), so an interrupted delete leaves at
        # most index rows without a delivery, which the timer's reads drop.
        table = self._table("deliveries")
        keys = self._call(lambda: list(table.query_entities(
            "PartitionKey eq @p", parameters={"p": subscription_id}, select=["PartitionKey", "RowKey"], results_per_page=1000)))
        keys.sort(key=lambda e: e["RowKey"])
        for start in range(0, len(keys), BATCH):
            operations = [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in keys[start:start + BATCH]]
            try:
                self._call(table.submit_transaction, operations)
            except (self._not_found, self._exists, self._modified, self._batch_error):
                for _, entity in operations:  # one vanished meanwhile: the rest one by one
                    self._delete_if_present(table, entity["PartitionKey"], entity["RowKey"])
        return sum(1 for e in keys if not e["RowKey"].startswith(INDEX))

    def _delete_if_present(self, table, partition: str, row: str, etag: str | None = None) -> bool:
        conditions = {"etag": etag, "match_condition": self._if_not_modified} if etag else {}
        try:
            self._call(table.delete_entity, partition, row, **conditions)
        except (self._not_found, self._modified):
            return False
        return True

    def purge_deliveries(self, status: DeliveryStatus, updated_before: str, limit: int) -> int:
        # The timer's purge, never the callback path: per partition, one range query over the index
        # rows of deliveries in `status` settled before the cutoff, then entity-group transactions of
        # up to 50 pairs (index row + delivery). Each pair's index row is deleted on the ETag read:
        # a delivery replayed meanwhile rewrote its index row, so its transaction fails as a whole
        # and that chunk goes pair by pair (the replayed one stays).
        self._adopt_legacy()
        prefix = f"{SETTLED}{status.value}|"
        deleted = 0
        for partition in self._partitions():
            if deleted >= limit:
                break
            rows = self._index_range(partition, prefix, f"{prefix}{updated_before}", False, limit - deleted)
            for start in range(0, len(rows), BATCH // 2):
                chunk = rows[start:start + BATCH // 2]
                try:
                    self._transact([op for e in chunk for op in self._purge_pair(e)])
                    deleted += len(chunk)
                except _Failed:
                    deleted += sum(self._purge_one(e) for e in chunk)
        return deleted

    def _purge_pair(self, index_row: Any) -> list:
        partition, key = index_row["PartitionKey"], index_row["RowKey"]
        return [("delete", {"PartitionKey": partition, "RowKey": key}, {"etag": index_row.metadata.get("etag"),
                                                                         "match_condition": self._if_not_modified}),
                ("delete", {"PartitionKey": partition, "RowKey": key.rsplit("|", 1)[1]})]

    def _purge_one(self, index_row: Any) -> bool:
        try:
            self._transact(self._purge_pair(index_row))
            return True
        except _Failed as failed:
            if failed.index == 1:  # the delivery was already gone: drop its dangling index row
                self._delete_if_present(self._table("deliveries"), index_row["PartitionKey"], index_row["RowKey"],
                                        index_row.metadata.get("etag"))
            return False

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self.service.close()
