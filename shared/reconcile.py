"""Reconciliation: make Calendly's hooks and the bridge's records agree again.

- a record left ``creating`` by a crash gets its hook (re)made; ``deleting`` finishes;
- a hook Calendly lost or ``disabled`` (after 24 h of failed deliveries) is recreated
  with a new signing key;
- hooks that call this bridge but have no record (orphans) are deleted;
- retired subscriptions keep no hook.
The timer also runs the retry safety net: pending deliveries whose queue message was lost.
"""
from __future__ import annotations

import logging

from .calendly import CalendlyClient
from .delivery import DeliveryService
from .errors import BridgeError
from .models import Clock, Subscription, SubscriptionState, isotime, utcnow
from .settings import Settings
from .store.base import Store
from .subscriptions import SubscriptionService, new_signing_key

log = logging.getLogger("shared.reconcile")

# A 'creating' record younger than this may belong to a subscribe still in flight.
CREATING_GRACE_SECONDS = 120


class Reconciler:
    def __init__(self, settings: Settings, store: Store, calendly: CalendlyClient, subscriptions: SubscriptionService,
                 deliveries: DeliveryService, clock: Clock = utcnow):
        self.settings = settings
        self.store = store
        self.calendly = calendly
        self.subscriptions = subscriptions
        self.deliveries = deliveries
        self.clock = clock

    def run_timer(self) -> dict:
        """The timer's work: reconcile hooks, then the retry safety net (every due delivery when no
        queue retries them, e.g. the SQLite store under ``func start``)."""
        summary = self.reconcile()
        late = self.deliveries.scheduler.safety_net_after_seconds
        summary["overdue_deliveries"] = self.deliveries.retry_due(overdue_seconds=late)
        return summary

    def reconcile(self) -> dict:
        summary: dict = {"checked": 0, "healthy": 0, "recreated": 0, "completed": 0, "deleted": 0,
                         "orphans_deleted": 0, "errors": []}
        subs = self._all_subscriptions()
        for sub in subs:
            summary["checked"] += 1
            try:
                outcome = self._repair(sub)
            except BridgeError as exc:
                summary["errors"].append({"subscription": sub.id, "code": exc.code, "message": exc.message})
                continue
            if outcome:
                summary[outcome] += 1
        summary["orphans_deleted"] = self._delete_orphans(subs, summary)
        counts = " ".join(f"{k}={v}" for k, v in summary.items() if k != "errors")
        log.log(logging.WARNING if summary["errors"] else logging.INFO, "reconcile outcome=%s %s errors=%d",
                "errors" if summary["errors"] else "ok", counts, len(summary["errors"]))
        return summary

    def _repair(self, sub: Subscription) -> str | None:
        """Bring one subscription's hook in line; returns the summary counter it moved, if any."""
        if sub.state == SubscriptionState.DELETING:
            self.subscriptions.unsubscribe(sub.id)
            return "deleted"
        if sub.state == SubscriptionState.RETIRED:
            if not sub.calendly_webhook:
                return None
            self.calendly.delete_webhook(sub.calendly_webhook)
            self.store.update_subscription(sub.replace(calendly_webhook=None, updated_at=isotime(self.clock())))
            return "deleted"
        if sub.state == SubscriptionState.CREATING:
            if sub.updated_at > isotime(self.clock(), -CREATING_GRACE_SECONDS):
                return None
            self._recreate(sub)
            return "completed"
        hook = self.calendly.get_webhook(sub.calendly_webhook) if sub.calendly_webhook else None
        if hook is not None and hook.get("state") == "active":
            return "healthy"
        why = "missing" if hook is None else f"state {hook.get('state')}"
        log.warning("subscription %s: Calendly hook %s; recreating it", sub.id, why)
        self._recreate(sub)
        return "recreated"

    def _all_subscriptions(self) -> list[Subscription]:
        subs, cursor = [], None
        while True:
            page, cursor = self.store.list_subscriptions(100, cursor)
            subs.extend(page)
            if not cursor:
                return subs

    def _recreate(self, sub: Subscription) -> None:
        """New signing key first (so events signed with it verify), then a new hook."""
        stale = sub.calendly_webhook
        record = self.store.update_subscription(sub.replace(signing_key=new_signing_key(), state=SubscriptionState.CREATING,
                                                            updated_at=isotime(self.clock())))
        if stale:
            self.calendly.delete_webhook(stale)
        hook = self.subscriptions.create_hook(record)
        self.store.update_subscription(record.replace(state=SubscriptionState.ACTIVE, calendly_webhook=hook["uri"],
                                                      updated_at=isotime(self.clock())))

    def _delete_orphans(self, subs: list[Subscription], summary: dict) -> int:
        """Delete hooks pointing at this bridge's callback route that no record owns."""
        if not self.settings.public_url:
            return 0
        prefix = f"{self.settings.public_url}/api/calendly/events/"
        known = {s.id for s in self._all_subscriptions()}  # re-read: subscribes may have landed meanwhile
        try:
            identity = self.subscriptions.identity()
        except BridgeError as exc:
            summary["errors"].append({"subscription": None, "code": exc.code, "message": exc.message})
            return 0
        scopes = {("organization", None, None), ("user", identity["user"], None)}
        scopes |= {(s.scope, s.user, s.group) for s in subs}
        deleted = 0
        for scope, user, group in sorted(scopes, key=str):
            try:
                for hook in self.calendly.list_webhooks(organization=identity["organization"], scope=scope, user=user,
                                                        group=group):
                    url = hook.get("callback_url") or ""
                    if url.startswith(prefix) and url[len(prefix):] not in known and hook.get("uri"):
                        self.calendly.delete_webhook(hook["uri"])
                        log.warning("deleted orphan Calendly hook %s (no subscription record)", hook["uri"])
                        deleted += 1
            except BridgeError as exc:
                # e.g. a member's PAT may not list organization hooks: report, carry on.
                summary["errors"].append({"subscription": None, "code": exc.code,
                                          "message": f"listing {scope} hooks: {exc.message}"})
        return deleted
