"""Reconciliation: make Calendly's hooks and the bridge's records agree again.

- a record left ``creating`` by a crash gets its hook (re)made; ``deleting`` finishes;
- a hook Calendly lost or ``disabled`` (after 24 h of failed deliveries) is recreated
  with a new signing key;
- hooks that call this bridge but have no record (orphans) are deleted;
- retired subscriptions keep no hook.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from .errors import BridgeError
from .models import ACTIVE, CREATING, DELETING, RETIRED, Subscription, isotime, utcnow

log = logging.getLogger("shared.reconcile")

# A 'creating' record younger than this may belong to a subscribe still in flight.
CREATING_GRACE_SECONDS = 120


def _all_subscriptions(store) -> list[Subscription]:
    subs, cursor = [], None
    while True:
        page, cursor = store.list_subscriptions(100, cursor)
        subs.extend(page)
        if not cursor:
            return subs


def reconcile(bridge) -> dict:
    service = bridge.subscriptions
    calendly = bridge.calendly
    summary: dict = {"checked": 0, "healthy": 0, "recreated": 0, "completed": 0, "deleted": 0,
                     "orphans_deleted": 0, "errors": []}
    subs = _all_subscriptions(bridge.store)
    grace = isotime(utcnow() - timedelta(seconds=CREATING_GRACE_SECONDS))
    for sub in subs:
        summary["checked"] += 1
        try:
            if sub.state == DELETING:
                service.unsubscribe(sub.id)
                summary["deleted"] += 1
            elif sub.state == RETIRED:
                if sub.calendly_webhook:
                    calendly.delete_webhook(sub.calendly_webhook)
                    bridge.store.update_subscription(sub.replace(calendly_webhook=None, updated_at=isotime()))
                    summary["deleted"] += 1
            elif sub.state == CREATING:
                if sub.updated_at <= grace:
                    _recreate(service, sub)
                    summary["completed"] += 1
            elif sub.state == ACTIVE:
                hook = calendly.get_webhook(sub.calendly_webhook) if sub.calendly_webhook else None
                if hook is None or hook.get("state") != "active":
                    why = "missing" if hook is None else f"state {hook.get('state')}"
                    log.warning("subscription %s: Calendly hook %s; recreating it", sub.id, why)
                    _recreate(service, sub)
                    summary["recreated"] += 1
                else:
                    summary["healthy"] += 1
        except BridgeError as exc:
            summary["errors"].append({"subscription": sub.id, "code": exc.code, "message": exc.message})
    summary["orphans_deleted"] = _delete_orphans(bridge, subs, summary)
    log.info("reconcile: %s", summary)
    return summary


def _recreate(service, sub: Subscription) -> None:
    """New signing key first (so events signed with it verify), then a new hook."""
    stale = sub.calendly_webhook
    record = service.store.update_subscription(sub.replace(signing_key=secrets.token_urlsafe(32), state=CREATING,
                                                           updated_at=isotime()))
    if stale:
        service.calendly.delete_webhook(stale)
    hook = service.create_hook(record)
    service.store.update_subscription(record.replace(state=ACTIVE, calendly_webhook=hook["uri"], updated_at=isotime()))


def _delete_orphans(bridge, subs: list[Subscription], summary: dict) -> int:
    """Delete hooks pointing at this bridge's callback route that no record owns."""
    if not bridge.settings.public_url:
        return 0
    prefix = f"{bridge.settings.public_url}/api/calendly/events/"
    known = {s.id for s in _all_subscriptions(bridge.store)}  # re-read: subscribes may have landed meanwhile
    try:
        identity = bridge.subscriptions.identity()
    except BridgeError as exc:
        summary["errors"].append({"subscription": None, "code": exc.code, "message": exc.message})
        return 0
    scopes = {("organization", None, None), ("user", identity["user"], None)}
    scopes |= {(s.scope, s.user, s.group) for s in subs}
    deleted = 0
    for scope, user, group in sorted(scopes, key=str):
        try:
            for hook in bridge.calendly.list_webhooks(organization=identity["organization"], scope=scope, user=user, group=group):
                url = hook.get("callback_url") or ""
                if url.startswith(prefix) and url[len(prefix):] not in known and hook.get("uri"):
                    bridge.calendly.delete_webhook(hook["uri"])
                    log.warning("deleted orphan Calendly hook %s (no subscription record)", hook["uri"])
                    deleted += 1
        except BridgeError as exc:
            # e.g. a member's PAT may not list organization hooks: report, carry on.
            summary["errors"].append({"subscription": None, "code": exc.code, "message": f"listing {scope} hooks: {exc.message}"})
    return deleted


# A pending delivery this late lost its retry-queue message (a crash between recording it and
# enqueueing): the timer sends it itself.
OVERDUE_SECONDS = 600


def run() -> dict:
    """The timer-triggered entry point: reconcile hooks, then the retry safety net."""
    from .bridge import get_bridge

    bridge = get_bridge()
    summary = reconcile(bridge)
    summary["overdue_deliveries"] = bridge.deliveries.redeliver(due_only=True, overdue_seconds=OVERDUE_SECONDS)
    log.info("reconcile timer: %s", summary)
    return summary
