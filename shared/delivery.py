"""Delivery: record, forward, retry durably, dead-letter, replay.

At-least-once: a delivery is recorded (pending) before the first attempt; the record is
the outbox the retry worker drains, so a crash at any point loses nothing.

The verbs, one name each:
- ``attempt``: one send of a delivery (with the target's bounded in-call retries) and its bookkeeping;
- ``retry``: the next attempt of one *pending* delivery, claimed first so no two workers send it
  (the queue trigger's unit of work); ``retry_due``: ``retry`` for every delivery that is due;
- ``replay``: an operator's resend of a dead or delivered delivery, under its original id.
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import enrichment, reschedules
from .errors import BridgeError, ConcurrencyConflict
from .models import Clock, Delivery, DeliveryStatus, Subscription, SubscriptionState, isotime, utcnow
from .redaction import logvalue
from .store.base import Store
from .targets import SendResult, Target

log = logging.getLogger("shared.delivery")

FAR_FUTURE = "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard and how long the bridge tries."""

    max_attempts: int = 8
    in_request_budget: float = 8.0  # Calendly waits 15 s for its answer; leave room for the rest
    worker_budget: float = 20.0
    lease_seconds: float = 60.0  # a delivery being attempted is not picked up by another worker meanwhile
    backoff_base: float = 60.0
    backoff_max: float = 4 * 3600.0
    # The jitter factor of each backoff, drawn from (low, high): spreads retries of one outage
    # apart. Injected (tests pass a fixed draw), never patched.
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False, compare=False)

    def backoff_seconds(self, attempts: int, retry_after: float | None = None) -> float:
        """1 min, 3 min, 9 min, 27 min, 81 min, 4 h, 4 h... (each ±10 %): 8 attempts span about 10 hours."""
        delay = min(self.backoff_max, self.backoff_base * 3 ** max(0, attempts - 1))
        delay *= self.jitter(0.9, 1.1)
        # A target's Retry-After counts only within the schedule's bounds: never sooner than the next
        # step, never later than the largest one (so every delivery still ends: delivered or dead).
        if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


class RetryScheduler(Protocol):
    # How late a pending delivery must be before the timer's safety net retries it itself.
    safety_net_after_seconds: float

    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        """Make sure the delivery is attempted again after ``delay_seconds``."""


class OutboxScheduler:
    """The store's pending deliveries are the outbox; ``next_attempt_at`` is the schedule. Something
    must drain it: the local host's loop, or under the Functions host (no queue with the SQLite
    store) the timer, which then retries every due delivery."""

    safety_net_after_seconds = 0.0

    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        return None

    def close(self) -> None:
        return None


class DeliveryService:
    def __init__(self, store: Store, target_for: Callable[[Subscription], Target],
                 retire: Callable[[Subscription, str], None], policy: DeliveryPolicy = DeliveryPolicy(),
                 scheduler: RetryScheduler | None = None, clock: Clock = utcnow,
                 fetch: Callable[[str, str], dict] | None = None):
        self.store = store
        # Reads a Calendly API resource (account, path) with that account's client: completes a reschedule whose
        # second half never came (shared/reschedules.py). Never on the callback path.
        self.fetch = fetch
        self.target_for = target_for
        self.retire = retire
        self.policy = policy
        self.scheduler = scheduler or OutboxScheduler()
        self.clock = clock

    def now(self, plus_seconds: float = 0.0) -> str:
        return isotime(self.clock(), plus_seconds)

    def new_delivery(self, sub: Subscription, delivery_id: str, event: str, key: str, body: bytes,
                     attempt_now: bool = True) -> Delivery:
        """A pending delivery, leased to the caller who is about to attempt it (``attempt_now``), or
        due at once for the retry path."""
        now = self.now()
        due = self.now(self.policy.lease_seconds) if attempt_now else now
        return Delivery(id=delivery_id, subscription_id=sub.id, event=event, event_key=key, body=body,
                        next_attempt_at=due, created_at=now, updated_at=now)

    def attempt(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> Delivery:
        """One attempt (with the target's bounded in-call retries) and its bookkeeping."""
        if sub.state == SubscriptionState.RETIRED:
            return self._save(delivery.replace(status=DeliveryStatus.DISCARDED, last_error="subscription retired", updated_at=self.now()))
        halves = reschedules.pairing(delivery.body) if delivery.event == reschedules.RESCHEDULED else None
        if halves is not None:
            try:
                composed = self._complete_reschedule(sub, delivery, halves)
            except BridgeError as exc:  # Calendly unreachable, or the half is not in its shape: a failed attempt
                return self._record_outcome(sub, delivery, SendResult(False, None, f"reschedule incomplete: {exc.message}"))
            if composed is None:
                return self.store.get_delivery(delivery.id) or delivery
            delivery = composed
        # What is stored stays Calendly's bytes; an enriched subscription's target gets them with the
        # added member (computed per attempt: microseconds, see benchmarks/handler_cost.py).
        sent = delivery.replace(body=enrichment.enrich(delivery.body)) if sub.payload_format == enrichment.ENRICHED else delivery
        try:
            result = self.target_for(sub).send(sub, sent, budget_seconds)
        except BridgeError as exc:  # e.g. Service Bus not configured
            result = SendResult(False, None, exc.message)
        except Exception as exc:  # noqa: BLE001 - nothing a target answers may escape: it is a failed attempt
            log.exception("delivery outcome=send_failed subscription=%s delivery=%s error=%s", sub.id, delivery.id,
                          type(exc).__name__)
            result = SendResult(False, None, "target failed unexpectedly")
        return self._record_outcome(sub, delivery, result)

    def _complete_reschedule(self, sub: Subscription, delivery: Delivery, halves: dict[str, dict]) -> Delivery | None:
        """The pairing wait is over and a half is missing: fetch the rest from Calendly, store the
        composed event (so every attempt sends the same bytes). None: the other half completed it
        meanwhile (it forwards it)."""
        if self.fetch is None:
            raise BridgeError(503, "calendly_unavailable", "no Calendly client to complete the reschedule")
        fetch = self.fetch
        body = reschedules.complete(halves, lambda path: fetch(sub.account, path))  # with the subscription's account's token
        try:
            return self._save(delivery.replace(body=body))
        except ConcurrencyConflict:
            return None

    def _record_outcome(self, sub: Subscription, delivery: Delivery, result: SendResult) -> Delivery:
        attempts, now = delivery.attempts + 1, self.now()
        # A settled delivery (delivered, discarded, dead) has no next attempt: its next_attempt_at is
        # "now", so only a replay's lease (see ``replay``) ever puts it in the future.
        outcome = dict(attempts=attempts, last_status=result.status, last_error=result.error, updated_at=now,
                       next_attempt_at=now)
        fields = f"subscription={sub.id} delivery={delivery.id} event={delivery.event} attempt={attempts}"
        if result.ok:
            log.info("delivery outcome=delivered %s", fields)
            return self._save(delivery.replace(status=DeliveryStatus.DELIVERED, delivered_at=now, **outcome))
        if result.gone:
            log.warning("delivery outcome=target_gone %s status=%s", fields, result.status)
            updated = self._save(delivery.replace(status=DeliveryStatus.DISCARDED, **outcome))
            self.retire(sub, result.error or "target gone")
            return updated
        if attempts >= self.policy.max_attempts:
            log.error("delivery outcome=dead %s error=%s", fields, logvalue(result.error))
            return self._save(delivery.replace(status=DeliveryStatus.DEAD, **outcome))
        delay = self.policy.backoff_seconds(attempts, result.retry_after)
        updated = self._save(delivery.replace(status=DeliveryStatus.PENDING, **{**outcome, "next_attempt_at": self.now(delay)}))
        log.warning("delivery outcome=retry %s error=%s next_in_s=%.0f", fields, logvalue(result.error), delay)
        self.scheduler.schedule(updated, delay)
        return updated

    def _save(self, delivery: Delivery) -> Delivery:
        return self.store.update_delivery(delivery)

    def claim(self, delivery: Delivery) -> Delivery | None:
        """Lease a pending delivery so no other worker attempts it meanwhile; None if lost."""
        try:
            return self.store.update_delivery(delivery.replace(next_attempt_at=self.now(self.policy.lease_seconds)))
        except ConcurrencyConflict:
            return None

    def retry(self, delivery_id: str, due_by: str | None = None) -> Delivery | None:
        """Attempt one pending delivery again. With ``due_by``, one whose next attempt is later (not
        yet due, or leased by another worker) is returned untouched: the due check and the claim
        share one read, so two workers never both send. None: another worker claimed it."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return delivery
        if due_by is not None and delivery.next_attempt_at > due_by:
            return delivery
        claimed = self.claim(delivery)
        if claimed is None:
            return None
        sub = self.store.get_subscription(claimed.subscription_id)
        if sub is None:
            return self._save(claimed.replace(status=DeliveryStatus.DISCARDED, last_error="subscription deleted", updated_at=self.now()))
        return self.attempt(sub, claimed, self.policy.worker_budget)

    def retry_due(self, due_only: bool = True, limit: int = 500, overdue_seconds: float = 0.0) -> dict[str, int]:
        """Retry pending deliveries: all of them when ``due_only`` is False; else those due (late by
        ``overdue_seconds`` when a retry queue normally handles them). Returns counts by outcome."""
        summary = {"attempted": 0, "delivered": 0, "pending": 0, "dead": 0, "discarded": 0}
        now = self.now(-overdue_seconds) if due_only else FAR_FUTURE
        for delivery in list(self.store.due_deliveries(now, limit)):
            result = self.retry(delivery.id, due_by=now if due_only else None)
            if result is None or (result.status == DeliveryStatus.PENDING and result.attempts == delivery.attempts):
                continue
            summary["attempted"] += 1
            summary[str(result.status)] += 1
        return summary

    def replay(self, delivery_id: str) -> Delivery:
        """Send a dead or delivered event again, with its original delivery id."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery is None:
            raise BridgeError(404, "delivery_not_found", f"no delivery {delivery_id}")
        if delivery.status == DeliveryStatus.PENDING:
            # The retry path owns a pending delivery (queue message, timer, lease): a replay now could
            # send the same attempt a second time beside it.
            raise BridgeError(409, "delivery_pending",
                              f"the delivery is pending: its next attempt is due at {delivery.next_attempt_at}; "
                              "replay it once it is delivered or dead", {"Retry-After": "60"})
        sub = self.store.get_subscription(delivery.subscription_id)
        if sub is None or sub.state == SubscriptionState.RETIRED:
            raise BridgeError(409, "subscription_inactive", "the delivery's subscription no longer exists or is retired")
        if delivery.next_attempt_at > self.now():
            raise BridgeError(409, "delivery_replaying", "the delivery is being replayed right now; retry in a minute",
                              {"Retry-After": str(int(self.policy.lease_seconds))})
        # The claim is conditional on the version read above and leases the record (its
        # next_attempt_at, unused while dead or delivered) while keeping its status, so the retry
        # path, which only takes pending ones, never sends it beside this replay, and a replay that
        # comes while this one is sending answers 409. The outcome is recorded on the claimed
        # version, as a fresh first attempt (the lease then lapses).
        claimed = self.store.update_delivery(delivery.replace(updated_at=self.now(),
                                                              next_attempt_at=self.now(self.policy.lease_seconds)))
        reset = claimed.replace(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=self.now())
        return self.attempt(sub, reset, self.policy.in_request_budget)
