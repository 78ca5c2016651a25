"""Embedded SQLite store: the local default (no Azure account needed)."""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    target_hash TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    callback_token TEXT
);
CREATE INDEX IF NOT EXISTS subscriptions_by_target ON subscriptions(target_hash);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    status TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    data TEXT NOT NULL,
    body BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON deliveries(subscription_id, id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at);
CREATE TABLE IF NOT EXISTS tombstones (
    token TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    buried_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones(buried_at);
CREATE TABLE IF NOT EXISTS notes (
    name TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS filter_counts (
    subscription_id TEXT PRIMARY KEY,
    matched INTEGER NOT NULL,
    filtered INTEGER NOT NULL
);
"""
# Columns later versions added, with the indexes on them (created once the columns exist).
ADDED_COLUMNS = {"subscriptions": ("callback_token",), "deliveries": ("updated_at",)}
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_by_callback ON subscriptions(callback_token);
CREATE INDEX IF NOT EXISTS deliveries_settled ON deliveries(status, updated_at);
"""

class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str):
        self.path = path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"the SQLite store at {path} could not be created: {exc.strerror}") from None
        self._local = threading.local()
        # One writer at a time inside this process: SQLite's busy handler would otherwise
        # sleep in growing steps under contention (a p99 cliff at 16 concurrent callbacks).
        self._write_lock = threading.Lock()
        try:
            self._connection().executescript(SCHEMA)
            self._upgrade()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store at {path} could not be opened: {exc}") from exc

    def _upgrade(self) -> None:
        """Add the columns a store file written by an older version lacks, then their indexes."""
        db = self._connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                added = set()
                for table, columns in ADDED_COLUMNS.items():
                    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    for column in columns:
                        if column not in present:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                            added.add(column)
                if "updated_at" in added:  # older rows kept it only in their JSON
                    for delivery_id, data in db.execute("SELECT id, data FROM deliveries").fetchall():
                        db.execute("UPDATE deliveries SET updated_at = ? WHERE id = ?",
                                   (json.loads(data).get("updated_at", ""), delivery_id))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        db.executescript(INDEXES)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=3, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._write_lock:
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store at {self.path} failed: {exc}") from exc

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store at {self.path} failed: {exc}") from exc

    def ping(self) -> None:
        self._read("SELECT 1")

    # Subscriptions -------------------------------------------------------
    @staticmethod
    def _sub_row(sub: Subscription) -> str:
        return json.dumps(subscription_record(sub), ensure_ascii=False)

    @staticmethod
    def _sub(row: tuple) -> Subscription:
        sub_id, data, version = row
        return subscription_from_record(json.loads(data), sub_id, str(version))

    def create_subscription(self, sub: Subscription) -> Subscription:
        # A random first version: a record deleted and made again under the same id never
        # repeats an ETag the old one had, so a stale conditional write cannot hit the new one.
        version = secrets.randbelow(2 ** 62)
        with self._tx() as db:
            try:
                db.execute("INSERT INTO subscriptions (id, target_hash, data, version, callback_token) VALUES (?, ?, ?, ?, ?)",
                           (sub.id, sub.target_hash, self._sub_row(sub), version, sub.callback_token))
            except sqlite3.IntegrityError:
                raise ConcurrencyConflict(f"subscription {sub.id} already exists") from None
        return sub.replace(etag=str(version))

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        rows = self._read("SELECT id, data, version FROM subscriptions WHERE id = ?", (subscription_id,))
        return self._sub(rows[0]) if rows else None

    def callback_subscription_id(self, token: str) -> str | None:
        rows = self._read("SELECT id FROM subscriptions WHERE callback_token = ?", (token,))
        return rows[0][0] if rows else None

    def bury_callback(self, token: str, subscription_id: str, signing_key: str, buried_at: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO tombstones (token, subscription_id, signing_key, buried_at) VALUES (?, ?, ?, ?)",
                       (token, subscription_id, signing_key, buried_at))

    def callback_tombstone(self, token: str) -> tuple[str, str] | None:
        rows = self._read("SELECT subscription_id, signing_key FROM tombstones WHERE token = ?", (token,))
        return (rows[0][0], rows[0][1]) if rows else None

    def purge_tombstones(self, buried_before: str, limit: int) -> int:
        # As on Table Storage: a delivery a callback in flight recorded after its subscription was
        # deleted goes with the tombstone.
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE subscription_id IN (SELECT subscription_id FROM tombstones WHERE buried_at < ? "
                       "LIMIT ?) AND subscription_id NOT IN (SELECT id FROM subscriptions)", (buried_before, limit))
            return db.execute("DELETE FROM tombstones WHERE token IN (SELECT token FROM tombstones WHERE buried_at < ? LIMIT ?)",
                              (buried_before, limit)).rowcount

    def update_subscription(self, sub: Subscription) -> Subscription:
        version = int(sub.etag or 0)
        with self._tx() as db:
            try:
                cursor = db.execute("UPDATE subscriptions SET data = ?, target_hash = ?, callback_token = ?, version = version + 1 "
                                    "WHERE id = ? AND version = ?",
                                    (self._sub_row(sub), sub.target_hash, sub.callback_token, sub.id, version))
            except sqlite3.IntegrityError:
                raise ConcurrencyConflict(f"subscription {sub.id}: its callback token is taken") from None
            if cursor.rowcount != 1:
                raise ConcurrencyConflict(f"subscription {sub.id} changed or vanished")
        return sub.replace(etag=str(version + 1))

    def delete_subscription(self, subscription_id: str, etag: str | None = None) -> None:
        with self._tx() as db:
            if etag is None:
                deleted = db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount
            else:
                deleted = db.execute("DELETE FROM subscriptions WHERE id = ? AND version = ?", (subscription_id, int(etag))).rowcount
                if not deleted and db.execute("SELECT 1 FROM subscriptions WHERE id = ?", (subscription_id,)).fetchone():
                    raise ConcurrencyConflict(f"subscription {subscription_id} changed")
            if deleted:
                db.execute("DELETE FROM filter_counts WHERE subscription_id = ?", (subscription_id,))

    def add_filter_counts(self, subscription_id: str, matched: int, filtered: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO filter_counts (subscription_id, matched, filtered) VALUES (?, ?, ?) ON CONFLICT(subscription_id) "
                       "DO UPDATE SET matched = matched + excluded.matched, filtered = filtered + excluded.filtered",
                       (subscription_id, matched, filtered))

    def filter_counts(self, subscription_id: str) -> tuple[int, int]:
        rows = self._read("SELECT matched, filtered FROM filter_counts WHERE subscription_id = ?", (subscription_id,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def list_subscriptions(self, limit: int, cursor: str | None = None,
                           owner_id: str | None = None) -> tuple[list[Subscription], str | None]:
        if owner_id is None:
            rows = self._read("SELECT id, data, version FROM subscriptions WHERE id > ? ORDER BY id LIMIT ?", (cursor or "", limit + 1))
        else:  # management path only: a scan of the JSON column is fine at this scale
            rows = self._read("SELECT id, data, version FROM subscriptions WHERE id > ? AND json_extract(data, '$.owner_id') = ? "
                              "ORDER BY id LIMIT ?", (cursor or "", owner_id, limit + 1))
        subs = [self._sub(r) for r in rows[:limit]]
        return subs, (subs[-1].id if len(rows) > limit else None)

    def find_subscriptions_by_target(self, target_hash: str) -> list[Subscription]:
        rows = self._read("SELECT id, data, version FROM subscriptions WHERE target_hash = ? ORDER BY id", (target_hash,))
        return [self._sub(r) for r in rows]

    # Notes ---------------------------------------------------------------
    def save_note(self, name: str, text: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO notes (name, text) VALUES (?, ?)", (name, text))

    def read_note(self, name: str) -> str | None:
        rows = self._read("SELECT text FROM notes WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    # Accounts ------------------------------------------------------------
    def create_account(self, account: Account) -> Account:
        version = secrets.randbelow(2 ** 62)
        with self._tx() as db:
            try:
                db.execute("INSERT INTO accounts (name, data, version) VALUES (?, ?, ?)",
                           (account.name, json.dumps(account_record(account), ensure_ascii=False), version))
            except sqlite3.IntegrityError:
                raise ConcurrencyConflict(f"account {account.name} already exists") from None
        return account.replace(etag=str(version))

    def get_account(self, name: str) -> Account | None:
        rows = self._read("SELECT name, data, version FROM accounts WHERE name = ?", (name,))
        return account_from_record(json.loads(rows[0][1]), rows[0][0], str(rows[0][2])) if rows else None

    def list_accounts(self) -> list[Account]:
        rows = self._read("SELECT name, data, version FROM accounts ORDER BY name")
        return [account_from_record(json.loads(data), name, str(version)) for name, data, version in rows]

    def update_account(self, account: Account) -> Account:
        version = int(account.etag or 0)
        with self._tx() as db:
            cursor = db.execute("UPDATE accounts SET data = ?, version = version + 1 WHERE name = ? AND version = ?",
                                (json.dumps(account_record(account), ensure_ascii=False), account.name, version))
            if cursor.rowcount != 1:
                raise ConcurrencyConflict(f"account {account.name} changed or vanished")
        return account.replace(etag=str(version + 1))

    def delete_account(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM accounts WHERE name = ?", (name,))

    # Deliveries ----------------------------------------------------------
    @staticmethod
    def _delivery_row(d: Delivery) -> str:
        return json.dumps(delivery_record(d), ensure_ascii=False)

    @staticmethod
    def _delivery(row: tuple) -> Delivery:
        delivery_id, subscription_id, status, next_attempt_at, data, body, version = row
        # The indexed columns are the truth for what they index (and older rows kept them only there).
        record = {**json.loads(data), "subscription_id": subscription_id, "status": status, "next_attempt_at": next_attempt_at}
        return delivery_from_record(record, delivery_id, bytes(body), str(version))

    _DELIVERY_COLUMNS = "id, subscription_id, status, next_attempt_at, data, body, version"

    def record_delivery(self, delivery: Delivery) -> Delivery | None:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (id, subscription_id, status, next_attempt_at, data, body, version, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (delivery.id, delivery.subscription_id, delivery.status.value, delivery.next_attempt_at, self._delivery_row(delivery),
                 delivery.body, delivery.updated_at))
        return delivery.replace(etag="1") if cursor.rowcount == 1 else None

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = self._read(f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,))
        return self._delivery(rows[0]) if rows else None

    def update_delivery(self, delivery: Delivery) -> Delivery:
        version = int(delivery.etag or 0)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, data = ?, updated_at = ?, version = version + 1 "
                "WHERE id = ? AND version = ?",
                (delivery.status.value, delivery.next_attempt_at, self._delivery_row(delivery), delivery.updated_at, delivery.id, version))
            if cursor.rowcount != 1:
                raise ConcurrencyConflict(f"delivery {delivery.id} changed or vanished")
        return delivery.replace(etag=str(version + 1))

    def list_deliveries(self, subscription_id: str, limit: int, cursor: str | None = None) -> tuple[list[Delivery], str | None]:
        rows = self._read(f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries WHERE subscription_id = ? AND id > ? ORDER BY id LIMIT ?",
                          (subscription_id, cursor or "", limit + 1))
        items = [self._delivery(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    def due_deliveries(self, now: str, limit: int) -> list[Delivery]:
        rows = self._read(f"SELECT {self._DELIVERY_COLUMNS} FROM deliveries "
                          "WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                          (DeliveryStatus.PENDING.value, now, limit))
        return [self._delivery(r) for r in rows]

    def delivery_backlog(self) -> dict[str, int]:
        counts = dict(self._read("SELECT status, COUNT(*) FROM deliveries WHERE status IN ('pending', 'dead') GROUP BY status"))
        return {"pending": int(counts.get("pending", 0)), "dead": int(counts.get("dead", 0))}

    def delete_deliveries(self, subscription_id: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM deliveries WHERE subscription_id = ?", (subscription_id,)).rowcount

    def purge_deliveries(self, status: DeliveryStatus, updated_before: str, limit: int) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status = ? AND updated_at < ? "
                              "ORDER BY updated_at LIMIT ?)", (status.value, updated_before, limit)).rowcount

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
