"""Calendly's callback: verify, parse, filter, dedupe, record, forward."""
from __future__ import annotations

import json
import logging

from . import signatures
from .delivery import IN_REQUEST_BUDGET_SECONDS, LEASE_SECONDS
from .errors import BridgeError, ConcurrencyConflict, StoreUnavailable
from .events import delivery_id, event_key
from .http import Headers, Response
from .models import DELETING, DELIVERED, DISCARDED, PENDING, RETIRED, Delivery, isotime

log = logging.getLogger("shared.callbacks")

MAX_EVENT_BYTES = 256 * 1024


def receive(bridge, subscription_id: str, headers: Headers, body: bytes) -> Response:
    if len(body) > MAX_EVENT_BYTES:
        raise BridgeError(413, "payload_too_large", f"the event body is larger than {MAX_EVENT_BYTES} bytes")
    sub = bridge.store.get_subscription(subscription_id)
    if sub is None:
        raise BridgeError(404, "subscription_not_found", "no such subscription")
    try:
        signatures.verify(body, headers.get(signatures.HEADER), sub.signing_key, bridge.settings.signature_tolerance)
    except signatures.SignatureError as exc:
        log.warning("callback outcome=rejected subscription=%s reason=%r", sub.id, str(exc))
        raise BridgeError(401, "invalid_signature", str(exc)) from None
    if sub.state in (RETIRED, DELETING):
        return Response.json(410, {"error": {"code": "subscription_inactive", "message": f"the subscription is {sub.state}"}})
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BridgeError(400, "invalid_event", "the event body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), str) or not envelope["event"]:
        raise BridgeError(400, "invalid_event", "the event body must be a JSON object with an 'event' name")
    event = envelope["event"]
    if event not in sub.events:
        log.info("callback outcome=ignored subscription=%s event=%s", sub.id, event)
        return Response.json(200, {"status": "ignored", "event": event})
    key = event_key(envelope, body)
    delivery = Delivery(id=delivery_id(sub.id, sub.generation, key), subscription_id=sub.id, event=event, event_key=key,
                        body=body, next_attempt_at=isotime(plus_seconds=LEASE_SECONDS))
    recorded = bridge.store.record_delivery(delivery)
    if recorded is None:
        log.info("callback outcome=duplicate subscription=%s delivery=%s event=%s", sub.id, delivery.id, event)
        return Response.json(200, {"status": "duplicate", "delivery_id": delivery.id})
    try:
        outcome = bridge.deliveries.attempt(sub, recorded, IN_REQUEST_BUDGET_SECONDS)
    except (StoreUnavailable, ConcurrencyConflict) as exc:
        # Recorded already: the outbox/retry worker owns it now; Calendly need not resend.
        log.warning("callback outcome=recorded subscription=%s delivery=%s event=%s bookkeeping=%s", sub.id, recorded.id,
                    event, exc.code)
        return Response.json(202, {"status": "pending", "delivery_id": recorded.id})
    if outcome.status == DELIVERED:
        return Response.json(200, {"status": "delivered", "delivery_id": outcome.id})
    if outcome.status == DISCARDED:
        return Response.json(200, {"status": "retired", "delivery_id": outcome.id})
    # Recorded and queued for retry (or dead and kept for replay): Calendly need not resend.
    status = "pending" if outcome.status == PENDING else outcome.status
    return Response.json(202, {"status": status, "delivery_id": outcome.id})


def send_test_event(bridge, subscription_id: str, event: str | None = None) -> Response:
    """Fetch Calendly's sample payload for one of the subscription's events and push it
    through the normal pipeline (signed, deduped, forwarded): a flow can be built without
    booking a meeting."""
    sub = bridge.store.get_subscription(subscription_id)
    if sub is None:
        raise BridgeError(404, "subscription_not_found", "no such subscription")
    event = event or sub.events[0]
    if event not in sub.events:
        raise BridgeError(400, "event_not_subscribed", f"the subscription does not include {event}; it has {sub.events}")
    sample = bridge.calendly.sample_webhook_data(event=event, organization=sub.organization, scope=sub.scope,
                                                 user=sub.user, group=sub.group)
    if "payload" not in sample:  # tolerate a bare payload
        sample = {"event": event, "created_at": isotime(), "created_by": sub.user, "payload": sample}
    body = json.dumps(sample, ensure_ascii=False).encode("utf-8")
    return receive(bridge, sub.id, Headers({signatures.HEADER: signatures.sign(body, sub.signing_key)}), body)
