"""Retention: invitees' personal data (the event payloads) kept only as long as needed.

- delivered (and discarded) deliveries are purged, payload and record, ``DELIVERY_RETENTION_HOURS``
  after their last attempt (at least 25 h: the record is also the dedupe key, and Calendly retries
  a failed call for 24 h);
- dead deliveries keep their payload for replay for ``DEAD_DELIVERY_RETENTION_DAYS``, then go too;
- pending deliveries are kept until they are delivered or dead.
Unsubscribe and retire delete a subscription's deliveries at once (shared/subscriptions.py).

``purge`` runs on the reconcile timer (function_app) and in the local host's background loop,
never on the callback path. It works in rounds of ``batch`` records per status (Table Storage
deletes them in entity-group transactions of up to 100 per subscription), round after round while
a status still has expired records, up to ``per_run`` records per status and ``budget_seconds`` of
wall time per run: a backlog far above the design rate (README "Scale") is worked off in a few runs,
and a run always ends well inside the timer's 5-minute limit.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from .errors import BridgeError
from .models import Clock, DeliveryStatus, isotime, utcnow
from .store.base import Store

log = logging.getLogger("shared.retention")

BATCH = 1000            # records per status and round: one query page
PER_RUN = 200_000       # records per status and run: 800,000 an hour per status on the 15-minute timer
BUDGET_SECONDS = 120.0  # wall time per run, well inside host.json's functionTimeout (5 min)
# A deleted subscription's callback path answers 410 this long: Calendly retries a failed call for
# 24 h, then disables the hook, so a week covers every call it can still make.
TOMBSTONE_DAYS = 7


class RetentionService:
    def __init__(self, store: Store, delivered_hours: int, dead_days: int, clock: Clock = utcnow, batch: int = BATCH,
                 per_run: int = PER_RUN, budget_seconds: float = BUDGET_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store = store
        self.delivered = timedelta(hours=delivered_hours)
        self.dead = timedelta(days=dead_days)
        self.clock = clock
        self.batch = batch
        self.per_run = per_run
        self.budget_seconds = budget_seconds
        self.monotonic = monotonic

    def cutoffs(self) -> dict[DeliveryStatus, str]:
        """Per status: deliveries last changed before this time are purged."""
        now = self.clock()
        return {DeliveryStatus.DELIVERED: isotime(now - self.delivered),
                DeliveryStatus.DISCARDED: isotime(now - self.delivered),
                DeliveryStatus.DEAD: isotime(now - self.dead)}

    def _purge_status(self, status: DeliveryStatus, cutoff: str, deadline: float) -> int:
        """Rounds of ``batch`` while the last round was full, within ``per_run`` and the deadline."""
        total = 0
        while total < self.per_run:
            size = min(self.batch, self.per_run - total)
            done = self.store.purge_deliveries(status, cutoff, size)
            total += done
            if done < size or self.monotonic() >= deadline:
                break
        return total

    def purge(self) -> dict[str, int]:
        """Delete a bounded batch of expired deliveries per status (returns how many of each), and of
        tombstones older than ``TOMBSTONE_DAYS`` (logged). A store failure is logged, not raised: the
        timer's reconcile still runs, the next run purges."""
        purged: dict[str, int] = {}
        deadline = self.monotonic() + self.budget_seconds
        try:
            for status, cutoff in self.cutoffs().items():
                purged[str(status)] = self._purge_status(status, cutoff, deadline)
            tombstones = self.store.purge_tombstones(isotime(self.clock() - timedelta(days=TOMBSTONE_DAYS)), self.batch)
        except BridgeError as exc:
            log.error("retention outcome=failed error=%s %s", exc.code, " ".join(f"{s}={n}" for s, n in purged.items()))
            return purged
        log.info("retention outcome=purged %s tombstones=%d", " ".join(f"{status}={count}" for status, count in purged.items()),
                 tombstones)
        return purged
