"""Retention: invitees' personal data (the event payloads) kept only as long as needed.

- delivered (and discarded) deliveries are purged, payload and record, ``DELIVERY_RETENTION_HOURS``
  after their last attempt (at least 25 h: the record is also the dedupe key, and Calendly retries
  a failed call for 24 h);
- dead deliveries keep their payload for replay for ``DEAD_DELIVERY_RETENTION_DAYS``, then go too;
- pending deliveries are kept until they are delivered or dead.
Unsubscribe and retire delete a subscription's deliveries at once (shared/subscriptions.py).

``purge`` runs on the reconcile timer (function_app) and in the local host's background loop,
never on the callback path; each run deletes at most ``batch`` records per status, so a backlog
is worked off over a few runs instead of stretching one.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from .errors import BridgeError
from .models import Clock, DeliveryStatus, isotime, utcnow
from .store.base import Store

log = logging.getLogger("shared.retention")

BATCH = 2000  # per status and run: 8,000 an hour per status on the 15-minute timer
# A deleted subscription's callback path answers 410 this long: Calendly retries a failed call for
# 24 h, then disables the hook, so a week covers every call it can still make.
TOMBSTONE_DAYS = 7


class RetentionService:
    def __init__(self, store: Store, delivered_hours: int, dead_days: int, clock: Clock = utcnow, batch: int = BATCH):
        self.store = store
        self.delivered = timedelta(hours=delivered_hours)
        self.dead = timedelta(days=dead_days)
        self.clock = clock
        self.batch = batch

    def cutoffs(self) -> dict[DeliveryStatus, str]:
        """Per status: deliveries last changed before this time are purged."""
        now = self.clock()
        return {DeliveryStatus.DELIVERED: isotime(now - self.delivered),
                DeliveryStatus.DISCARDED: isotime(now - self.delivered),
                DeliveryStatus.DEAD: isotime(now - self.dead)}

    def purge(self) -> dict[str, int]:
        """Delete a bounded batch of expired deliveries per status (returns how many of each), and of
        tombstones older than ``TOMBSTONE_DAYS`` (logged). A store failure is logged, not raised: the
        timer's reconcile still runs, the next run purges."""
        purged: dict[str, int] = {}
        try:
            for status, cutoff in self.cutoffs().items():
                purged[str(status)] = self.store.purge_deliveries(status, cutoff, self.batch)
            tombstones = self.store.purge_tombstones(isotime(self.clock() - timedelta(days=TOMBSTONE_DAYS)), self.batch)
        except BridgeError as exc:
            log.error("retention outcome=failed error=%s %s", exc.code, " ".join(f"{s}={n}" for s, n in purged.items()))
            return purged
        log.info("retention outcome=purged %s tombstones=%d", " ".join(f"{status}={count}" for status, count in purged.items()),
                 tombstones)
        return purged
