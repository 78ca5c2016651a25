"""Calendly's callback: verify, parse, filter, dedupe, record, forward."""
from __future__ import annotations

import copy
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

from cachetools import TTLCache

from . import jsonbody, reschedules, signatures
from .calendly import CalendlyClient
from .counters import FilterCounter
from .delivery import DeliveryService
from .errors import BridgeError, ConcurrencyConflict, StoreUnavailable
from .events import RESCHEDULED, delivery_id, event_key, is_reschedule_half
from .http import Response
from .isolation import Bulkhead, SubscriptionCache
from .models import CALLBACK_TOKEN, DeliveryStatus, Subscription, SubscriptionState, isotime
from .redaction import logvalue
from .store.base import Store

log = logging.getLogger("shared.callbacks")

MAX_EVENT_BYTES = 256 * 1024
SAMPLE_TTL_SECONDS = 600.0  # Calendly's sample payloads barely change; each fetch spends the shared PAT's budget


class CallbackService:
    def __init__(self, store: Store, deliveries: DeliveryService, clients: Callable[[str], CalendlyClient], signature_tolerance: int,
                 cache: SubscriptionCache | None = None, bulkhead: Bulkhead | None = None,
                 counter: FilterCounter | None = None):
        self.store = store
        self.counter = counter or FilterCounter(store)
        self.cache = cache or SubscriptionCache()
        self.bulkhead = bulkhead or Bulkhead()
        self.deliveries = deliveries
        self.clients = clients  # an account's Calendly client (test events' samples; never on the callback path)
        self.signature_tolerance = signature_tolerance
        self._samples: TTLCache = TTLCache(maxsize=256, ttl=SAMPLE_TTL_SECONDS, timer=time.monotonic)
        self._samples_lock = threading.Lock()

    def receive(self, path_token: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Calendly's POST to ``/calendly/events/<path_token>``: 2xx once it is safely recorded, 5xx only when it is not."""
        if len(body) > MAX_EVENT_BYTES:
            raise BridgeError(413, "payload_too_large", f"the event body is larger than {MAX_EVENT_BYTES} bytes")
        cached = self.cache.get(path_token)
        if cached is not None:
            if self._signed_with(cached.signing_key, headers, body):
                return self._receive(cached, headers, body, verified=True)
            self.cache.forget(cached.id)  # the key may have been rotated elsewhere: ask the store
        sub = self.subscription_for(path_token)
        if sub is None:
            self._gone_or_unknown(path_token, headers, body)
        self.cache.put(path_token, sub)
        return self._receive(sub, headers, body)

    def _gone_or_unknown(self, path_token: str, headers: Mapping[str, str], body: bytes) -> NoReturn:
        """A path no live subscription has: ``410`` when it is a deleted subscription's and the request
        is signed with that subscription's key (Calendly then deletes the hook at once, without its
        24 h of retries); otherwise the same ``404`` as any random path, so an unsigned or wrongly
        signed request learns nothing. A store failure is a ``503`` (raised by the store), never 410."""
        tombstone = self.store.callback_tombstone(path_token) if CALLBACK_TOKEN.fullmatch(path_token) else None
        if tombstone is not None and self._signed_with(tombstone[1], headers, body):
            log.info("callback outcome=gone subscription=%s status=410", tombstone[0])
            raise BridgeError(410, "subscription_deleted", "the subscription was deleted; delete this webhook")
        raise BridgeError(404, "subscription_not_found", "no such subscription")

    def _signed_with(self, key: str, headers: Mapping[str, str], body: bytes) -> bool:
        try:
            signatures.verify(body, headers.get(signatures.HEADER), key, self.signature_tolerance)
        except signatures.SignatureError:
            return False
        return True

    def subscription_for(self, path_token: str) -> Subscription | None:
        """The subscription Calendly calls on this path: the one whose random callback token it is
        (an index point read, then the record), or a record made before tokens on its id path
        until reconcile has moved its hook. Anything else is unknown, whatever exists."""
        if CALLBACK_TOKEN.fullmatch(path_token):
            sub_id = self.store.callback_subscription_id(path_token)
            sub = self.store.get_subscription(sub_id) if sub_id else None
            return sub if sub is not None and hmac.compare_digest(sub.callback_token or "", path_token) else None
        sub = self.store.get_subscription(path_token)
        return sub if sub is not None and sub.answers_legacy_path else None

    def _receive(self, sub: Subscription, headers: Mapping[str, str], body: bytes, test_nonce: str | None = None,
                 verified: bool = False) -> Response:
        if not verified:  # a cached record's signature was checked once already, on the way in
            self._verify(sub, headers, body)
        if sub.state in (SubscriptionState.RETIRED, SubscriptionState.DELETING):
            return _answer(410, "inactive", sub, None, None, {"error": {"code": "subscription_inactive",
                                                                         "message": f"the subscription is {sub.state}"}})
        envelope = _parse(body)
        event = envelope["event"]
        if RESCHEDULED in sub.events and is_reschedule_half(envelope):
            if sub.filters and not sub.filters.matches(envelope):
                self.counter.count(sub.id, matched=False)
                return _answer(200, "filtered", sub, None, event, {"status": "filtered", "reason": "filters", "event": event})
            return self._reschedule_half(sub, envelope)
        if event not in sub.events:
            return _answer(200, "ignored", sub, None, event, {"status": "ignored", "event": event})
        if sub.filters and not sub.filters.matches(envelope):
            self.counter.count(sub.id, matched=False)
            return _answer(200, "filtered", sub, None, event, {"status": "filtered", "reason": "filters", "event": event})
        if sub.exclude_rescheduled and is_reschedule_half(envelope):
            # Answered 200 (Calendly must not retry), never stored nor forwarded: the maker asked to leave it out.
            self.counter.count(sub.id, matched=False)
            return _answer(200, "filtered", sub, None, event, {"status": "filtered", "reason": "rescheduled", "event": event})
        key = event_key(envelope, body)
        if test_nonce:  # every test event is a delivery of its own, though Calendly's sample is the same each time
            key = f"{key}#test-{test_nonce}"
        with self.bulkhead.slot(sub.target.fingerprint) as attempt_now:
            # Without a slot (this target already has its share of in-request attempts in flight) the
            # delivery is recorded due now and the retry path sends it: Calendly is answered at once.
            delivery = self.deliveries.new_delivery(sub, delivery_id(sub.id, sub.generation, key), event, key, body,
                                                    attempt_now=attempt_now)
            recorded = self.store.record_delivery(delivery)
            if recorded is None:
                return _answer(200, "duplicate", sub, delivery.id, event, {"status": "duplicate", "delivery_id": delivery.id})
            if (sub.filters or sub.exclude_rescheduled) and not test_nonce:
                self.counter.count(sub.id, matched=True)
            if not attempt_now:
                self.deliveries.scheduler.schedule(recorded, 0.0)
                return _answer(202, "deferred", sub, recorded.id, event, {"status": "pending", "delivery_id": recorded.id})
            return self._forward(sub, recorded)

    def _reschedule_half(self, sub: Subscription, envelope: dict) -> Response:
        """Half of a reschedule, for a subscription to ``invitee.rescheduled`` (shared/reschedules.py):
        the first half records the one delivery, due after the pairing wait; the other half completes
        it and forwards it at once; a repeat of either half changes nothing."""
        event, uri = envelope["event"], reschedules.pair_uri(envelope)
        if uri is None:  # not in Calendly's shape: nothing to pair it with
            return _answer(200, "ignored", sub, None, event, {"status": "ignored", "event": event})
        key = f"{RESCHEDULED}|{uri}"
        half = reschedules.half_name(envelope)
        waiting = self.deliveries.new_delivery(sub, delivery_id(sub.id, sub.generation, key), RESCHEDULED, key,
                                               reschedules.pairing_body({half: envelope}), attempt_now=False)
        recorded = self.store.record_delivery(waiting.replace(next_attempt_at=self.deliveries.now(reschedules.PAIR_WAIT_SECONDS)))
        if recorded is not None:
            self.deliveries.scheduler.schedule(recorded, reschedules.PAIR_WAIT_SECONDS)
            return _answer(202, "pairing", sub, recorded.id, event, {"status": "pending", "delivery_id": recorded.id})
        for _ in range(3):  # another writer (the other half, the retry path) may be changing it: re-read
            current = self.store.get_delivery(waiting.id)
            halves = reschedules.pairing(current.body) if current is not None and current.status == DeliveryStatus.PENDING else None
            if current is None or halves is None or half in halves:  # sent or composed already, or this half again
                return _answer(200, "duplicate", sub, waiting.id, event, {"status": "duplicate", "delivery_id": waiting.id})
            composed = reschedules.compose_pair({**halves, half: envelope})
            try:
                claimed = self.store.update_delivery(current.replace(
                    body=composed, updated_at=self.deliveries.now(),
                    next_attempt_at=self.deliveries.now(self.deliveries.policy.lease_seconds)))
            except ConcurrencyConflict:
                continue
            return self._forward(sub, claimed)
        return _answer(202, "pending", sub, waiting.id, event, {"status": "pending", "delivery_id": waiting.id})

    def _verify(self, sub: Subscription, headers: Mapping[str, str], body: bytes) -> None:
        try:
            signatures.verify(body, headers.get(signatures.HEADER), sub.signing_key, self.signature_tolerance)
        except signatures.SignatureError as exc:
            log.warning("callback outcome=rejected subscription=%s status=401 reason=%s", sub.id, logvalue(str(exc)))
            raise BridgeError(401, "invalid_signature", str(exc)) from None

    def _forward(self, sub: Subscription, recorded) -> Response:
        try:
            outcome = self.deliveries.attempt(sub, recorded, self.deliveries.policy.in_request_budget)
        except (StoreUnavailable, ConcurrencyConflict) as exc:
            # Recorded already: the outbox/retry worker owns it now; Calendly need not resend.
            log.warning("callback bookkeeping failed delivery=%s error=%s", recorded.id, exc.code)
            return _answer(202, "pending", sub, recorded.id, recorded.event, {"status": "pending", "delivery_id": recorded.id})
        if outcome.status == DeliveryStatus.DELIVERED:
            return _answer(200, "delivered", sub, outcome.id, outcome.event, {"status": "delivered", "delivery_id": outcome.id})
        if outcome.status == DeliveryStatus.DISCARDED:
            return _answer(200, "retired", sub, outcome.id, outcome.event, {"status": "retired", "delivery_id": outcome.id})
        # Recorded and queued for retry (or dead and kept for replay): Calendly need not resend.
        status = str(outcome.status)
        return _answer(202, status, sub, outcome.id, outcome.event, {"status": status, "delivery_id": outcome.id})

    def send_test_event(self, subscription_id: str, event: str | None = None) -> Response:
        """Fetch Calendly's sample payload for one of the subscription's events and push it
        through the normal pipeline (signed, deduped, forwarded): a flow can be built without
        booking a meeting."""
        sub = self.store.get_subscription(subscription_id)
        if sub is None:
            raise BridgeError(404, "subscription_not_found", "no such subscription")
        event = event or sub.events[0]
        if event not in sub.events:
            raise BridgeError(400, "event_not_subscribed", f"the subscription does not include {event}; it has {sub.events}")
        if event == RESCHEDULED:  # made of Calendly's samples of its two halves
            halves = {"created": self._envelope("invitee.created", sub), "canceled": self._envelope("invitee.canceled", sub)}
            body = reschedules.compose_pair(halves)
        else:
            body = json.dumps(self._envelope(event, sub), ensure_ascii=False).encode("utf-8")
        return self._receive(sub, {signatures.HEADER: signatures.sign(body, sub.signing_key)}, body,
                             test_nonce=secrets.token_hex(8))


    def _envelope(self, event: str, sub: Subscription) -> dict:
        sample = self._sample(event, sub)
        if "payload" not in sample:  # tolerate a bare payload
            sample = {"event": event, "created_at": isotime(), "created_by": sub.user, "payload": sample}
        return sample

    def _sample(self, event: str, sub: Subscription) -> dict:
        """Calendly's sample payload for the event and the subscription's scope, cached per scope."""
        key = (event, sub.account, sub.organization, sub.scope, sub.user, sub.group)
        with self._samples_lock:
            sample = self._samples.get(key)
        if sample is None:
            sample = self.clients(sub.account).sample_webhook_data(event=event, organization=sub.organization, scope=sub.scope,
                                                                    user=sub.user, group=sub.group)
            with self._samples_lock:
                self._samples[key] = sample
        return copy.deepcopy(sample)


def _parse(body: bytes) -> dict:
    envelope = jsonbody.loads(body, jsonbody.EVENT_MAX_DEPTH, "invalid_event", "the event body")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), str) or not envelope["event"]:
        raise BridgeError(400, "invalid_event", "the event body must be a JSON object with an 'event' name")
    return envelope


def _answer(status: int, outcome: str, sub: Subscription, delivery: str | None, event: str | None, body: dict) -> Response:
    """Calendly's answer, logged as one ``callback outcome=...`` line."""
    log.info("callback outcome=%s subscription=%s delivery=%s event=%s status=%d", outcome, sub.id, delivery or "-",
             logvalue(event or "-"), status)
    return Response.json(status, body)
