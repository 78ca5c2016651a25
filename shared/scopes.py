"""Calendly's authorization scopes, as the bridge needs them (Calendly's scope catalogue, 2026).

Since 3 March 2026 a new personal access token has no API access until scopes are chosen when it
is created (tokens made before keep full access). A ``:write`` scope includes the ``:read`` of its
domain. A webhook subscription needs ``webhooks:write`` plus the read scope of each event family it
carries, so the payloads may be delivered. The bridge's own calls need ``users:read`` (whose token
it is) and ``organizations:read`` (the organization, and makers' Calendly users by email).
Calendly names what a refused call lacked in its ``403``'s ``required_scopes``; this table is what
the deploy guide, the preflight and the errors say when it does not.
"""
from __future__ import annotations

import re

# (method, path pattern) -> scopes; ``{}`` stands for one path segment (an id).
CALL_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/users/me"): ("users:read",),
    ("GET", "/organization_memberships"): ("organizations:read",),
    ("GET", "/webhook_subscriptions"): ("webhooks:read",),
    ("GET", "/webhook_subscriptions/{}"): ("webhooks:read",),
    ("GET", "/sample_webhook_data"): ("webhooks:read",),
    ("POST", "/webhook_subscriptions"): ("webhooks:write",),
    ("DELETE", "/webhook_subscriptions/{}"): ("webhooks:write",),
    ("GET", "/event_types"): ("event_types:read",),  # the connector's event type dropdown
    # completing a reschedule whose other half never came (shared/reschedules.py)
    ("GET", "/scheduled_events/{}"): ("scheduled_events:read",),
    ("GET", "/scheduled_events/{}/invitees/{}"): ("scheduled_events:read",),
}

# Event family (the event name before its last dot) -> the read scope its payloads need. Calendly's
# catalogue lists none for meeting recaps and contacts: their hooks need only webhooks:write (and a
# plan with the feature).
FAMILY_SCOPES: dict[str, tuple[str, ...]] = {
    "invitee": ("scheduled_events:read",),
    "invitee_no_show": ("scheduled_events:read",),
    "routing_form_submission": ("routing_forms:read",),
    "event_type": ("event_types:read",),
    "meeting_recap": (),
    "contact": (),
}

# Families whose events need a Calendly plan with the feature (webhooks themselves are on every
# plan since November 2026).
PLAN_GATED = frozenset({"routing_form_submission", "meeting_recap", "contact"})

# Everything a token for the bridge needs for every family: what the deploy guide says to tick.
ALL_SCOPES: tuple[str, ...] = tuple(dict.fromkeys(
    ["users:read", "organizations:read", "webhooks:write"] + [s for scopes in FAMILY_SCOPES.values() for s in scopes]))


def family(event: str) -> str:
    return event.rsplit(".", 1)[0]


def call_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes a Calendly API call needs (empty when the bridge does not know the call)."""
    normalized = re.sub(r"/(webhook_subscriptions|scheduled_events|invitees)/[^/]+", r"/\1/{}", path.rstrip("/") or "/")
    return CALL_SCOPES.get((method.upper(), normalized), ())


def subscribe_scopes(events: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """What creating a hook for ``events`` needs: webhooks:write and each family's read scope."""
    return tuple(dict.fromkeys(["webhooks:write", *(s for e in events for s in FAMILY_SCOPES.get(family(e), ()))]))


def granted(scopes: set[str] | frozenset[str], needed: tuple[str, ...]) -> list[str]:
    """Which of ``needed`` the granted ``scopes`` lack (a domain's :write covers its :read)."""
    have = set(scopes) | {s.replace(":write", ":read") for s in scopes if s.endswith(":write")}
    return [s for s in needed if s not in have]
