"""Durable retries on Azure: a failed delivery becomes a message on the Storage queue
``DELIVERY_QUEUE``, made visible after its backoff; the queue-triggered function calls
``handle_message``, which attempts the delivery again.

Queue messages arrive at least once, so a message is only a hint; the delivery record decides:
- the message names the attempt count it was scheduled after; once the record has moved on
  (attempted again, replayed, delivered, dead), the message is stale and dropped;
- the due check and the claim (an ETag lease) share one read, so a duplicate message or the
  reconcile timer's safety net never sends the same delivery twice at once;
- a message that surfaces before the record is due (the delivery is leased by another worker,
  or its Retry-After is longer than a message can hide) is put back for the remaining time.
A record whose message was never written (a crash, or the queue down) is sent by the reconcile
timer's overdue sweep (``DeliveryService.retry_due(overdue_seconds=...)``).
"""
from __future__ import annotations

import json
import logging
import math
import threading
from typing import TYPE_CHECKING

from .delivery import DeliveryService
from .models import Delivery, DeliveryStatus, parse_time
from .redaction import logvalue

if TYPE_CHECKING:
    pass

log = logging.getLogger("shared.retry_queue")

MAX_VISIBILITY_SECONDS = 7 * 24 * 3600 - 60  # Storage queues hide a message for 7 days at most
EARLY_SLACK_SECONDS = 5.0  # clock skew between the storage service (visibility) and workers


def message_text(delivery: Delivery) -> str:
    return json.dumps({"delivery_id": delivery.id, "attempts": delivery.attempts})


class QueueScheduler:
    """RetryScheduler on a Storage queue: the backoff is the message's visibility timeout."""

    # A pending delivery this late lost its queue message (a crash between recording it and
    # enqueueing, or the queue was down): the timer's safety net sends it itself.
    safety_net_after_seconds = 600.0

    def __init__(self, client):
        self._client = client
        self._created = False
        self._lock = threading.Lock()

    def _ensure_queue(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if not self._created:
                try:
                    self._client.create_queue()
                except ResourceExistsError:
                    pass
                self._created = True

    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        from azure.core.exceptions import AzureError

        visibility = math.ceil(min(MAX_VISIBILITY_SECONDS, max(0.0, delay_seconds)))
        try:
            if not self._created:
                self._ensure_queue()
            self._client.send_message(message_text(delivery), visibility_timeout=visibility)
        except (AzureError, OSError) as exc:
            # The record is pending already: the reconcile timer's overdue sweep sends it.
            log.error("retry outcome=not_enqueued delivery=%s error=%s; the overdue sweep will retry it", delivery.id,
                      type(exc).__name__)

    def close(self) -> None:
        self._client.close()


def _parse(text: str) -> tuple[str, int | None] | None:
    try:
        message = json.loads(text)
        delivery_id, attempts = message["delivery_id"], message.get("attempts")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(delivery_id, str) or not delivery_id or (attempts is not None and type(attempts) is not int):
        return None
    return delivery_id, attempts


def handle_message(deliveries: DeliveryService, text: str) -> str:
    """The queue trigger's work: retry one delivery; returns what happened (for logs and tests).
    Malformed messages are logged and dropped (raising would only retry them into the poison queue)."""
    parsed = _parse(text)
    if parsed is None:
        log.error("retry outcome=malformed message=%s", logvalue(text[:200]))
        return "malformed"
    delivery_id, attempts = parsed
    current = deliveries.store.get_delivery(delivery_id)
    if current is None or current.status != DeliveryStatus.PENDING:
        outcome = "unknown" if current is None else str(current.status)
    elif attempts is not None and current.attempts != attempts:
        outcome = "stale"
    else:
        result = deliveries.retry(delivery_id, due_by=deliveries.now(EARLY_SLACK_SECONDS))
        if result is None:
            outcome = "claimed elsewhere"
        elif result.status == DeliveryStatus.PENDING and result.attempts == current.attempts:
            wait = (parse_time(result.next_attempt_at) - deliveries.clock()).total_seconds()
            deliveries.scheduler.schedule(result, wait)
            outcome = "not due"
        else:
            outcome = str(result.status)
    log.info("retry outcome=%s delivery=%s", outcome.replace(" ", "_"), delivery_id)
    return outcome
