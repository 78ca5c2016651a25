"""Preflight: what the configured Calendly token can do, checked before anyone subscribes.

    python -m shared preflight

Whose token it is (``users:read``), its role in the organization (``organizations:read``), whether it
may read hooks (``webhooks:read``), and for each event family whether a subscription would be
accepted: a hook is created for one event of the family (organization scope for an owner's or
admin's token, else the token owner's user scope) and deleted at once, so nothing is left behind
in Calendly (a hook whose delete failed is named, and reconcile deletes it as an orphan: its
callback is on the bridge). Each family reports ``ok``, ``scope_missing`` (which scopes),
``plan_required`` (the organization's plan lacks the feature: not a failure of the token),
``role_required`` or another error.
"""
from __future__ import annotations

import secrets
from typing import Any

from . import scopes
from .calendly import CalendlyClient, CalendlyError
from .events import ORGANIZATION_ONLY

FAMILY_EVENTS = {"invitee": "invitee.created", "invitee_no_show": "invitee_no_show.created",
                 "routing_form_submission": "routing_form_submission.created", "event_type": "event_type.created",
                 "meeting_recap": "meeting_recap.created", "contact": "contact.created"}
_OUTCOMES = {"calendly_scope_missing": "scope_missing", "calendly_plan_required": "plan_required",
             "calendly_forbidden": "role_required"}


def _failure(exc: CalendlyError, needed: tuple[str, ...]) -> dict[str, Any]:
    outcome = _OUTCOMES.get(exc.code, "error")
    result: dict[str, Any] = {"status": outcome, "message": exc.message}
    if outcome == "scope_missing":
        result["needs"] = list(needed)
    return result


def preflight(calendly: CalendlyClient, public_url: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"token": {}, "checks": {}, "families": {}, "left_behind": []}
    try:
        me = calendly.me()
    except CalendlyError as exc:
        report["checks"]["users:read"] = _failure(exc, ("users:read",))
        report["ok"] = False
        return report
    organization, user = me["current_organization"], me["uri"]
    report["token"] = {"user": user, "name": me.get("name"), "email": me.get("email"), "organization": organization}
    report["checks"]["users:read"] = {"status": "ok"}
    role = None
    try:
        membership = calendly.membership_of(organization=organization, user=user)
        role = (membership or {}).get("role")
        report["token"]["role"] = role
        report["checks"]["organizations:read"] = {"status": "ok"}
    except CalendlyError as exc:
        report["checks"]["organizations:read"] = _failure(exc, ("organizations:read",))
    try:
        next(iter(calendly.webhook_pages(organization=organization, scope="user", user=user).fetch()), None)
        report["checks"]["webhooks:read"] = {"status": "ok"}
    except CalendlyError as exc:
        report["checks"]["webhooks:read"] = _failure(exc, ("webhooks:read",))
    base = (public_url or "https://bridge.invalid").rstrip("/")
    for family, event in FAMILY_EVENTS.items():
        organization_scope = event in ORGANIZATION_ONLY or role in ("owner", "admin")
        needed = scopes.subscribe_scopes([event])
        try:
            hook = calendly.create_webhook(
                url=f"{base}/api/calendly/events/preflight-{secrets.token_urlsafe(16)}", events=[event],
                organization=organization, scope="organization" if organization_scope else "user",
                user=None if organization_scope else user, group=None, signing_key=secrets.token_urlsafe(32))
        except CalendlyError as exc:
            report["families"][family] = {"event": event, **_failure(exc, needed)}
            continue
        report["families"][family] = {"event": event, "status": "ok",
                                      "scope": "organization" if organization_scope else "user"}
        try:
            calendly.delete_webhook(hook["uri"])
        except CalendlyError:
            report["left_behind"].append(hook["uri"])
    failed = [c for c in report["checks"].values() if c["status"] != "ok"]
    failed += [f for f in report["families"].values() if f["status"] not in ("ok", "plan_required")]
    report["ok"] = not failed and not report["left_behind"]
    return report
