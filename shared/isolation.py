"""What keeps Calendly's callback path cheap and one target's trouble its own.

- ``SubscriptionCache``: the callback path's subscription records, in this worker's memory for
  ``SUBSCRIPTION_CACHE_SECONDS``, so a forwarded callback costs two storage requests (insert the
  delivery if absent, update it) instead of four. Every change this worker makes to a subscription
  drops its entry at once (``ChangeNotifyingStore``); another worker sees it within the TTL. That
  is the bound on how long a just-deleted or retired subscription may still forward elsewhere:
  well under the time Calendly takes to stop calling a deleted hook's URL (an unsubscribe deletes
  the hook, then the record). A signature that fails against a cached record (the key was rotated
  by reconcile on another worker) is checked once more against the stored record.
- ``Bulkhead``: at most ``IN_REQUEST_PER_TARGET`` in-request attempts in flight per target; past
  it the event is recorded, Calendly is answered ``202`` at once and the retry queue delivers it,
  so one slow target holds at most that many worker threads, whatever Calendly sends it.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cachetools import TTLCache

from .models import Subscription

SUBSCRIPTION_CACHE_SECONDS = 10.0
IN_REQUEST_PER_TARGET = 4


class SubscriptionCache:
    """Callback token -> subscription record, for the callback path only (never for management,
    whose compare-and-set writes must start from the stored version)."""

    def __init__(self, ttl: float = SUBSCRIPTION_CACHE_SECONDS, maxsize: int = 10_000,
                 timer: Callable[[], float] = time.monotonic):
        self._entries: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        self._lock = threading.Lock()

    def get(self, token: str) -> Subscription | None:
        with self._lock:
            return self._entries.get(token)

    def put(self, token: str, sub: Subscription) -> None:
        with self._lock:
            self._entries[token] = sub

    def forget(self, subscription_id: str) -> None:
        """Drop every entry of the subscription (its token path and its legacy id path)."""
        with self._lock:
            for token in [t for t, sub in self._entries.items() if sub.id == subscription_id]:
                self._entries.pop(token, None)


class ChangeNotifyingStore:
    """The store, telling ``on_change(subscription_id)`` after every subscription write this
    worker makes (create, update, delete); everything else passes through untouched."""

    def __init__(self, inner: Any, on_change: Callable[[str], None]):
        self._inner = inner
        self._on_change = on_change

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_subscription(self, sub: Subscription) -> Subscription:
        try:
            return self._inner.create_subscription(sub)
        finally:
            self._on_change(sub.id)

    def update_subscription(self, sub: Subscription) -> Subscription:
        try:
            return self._inner.update_subscription(sub)
        finally:
            self._on_change(sub.id)

    def delete_subscription(self, subscription_id: str, etag: str | None = None) -> None:
        try:
            return self._inner.delete_subscription(subscription_id, etag)
        finally:
            self._on_change(subscription_id)


class Bulkhead:
    """At most ``limit`` concurrent in-request attempts per key (a target's fingerprint)."""

    def __init__(self, limit: int = IN_REQUEST_PER_TARGET):
        self.limit = limit
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[bool]:
        """Yields True with a slot held for the block, or False (no slot: defer to the retry queue)."""
        with self._lock:
            taken = self._in_flight.get(key, 0)
            if taken >= self.limit:
                granted = False
            else:
                self._in_flight[key] = taken + 1
                granted = True
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    left = self._in_flight[key] - 1
                    if left:
                        self._in_flight[key] = left
                    else:
                        del self._in_flight[key]

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)
