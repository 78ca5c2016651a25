"""Per-subscription filter counts (issue 25): how many events a subscription's filters (and its
``exclude_rescheduled``) let through and left out, shown on the subscription.

Counting must not cost the callback path a storage request per event, so each worker process adds
up its counts in memory and writes them to the store at most once per ``FLUSH_SECONDS`` per
subscription (on a callback of that subscription), on the timer, on a read of that subscription, and
when the process closes. The store adds them on a version read (several instances never lose each
other's). A process that dies unflushed loses at most that minute of counts: the figures are for
makers deciding whether a filter works, not billing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import BridgeError
from .store.base import Store

log = logging.getLogger("shared.counters")

FLUSH_SECONDS = 60.0


class FilterCounter:
    def __init__(self, store: Store, monotonic: Callable[[], float] = time.monotonic, flush_seconds: float = FLUSH_SECONDS):
        self.store = store
        self.monotonic = monotonic
        self.flush_seconds = flush_seconds
        self._pending: dict[str, list[int]] = {}
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def count(self, subscription_id: str, matched: bool) -> None:
        """One event through (``matched``) or left out; flushed once the oldest unflushed count of
        this subscription is ``flush_seconds`` old."""
        now = self.monotonic()
        with self._lock:
            counts = self._pending.setdefault(subscription_id, [0, 0])
            counts[0 if matched else 1] += 1
            due = now - self._since.setdefault(subscription_id, now) >= self.flush_seconds
        if due:
            self.flush(subscription_id)

    def flush(self, subscription_id: str | None = None) -> None:
        """Write this process's counts (of one subscription, or all) to the store; on a store failure
        they stay pending for the next flush."""
        with self._lock:
            ids = [subscription_id] if subscription_id is not None else list(self._pending)
            taken = {i: self._pending.pop(i) for i in ids if i in self._pending}
            for i in taken:
                self._since.pop(i, None)
        for sub_id, (matched, filtered) in taken.items():
            try:
                self.store.add_filter_counts(sub_id, matched, filtered)
            except BridgeError as exc:
                log.warning("filter counts outcome=deferred subscription=%s error=%s", sub_id, exc.code)
                with self._lock:
                    counts = self._pending.setdefault(sub_id, [0, 0])
                    counts[0] += matched
                    counts[1] += filtered
                    self._since.setdefault(sub_id, self.monotonic())

    def counts(self, subscription_id: str) -> dict[str, int]:
        """The subscription's counts as stored, after this process's own are flushed."""
        self.flush(subscription_id)
        matched, filtered = self.store.filter_counts(subscription_id)
        return {"matched": matched, "filtered_out": filtered}
