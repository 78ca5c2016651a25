"""Delivery: record, forward, retry durably, dead-letter, replay.

At-least-once: a delivery is recorded (pending) before the first attempt; the record is
the outbox the retry worker drains, so a crash at any point loses nothing.
"""
from __future__ import annotations

import logging
import random
from typing import Callable, Protocol

from .errors import BridgeError, ConcurrencyConflict
from .models import DEAD, DELIVERED, DISCARDED, PENDING, RETIRED, Delivery, Subscription, isotime
from .settings import Settings
from .store.base import Store
from .targets import SendResult, Target

log = logging.getLogger("shared.delivery")

IN_REQUEST_BUDGET_SECONDS = 8.0  # Calendly waits 15 s for its answer; leave room for the rest
WORKER_BUDGET_SECONDS = 20.0
LEASE_SECONDS = 60.0  # a delivery being attempted is not picked up by another worker meanwhile
BACKOFF_BASE_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 4 * 3600.0
FAR_FUTURE = "9999-12-31T23:59:59.999999Z"


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """1 min, 3 min, 9 min, 27 min, 81 min, 4 h, 4 h...: 8 attempts span about 10 hours."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 3 ** max(0, attempts - 1))
    delay *= random.uniform(0.9, 1.1)
    return max(delay, retry_after or 0.0)


class RetryScheduler(Protocol):
    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        """Make sure the delivery is attempted again after ``delay_seconds``."""


class OutboxScheduler:
    """The store's pending deliveries are the outbox; ``next_attempt_at`` is the schedule."""

    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        return None


class DeliveryService:
    def __init__(self, settings: Settings, store: Store, target_for: Callable[[Subscription], Target],
                 retire: Callable[[Subscription, str], None], scheduler: RetryScheduler | None = None):
        self.settings = settings
        self.store = store
        self.target_for = target_for
        self.retire = retire
        self.scheduler = scheduler or OutboxScheduler()

    def attempt(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> Delivery:
        """One attempt (with the target's bounded in-call retries) and its bookkeeping."""
        if sub.state == RETIRED:
            return self._save(delivery.replace(status=DISCARDED, last_error="subscription retired", updated_at=isotime()))
        try:
            result = self.target_for(sub).send(sub, delivery, budget_seconds)
        except BridgeError as exc:  # e.g. Service Bus not configured
            result = SendResult(False, None, exc.message)
        attempts = delivery.attempts + 1
        now = isotime()
        if result.ok:
            updated = delivery.replace(status=DELIVERED, attempts=attempts, last_status=result.status, last_error=None,
                                       delivered_at=now, updated_at=now)
            log.info("delivery outcome=delivered subscription=%s delivery=%s event=%s attempt=%d", sub.id, delivery.id,
                     delivery.event, attempts)
            return self._save(updated)
        if result.gone:
            log.warning("delivery outcome=target_gone subscription=%s delivery=%s event=%s status=%s", sub.id, delivery.id,
                        delivery.event, result.status)
            updated = self._save(delivery.replace(status=DISCARDED, attempts=attempts, last_status=result.status,
                                                  last_error=result.error, updated_at=now))
            self.retire(sub, result.error or "target gone")
            return updated
        if attempts >= self.settings.delivery_max_attempts:
            log.error("delivery outcome=dead subscription=%s delivery=%s event=%s attempt=%d error=%r", sub.id, delivery.id,
                      delivery.event, attempts, result.error)
            return self._save(delivery.replace(status=DEAD, attempts=attempts, last_status=result.status,
                                               last_error=result.error, updated_at=now))
        delay = backoff_seconds(attempts, result.retry_after)
        updated = self._save(delivery.replace(status=PENDING, attempts=attempts, last_status=result.status,
                                              last_error=result.error, next_attempt_at=isotime(plus_seconds=delay),
                                              updated_at=now))
        log.warning("delivery outcome=retry subscription=%s delivery=%s event=%s attempt=%d error=%r next_in_s=%.0f", sub.id,
                    delivery.id, delivery.event, attempts, result.error, delay)
        self.scheduler.schedule(updated, delay)
        return updated

    def _save(self, delivery: Delivery) -> Delivery:
        return self.store.update_delivery(delivery)

    def claim(self, delivery: Delivery) -> Delivery | None:
        """Lease a pending delivery so no other worker attempts it meanwhile; None if lost."""
        try:
            return self.store.update_delivery(delivery.replace(next_attempt_at=isotime(plus_seconds=LEASE_SECONDS)))
        except ConcurrencyConflict:
            return None

    def retry(self, delivery_id: str, due_by: str | None = None) -> Delivery | None:
        """Attempt one pending delivery again (the queue worker's unit of work). With ``due_by``,
        one whose next attempt is later (not yet due, or leased by another worker) is returned
        untouched: the due check and the claim share one read, so two workers never both send."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery is None or delivery.status != PENDING:
            return delivery
        if due_by is not None and delivery.next_attempt_at > due_by:
            return delivery
        claimed = self.claim(delivery)
        if claimed is None:
            return None
        sub = self.store.get_subscription(claimed.subscription_id)
        if sub is None:
            return self._save(claimed.replace(status=DISCARDED, last_error="subscription deleted", updated_at=isotime()))
        return self.attempt(sub, claimed, WORKER_BUDGET_SECONDS)

    def redeliver(self, due_only: bool = True, limit: int = 500, overdue_seconds: float = 0.0) -> dict[str, int]:
        """Drain the outbox: attempt pending deliveries (all of them when ``due_only`` is False;
        only those late by ``overdue_seconds`` when a retry queue normally handles them)."""
        summary = {"attempted": 0, "delivered": 0, "pending": 0, "dead": 0, "discarded": 0}
        now = isotime(plus_seconds=-overdue_seconds) if due_only else FAR_FUTURE
        for delivery in list(self.store.due_deliveries(now, limit)):
            result = self.retry(delivery.id, due_by=now if due_only else None)
            if result is None or (result.status == PENDING and result.attempts == delivery.attempts):
                continue
            summary["attempted"] += 1
            key = result.status if result.status in summary else "pending"
            summary[key] += 1
        return summary

    def replay(self, delivery_id: str) -> Delivery:
        """Send a dead or delivered event again, with its original delivery id."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery is None:
            raise BridgeError(404, "delivery_not_found", f"no delivery {delivery_id}")
        sub = self.store.get_subscription(delivery.subscription_id)
        if sub is None or sub.state == RETIRED:
            raise BridgeError(409, "subscription_inactive", "the delivery's subscription no longer exists or is retired")
        reset = self.store.update_delivery(delivery.replace(status=PENDING, attempts=0, next_attempt_at=isotime(plus_seconds=LEASE_SECONDS),
                                                            updated_at=isotime()))
        return self.attempt(sub, reset, IN_REQUEST_BUDGET_SECONDS)

