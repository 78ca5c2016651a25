"""Realistic Calendly webhook envelopes for every event type (the sandbox sends these).

Shapes follow Calendly's docs and OpenAPI export; names and answers are deliberately
non-ASCII, because real payloads are, and the bridge must forward bytes untouched.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from .events import EVENT_TYPES

__all__ = ["EVENT_TYPES", "build", "envelope"]


def _now(offset_minutes: int = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=offset_minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _id() -> str:
    return str(uuid.uuid4())


def _scheduled_event(base: str, event_uri: str, user_uri: str) -> dict:
    return {
        "uri": event_uri,
        "name": "Café consultation — 30 min",
        "meeting_notes_plain": None,
        "meeting_notes_html": None,
        "status": "active",
        "start_time": _now(60 * 24),
        "end_time": _now(60 * 24 + 30),
        "event_type": f"{base}/event_types/{_id()}",
        "location": {"type": "zoom", "status": "pushed", "join_url": "https://zoom.example/j/123"},
        "invitees_counter": {"total": 1, "active": 1, "limit": 1},
        "created_at": _now(),
        "updated_at": _now(),
        "event_memberships": [{"user": user_uri, "user_email": "host@example.com", "user_name": "Søren Kierkegaard"}],
        "event_guests": [],
    }


def _invitee(base: str, user_uri: str, canceled: bool) -> dict:
    event_uri = f"{base}/scheduled_events/{_id()}"
    invitee_uri = f"{event_uri}/invitees/{_id()}"
    payload = {
        "uri": invitee_uri,
        "email": "zoe.angstrom@example.com",
        "first_name": "Zoë",
        "last_name": "Ångström",
        "name": "Zoë Ångström",
        "status": "canceled" if canceled else "active",
        "questions_and_answers": [{"question": "¿Dónde nos conocimos?", "answer": "En Málaga — 東京 después", "position": 0}],
        "timezone": "Europe/Stockholm",
        "event": event_uri,
        "created_at": _now(),
        "updated_at": _now(),
        "tracking": {"utm_campaign": None, "utm_source": "newsletter", "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "text_reminder_number": None,
        "rescheduled": False,
        "old_invitee": None,
        "new_invitee": None,
        "cancel_url": f"https://calendly.com/cancellations/{_id()}",
        "reschedule_url": f"https://calendly.com/reschedulings/{_id()}",
        "routing_form_submission": None,
        "payment": None,
        "no_show": None,
        "reconfirmation": None,
        "scheduling_method": None,
        "invitee_scheduled_by": None,
        "scheduled_event": _scheduled_event(base, event_uri, user_uri),
    }
    if canceled:
        payload["cancellation"] = {"canceled_by": "Zoë Ångström", "reason": "Conflicto de agenda 🙏", "canceler_type": "invitee",
                                   "created_at": _now()}
    return payload


def build(event: str, base_url: str, user_uri: str | None = None, organization_uri: str | None = None, **overrides) -> dict:
    """The ``payload`` of ``event``; ``overrides`` replace top-level payload fields."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown Calendly event {event!r}")
    base = base_url.rstrip("/")
    user_uri = user_uri or f"{base}/users/{_id()}"
    organization_uri = organization_uri or f"{base}/organizations/{_id()}"
    family = event.split(".", 1)[0]
    if family == "invitee":
        payload = _invitee(base, user_uri, canceled=event == "invitee.canceled")
    elif family == "invitee_no_show":
        invitee = f"{base}/scheduled_events/{_id()}/invitees/{_id()}"
        payload = {"uri": f"{base}/invitee_no_shows/{_id()}", "invitee": invitee, "created_at": _now()}
    elif family == "routing_form_submission":
        payload = {"uri": f"{base}/routing_form_submissions/{_id()}", "routing_form": f"{base}/routing_forms/{_id()}",
                   "questions_and_answers": [{"question_uuid": _id(), "question": "Société", "answer": "Ærø Fiskeri"}],
                   "tracking": {"utm_source": None}, "result": {"type": "event_type", "value": f"{base}/event_types/{_id()}"},
                   "submitter": None, "submitter_type": None, "created_at": _now(), "updated_at": _now()}
    elif family == "event_type":
        payload = {"uri": f"{base}/event_types/{_id()}", "name": "Café consultation", "active": True, "slug": "cafe",
                   "duration": 30, "kind": "solo", "profile": {"type": "User", "name": "Søren Kierkegaard", "owner": user_uri},
                   "created_at": _now(-60), "updated_at": _now()}
        if event == "event_type.deleted":
            payload = {"uri": payload["uri"], "deleted_at": _now()}
    elif family == "meeting_recap":
        payload = {"uri": f"{base}/meeting_recaps/{_id()}", "scheduled_event": f"{base}/scheduled_events/{_id()}",
                   "summary": "Résumé: next steps agreed.", "created_at": _now(-5), "updated_at": _now()}
        if event == "meeting_recap.deleted":
            payload = {"uri": payload["uri"], "deleted_at": _now()}
    else:  # contact
        payload = {"uri": f"{base}/contacts/{_id()}", "email": "noël@example.com", "first_name": "Noël", "last_name": "Åberg",
                   "owner": user_uri, "created_at": _now(-5), "updated_at": _now()}
        if event == "contact.deleted":
            payload = {"uri": payload["uri"], "deleted_at": _now()}
    payload.update(overrides)
    return payload


def envelope(event: str, base_url: str, user_uri: str | None = None, organization_uri: str | None = None, **overrides) -> dict:
    """The whole body Calendly posts: ``{event, created_at, created_by, payload}``."""
    user_uri = user_uri or f"{base_url.rstrip('/')}/users/{_id()}"
    return {"event": event, "created_at": _now(), "created_by": user_uri,
            "payload": build(event, base_url, user_uri, organization_uri, **overrides)}
