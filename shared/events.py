"""Calendly's event types, which scopes allow them, the connector's triggers, and the dedupe key of an event."""
from __future__ import annotations

import hashlib

EVENT_TYPES: tuple[str, ...] = (
    "invitee.created",
    "invitee.canceled",
    "invitee_no_show.created",
    "invitee_no_show.deleted",
    "routing_form_submission.created",
    "event_type.created",
    "event_type.updated",
    "event_type.deleted",
    "meeting_recap.created",
    "meeting_recap.updated",
    "meeting_recap.deleted",
    "contact.created",
    "contact.updated",
    "contact.deleted",
)
# Events the bridge makes from Calendly's (shared/reschedules.py), and the Calendly events each needs.
RESCHEDULED = "invitee.rescheduled"
SYNTHESIZED: dict[str, tuple[str, ...]] = {RESCHEDULED: ("invitee.created", "invitee.canceled")}
# What a subscription may ask for: Calendly's events and the bridge's own (beside the invitee events).
SUBSCRIBABLE: tuple[str, ...] = EVENT_TYPES[:2] + (RESCHEDULED,) + EVENT_TYPES[2:]
SCOPES: tuple[str, ...] = ("organization", "user", "group")
# Calendly refuses these outside organization scope; the bridge says so first.
ORGANIZATION_ONLY = frozenset({"routing_form_submission.created"})
# The custom connector's triggers, POST /api/triggers/{trigger}: each family's path fixes its
# events; "event" ("When a Calendly event occurs") takes the events the maker picked.
TRIGGER_EVENTS: dict[str, tuple[str, ...] | None] = {
    "invitee-created": ("invitee.created",),
    "invitee-canceled": ("invitee.canceled",),
    "invitee-rescheduled": (RESCHEDULED,),
    "no-show-created": ("invitee_no_show.created",),
    "no-show-deleted": ("invitee_no_show.deleted",),
    "routing-form-submitted": ("routing_form_submission.created",),
    "event": None,
}


# Calendly has no reschedule event: a reschedule is an invitee.canceled for the old invitee
# (payload.rescheduled true, new_invitee set) and an invitee.created for the new one (old_invitee set).
RESCHEDULE_HALVES = ("invitee.created", "invitee.canceled")


def is_reschedule_half(envelope: dict) -> bool:
    """Whether this invitee event is one half of a reschedule, as Calendly marks it in the payload."""
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return False
    if envelope.get("event") == "invitee.canceled":
        return payload.get("rescheduled") is True
    if envelope.get("event") == "invitee.created":
        return isinstance(payload.get("old_invitee"), str) and bool(payload["old_invitee"])
    return False


def calendly_events(events: list[str] | tuple[str, ...]) -> list[str]:
    """The Calendly events a hook must carry for a subscription to ``events`` (synthesized ones replaced
    by what they are made from), sorted, each once."""
    return sorted({c for e in events for c in SYNTHESIZED.get(e, (e,))})


def scope_conflicts(events: list[str], scope: str) -> list[str]:
    """The events Calendly would refuse in ``scope``."""
    return [e for e in events if e in ORGANIZATION_ONLY and scope != "organization"]


def event_key(envelope: dict, body: bytes) -> str:
    """A key that is equal for repeated deliveries of one Calendly event.

    Events that happen once per resource are keyed by name + the payload's ``uri``;
    ``*.updated`` events repeat for one resource, so their key adds ``updated_at``
    (or the envelope's ``created_at``). Without a ``uri`` the body itself is the key.
    """
    name = str(envelope.get("event"))
    payload = envelope.get("payload")
    uri = payload.get("uri") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(uri, str) or not uri:
        return f"{name}|body|{hashlib.sha256(body).hexdigest()}"
    if name.endswith(".updated"):
        stamp = payload.get("updated_at") or envelope.get("created_at") or ""
        return f"{name}|{uri}|{stamp}"
    return f"{name}|{uri}"


def delivery_id(subscription_id: str, generation: str, key: str) -> str:
    """Stable delivery id: ``<subscription id>-<24 hex>``; same on every retry of one event."""
    digest = hashlib.sha256(f"{generation}\n{key}".encode()).hexdigest()[:24]
    return f"{subscription_id}-{digest}"
