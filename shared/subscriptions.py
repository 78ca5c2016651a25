"""Subscribe and unsubscribe: the webhook-trigger contract on top of Calendly hooks.

Crash safety: the record (with its signing key) is written *before* the Calendly hook is
created, and marked ``deleting`` before the hook is deleted, so any crash leaves a record
that reconciliation can finish, never an unknown hook.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING

from .calendly import CalendlyClient, CalendlyError
from .errors import BridgeError, ConcurrencyConflict
from .events import scope_conflicts
from .models import ACTIVE, DELETING, RETIRED, Subscription, isotime, target_hash
from .redaction import redact_url
from .settings import Settings
from .store.base import Store
from .targets.policy import check_target_url

if TYPE_CHECKING:
    from .schemas import SubscribeBody

log = logging.getLogger("shared.subscriptions")

IDENTITY_TTL_SECONDS = 3600.0


def subscription_id(target: dict, events: list[str], scope: str, user: str | None, group: str | None) -> str:
    """Same target + events + scope -> same id, so repeating a subscribe is idempotent
    (and two concurrent identical subscribes collide on one insert)."""
    canonical = json.dumps([target, sorted(events), scope, user, group], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class SubscriptionService:
    def __init__(self, settings: Settings, store: Store, calendly: CalendlyClient):
        self.settings = settings
        self.store = store
        self.calendly = calendly
        self._identity: tuple[float, dict] | None = None
        self._identity_lock = threading.Lock()

    # Identity (GET /users/me), cached -----------------------------------------
    def identity(self) -> dict:
        cached = self._identity
        if cached and time.monotonic() - cached[0] < IDENTITY_TTL_SECONDS:
            return cached[1]
        with self._identity_lock:
            cached = self._identity
            if cached and time.monotonic() - cached[0] < IDENTITY_TTL_SECONDS:
                return cached[1]
            me = self.calendly.me()
            identity = {"user": me["uri"], "organization": me["current_organization"]}
            self._identity = (time.monotonic(), identity)
            return identity

    def callback_url(self, sub_id: str) -> str:
        return f"{self.settings.require_public_url()}/api/calendly/events/{sub_id}"

    def location(self, sub_id: str) -> str:
        return f"{self.settings.require_public_url()}/api/subscriptions/{sub_id}"

    # Subscribe ------------------------------------------------------------------
    def subscribe(self, body: "SubscribeBody") -> tuple[Subscription, bool]:
        """Return (subscription, created). Raises BridgeError on bad input or Calendly refusal."""
        conflicts = scope_conflicts(body.events, body.scope)
        if conflicts:
            raise BridgeError(400, "invalid_scope", f"{', '.join(conflicts)} can only be subscribed at organization scope")
        if body.target is not None:
            from .targets import servicebus

            if not servicebus.configured(self.settings):
                raise BridgeError(400, "servicebus_not_configured", "this bridge has no Service Bus namespace: set "
                                  "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE (managed identity) or SERVICEBUS_CONNECTION")
            entity = "queue" if body.target.queue else "topic"
            target = {"type": "servicebus", "entity": entity, "name": body.target.queue or body.target.topic}
        else:
            target = {"type": "http", "url": check_target_url(body.target_url or "", self.settings)}
        self.settings.require_public_url()
        user, group = body.user, body.group
        if body.scope == "group" and not group:
            raise BridgeError(400, "invalid_subscription", "group scope needs 'group' (a Calendly group URI)")
        identity = self.identity()
        if body.scope == "user" and not user:
            user = identity["user"]
        if body.scope != "user":
            user = None
        if body.scope != "group":
            group = None

        events = sorted(body.events)
        sub_id = subscription_id(target, events, body.scope, user, group)
        existing = self.store.get_subscription(sub_id)
        if existing is not None and existing.state == ACTIVE:
            return existing, False
        if existing is not None and existing.state in (DELETING, RETIRED):
            self._finish_delete(existing)
            existing = None
        if existing is None:
            fresh = Subscription(id=sub_id, target=target, events=events, scope=body.scope,
                                 organization=identity["organization"], user=user, group=group,
                                 signing_key=secrets.token_urlsafe(32), generation=secrets.token_hex(8))
            try:
                record = self.store.create_subscription(fresh)
            except ConcurrencyConflict:
                raise BridgeError(409, "subscription_in_progress", "the same subscription is being created right now; retry",
                                  {"Retry-After": "2"}) from None
            created_record = True
        else:
            # A record left in 'creating' by a crash: finish it with a fresh key.
            record = self.store.update_subscription(existing.replace(signing_key=secrets.token_urlsafe(32), updated_at=isotime()))
            created_record = False
        try:
            hook = self.create_hook(record)
        except BridgeError:
            if created_record:
                self.store.delete_subscription(record.id)
            raise
        record = self.store.update_subscription(record.replace(state=ACTIVE, calendly_webhook=hook["uri"], updated_at=isotime()))
        log.info("subscription %s created for %s, events %s, scope %s, hook %s", record.id,
                 redact_url(target["url"]) if target["type"] == "http" else target["name"], events, body.scope, hook["uri"])
        return record, True

    def create_hook(self, sub: Subscription) -> dict:
        kwargs = dict(url=self.callback_url(sub.id), events=sub.events, organization=sub.organization,
                      scope=sub.scope, user=sub.user, group=sub.group, signing_key=sub.signing_key)
        try:
            return self.calendly.create_webhook(**kwargs)
        except CalendlyError as exc:
            if exc.calendly_status != 409:
                raise
        # A hook for this URL survived a crash. Calendly never returns its signing key,
        # so replace it: find it (every page), delete it, create it with our key.
        for hook in self.calendly.list_webhooks(organization=sub.organization, scope=sub.scope, user=sub.user, group=sub.group):
            if hook.get("callback_url") == kwargs["url"] and hook.get("uri"):
                self.calendly.delete_webhook(hook["uri"])
        log.info("subscription %s: replaced a leftover Calendly hook", sub.id)
        return self.calendly.create_webhook(**kwargs)

    # Unsubscribe ----------------------------------------------------------------
    def unsubscribe(self, sub_id: str) -> bool:
        """Delete the Calendly hook, then the record. False when there was nothing to delete."""
        sub = self.store.get_subscription(sub_id)
        if sub is None:
            return False
        if sub.state != DELETING:
            sub = self.store.update_subscription(sub.replace(state=DELETING, updated_at=isotime()))
        self._finish_delete(sub)
        log.info("subscription %s deleted", sub_id)
        return True

    def _finish_delete(self, sub: Subscription) -> None:
        if sub.calendly_webhook:
            self.calendly.delete_webhook(sub.calendly_webhook)
        self.store.delete_subscription(sub.id)

    def unsubscribe_target(self, url: str) -> int:
        subs = self.store.find_subscriptions_by_target(target_hash({"type": "http", "url": url.strip()}))
        for sub in subs:
            self.unsubscribe(sub.id)
        return len(subs)

    def retire(self, sub: Subscription, reason: str) -> None:
        """The target is gone (404/410): stop Calendly calling; keep the record for the log."""
        current = self.store.get_subscription(sub.id)
        if current is None or current.state == RETIRED:
            return
        try:
            current = self.store.update_subscription(current.replace(state=RETIRED, updated_at=isotime()))
        except ConcurrencyConflict:
            return
        try:
            if current.calendly_webhook:
                self.calendly.delete_webhook(current.calendly_webhook)
        except BridgeError as exc:
            log.warning("subscription %s retired but its Calendly hook could not be deleted yet: %s", sub.id, exc.code)
        log.warning("subscription %s retired: %s", sub.id, reason)

    # Read -----------------------------------------------------------------------
    def get(self, sub_id: str) -> Subscription | None:
        return self.store.get_subscription(sub_id)

    def list(self, limit: int, cursor: str | None) -> tuple[list[Subscription], str | None]:
        return self.store.list_subscriptions(limit, cursor)

