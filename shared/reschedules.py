"""``invitee.rescheduled``: one event per reschedule, synthesized from Calendly's two halves.

Calendly has no reschedule event. A reschedule arrives as an ``invitee.canceled`` for the old
invitee (``rescheduled: true``, ``new_invitee`` = the new invitee's URI) and an ``invitee.created``
for the new one (``old_invitee`` = the old invitee's URI), in either order, seconds apart. A
subscription that asks for ``invitee.rescheduled`` gets the pair as one delivery:

- Its id is the subscription's delivery id for ``invitee.rescheduled|<new invitee URI>``, which both
  halves name; so the first half to arrive records it (insert-if-absent) and a retry, a duplicate
  or the other half can never make a second one.
- The first half is stored in the delivery as a *pairing* body and the delivery is due only
  ``PAIR_WAIT_SECONDS`` later. When the other half arrives, the composed event replaces the pairing
  body and is forwarded at once (no Calendly call). When it does not arrive in time, the retry path
  fetches what is missing from Calendly's API: the old scheduled event (1 call, when the new booking
  arrived alone) or the new invitee and its scheduled event (2 calls, when only the cancellation
  did). The callback path never calls Calendly.
- Calendly URIs from a payload are never fetched as given: only their ids are taken, and the path
  is built on the bridge's own Calendly base URL (so the PAT never goes anywhere else).

The composed body (``docs/invitee.rescheduled.schema.json``):
``{"event": "invitee.rescheduled", "created_at", "created_by", "payload": {name, email, timezone,
event_name, old_start_time, old_end_time, new_start_time, new_end_time, cancel_url,
reschedule_url, invitee, old_invitee, old_scheduled_event: {uri, start_time, end_time, name},
cancellation}}`` where ``invitee`` is the new invitee's payload exactly as Calendly sent it
(with its ``scheduled_event``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .errors import BridgeError
from .events import RESCHEDULED

__all__ = ["RESCHEDULED", "PAIR_WAIT_SECONDS", "compose_pair", "complete", "half_name", "pair_uri", "pairing", "pairing_body"]
PAIR_WAIT_SECONDS = 60.0  # Calendly sends both halves within seconds; after this, fetch what is missing
PAIRING = "bridge_reschedule_pairing"  # the key of a pairing body (never forwarded)
_ID = r"[A-Za-z0-9_-]{1,64}"
INVITEE_URI = re.compile(rf"https?://[^/\s]+/scheduled_events/({_ID})/invitees/({_ID})")


def _payload(envelope: Any) -> dict:
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    return payload if isinstance(payload, dict) else {}


def half_name(envelope: dict) -> str:
    return "created" if envelope.get("event") == "invitee.created" else "canceled"


def pair_uri(envelope: dict) -> str | None:
    """The new invitee's URI, which both halves name: the created half's ``uri``, the canceled half's
    ``new_invitee``. None when the payload does not carry it in Calendly's shape."""
    payload = _payload(envelope)
    uri = payload.get("uri") if envelope.get("event") == "invitee.created" else payload.get("new_invitee")
    return uri if isinstance(uri, str) and INVITEE_URI.fullmatch(uri) else None


def pairing_body(halves: dict[str, dict]) -> bytes:
    return json.dumps({PAIRING: halves}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def pairing(body: bytes) -> dict[str, dict] | None:
    """The halves a pairing body holds, or None when ``body`` is a composed event already."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    halves = data.get(PAIRING) if isinstance(data, dict) else None
    return halves if isinstance(halves, dict) else None


def _times(event: Any) -> dict:
    event = event if isinstance(event, dict) else {}
    return {k: event.get(k) for k in ("uri", "start_time", "end_time", "name")}


def compose(created: dict, old_event: dict, cancellation: Any = None) -> bytes:
    """The ``invitee.rescheduled`` body: the new booking's envelope fields, the new invitee as
    Calendly sent it, the old scheduled event's URI and times, and flat fields for flows."""
    invitee = _payload(created)
    new_event = _times(invitee.get("scheduled_event"))
    old = _times(old_event)
    payload = {
        "name": invitee.get("name"), "email": invitee.get("email"), "timezone": invitee.get("timezone"),
        "event_name": new_event["name"] or old["name"],
        "old_start_time": old["start_time"], "old_end_time": old["end_time"],
        "new_start_time": new_event["start_time"], "new_end_time": new_event["end_time"],
        "cancel_url": invitee.get("cancel_url"), "reschedule_url": invitee.get("reschedule_url"),
        "invitee": invitee, "old_invitee": invitee.get("old_invitee"), "old_scheduled_event": old,
        "cancellation": cancellation,
    }
    body = {"event": RESCHEDULED, "created_at": created.get("created_at"), "created_by": created.get("created_by"),
            "payload": payload}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def compose_pair(halves: dict[str, dict]) -> bytes:
    """Both halves at hand: no Calendly call."""
    canceled = _payload(halves["canceled"])
    return compose(halves["created"], canceled.get("scheduled_event") or {}, canceled.get("cancellation"))


def complete(halves: dict[str, dict], fetch: Callable[[str], dict]) -> bytes:
    """One half only (the other never came): fetch the rest from Calendly. ``fetch`` takes an API
    path on the bridge's Calendly base URL and returns the ``resource``."""
    if "created" in halves and "canceled" in halves:
        return compose_pair(halves)
    if "created" in halves:  # the old scheduled event: 1 call
        old_uri = _payload(halves["created"]).get("old_invitee")
        match = INVITEE_URI.fullmatch(old_uri) if isinstance(old_uri, str) else None
        if match is None:
            raise BridgeError(502, "reschedule_incomplete", "the new booking does not name its old invitee in Calendly's shape")
        return compose(halves["created"], fetch(f"/scheduled_events/{match.group(1)}"))
    canceled = halves["canceled"]
    match = INVITEE_URI.fullmatch(pair_uri(canceled) or "")
    if match is None:
        raise BridgeError(502, "reschedule_incomplete", "the cancellation does not name its new invitee in Calendly's shape")
    event_id, invitee_id = match.groups()
    invitee = dict(fetch(f"/scheduled_events/{event_id}/invitees/{invitee_id}"))  # 2 calls: the new invitee,
    invitee["scheduled_event"] = fetch(f"/scheduled_events/{event_id}")          # then its scheduled event
    created = {"event": "invitee.created", "created_at": invitee.get("created_at"), "created_by": canceled.get("created_by"),
               "payload": invitee}
    payload = _payload(canceled)
    return compose(created, payload.get("scheduled_event") or {}, payload.get("cancellation"))
