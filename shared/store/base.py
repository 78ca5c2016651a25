"""The store interface every backend implements (SQLite locally, Table Storage on Azure).

Everything on the Calendly callback path is a point read or an insert-if-absent:
``callback_subscription_id``, ``get_subscription``, ``record_delivery``, ``update_delivery``.
Scans (``due_deliveries``, ``purge_deliveries``) belong to the timer and the commands only.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..models import Account, Delivery, DeliveryStatus, Subscription


class Store(Protocol):
    name: str

    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""

    # Subscriptions
    def create_subscription(self, sub: Subscription) -> Subscription:
        """Insert; raise ConcurrencyConflict when the id exists. Returns it with its etag."""

    def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    def callback_subscription_id(self, token: str) -> str | None:
        """The id of the subscription whose callback path carries ``token`` (a point read). A
        token belongs to one record for its whole life, so a found id may be cached; the caller
        still checks the record it reads carries the token (a record deleted since answers 404)."""

    def update_subscription(self, sub: Subscription) -> Subscription:
        """Replace if ``sub.etag`` still matches; raise ConcurrencyConflict otherwise."""

    def delete_subscription(self, subscription_id: str, etag: str | None = None) -> None:
        """Delete; no error when already gone. With ``etag``: only that version of the record,
        else ConcurrencyConflict (it changed, or a new subscribe took the id)."""

    def list_subscriptions(self, limit: int, cursor: str | None = None,
                           owner_id: str | None = None) -> tuple[list[Subscription], str | None]:
        """A page in id order; ``owner_id``: only subscriptions of that owner (an Entra object id)."""

    def find_subscriptions_by_target(self, target_hash: str) -> list[Subscription]: ...

    # Tombstones: callback paths of deleted subscriptions, so Calendly can be told 410 (delete the hook)
    def bury_callback(self, token: str, subscription_id: str, signing_key: str, buried_at: str) -> None:
        """Remember that ``token``'s subscription was deleted, with the key its hook signs with."""

    def callback_tombstone(self, token: str) -> tuple[str, str] | None:
        """(subscription id, signing key) of a deleted subscription's callback path, or None (a point read)."""

    def purge_tombstones(self, buried_before: str, limit: int) -> int:
        """Forget at most ``limit`` tombstones buried before ``buried_before``; returns how many. Timer path only."""

    # Filter counts: how many events a subscription's filters let through and left out
    def add_filter_counts(self, subscription_id: str, matched: int, filtered: int) -> None:
        """Add to the subscription's counts (created at zero). Never on every callback: shared.counters batches."""

    def filter_counts(self, subscription_id: str) -> tuple[int, int]:
        """(matched, filtered) so far; (0, 0) when none were counted."""

    # Accounts: the Calendly accounts an admin declared (shared.accounts); never a token
    def create_account(self, account: Account) -> Account:
        """Insert; raise ConcurrencyConflict when the name exists. Returns it with its etag."""

    def get_account(self, name: str) -> Account | None: ...

    def list_accounts(self) -> list[Account]:
        """Every declared account, by name."""

    def update_account(self, account: Account) -> Account:
        """Replace if ``account.etag`` still matches; raise ConcurrencyConflict otherwise."""

    def delete_account(self, name: str) -> None:
        """Delete; no error when already gone."""

    # Notes: small JSON texts the bridge keeps about itself (the last reconcile's summary)
    def save_note(self, name: str, text: str) -> None:
        """Keep ``text`` (at most 32 KiB) under ``name``, replacing what was there."""

    def read_note(self, name: str) -> str | None: ...

    # Deliveries
    def record_delivery(self, delivery: Delivery) -> Delivery | None:
        """Insert-if-absent: the recorded delivery (with its etag), or None when the id exists (a duplicate)."""

    def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    def update_delivery(self, delivery: Delivery) -> Delivery:
        """Replace if ``delivery.etag`` still matches; raise ConcurrencyConflict otherwise."""

    def list_deliveries(self, subscription_id: str, limit: int, cursor: str | None = None) -> tuple[list[Delivery], str | None]: ...

    def due_deliveries(self, now: str, limit: int) -> Iterable[Delivery]:
        """Pending deliveries whose ``next_attempt_at`` is at or before ``now`` (``now`` may be far future for 'all'),
        oldest first. Like ``purge_deliveries``, it covers the deliveries of every stored subscription and of
        those deleted within the tombstone week; ``purge_tombstones`` empties a deleted one's deliveries."""

    def delivery_backlog(self) -> dict[str, int]:
        """{"pending": n, "dead": n} over every subscription (the console's admin view; never the callback path)."""

    def delete_deliveries(self, subscription_id: str) -> int:
        """Delete every delivery of the subscription (its log and payloads); returns how many."""

    def purge_deliveries(self, status: DeliveryStatus, updated_before: str, limit: int) -> int:
        """Delete at most ``limit`` deliveries in ``status`` last changed before ``updated_before``
        (a record changed meanwhile is left alone); returns how many. Timer path only."""

    def close(self) -> None: ...
