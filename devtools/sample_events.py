"""Realistic Calendly webhook payloads for every event type (the sandbox sends these).

Shapes follow Calendly's docs and its OpenAPI export (tests/test_sandbox.py checks them);
names and answers are deliberately non-ASCII, because real payloads are and the bridge
must forward the bytes untouched. Every call makes fresh uuids unless overridden.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.events import EVENT_TYPES

__all__ = ["EVENT_TYPES", "build", "envelope", "reschedule"]

HOST_NAME = "Søren Kierkegaard"
HOST_EMAIL = "host@example.com"


def _time(minutes: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _id() -> str:
    return str(uuid.uuid4())


class _Context:
    def __init__(self, base_url: str, user_uri: str | None, organization_uri: str | None):
        self.base = base_url.rstrip("/")
        self.user = user_uri or f"{self.base}/users/{_id()}"
        self.organization = organization_uri or f"{self.base}/organizations/{_id()}"

    def uri(self, collection: str) -> str:
        return f"{self.base}/{collection}/{_id()}"


def _cancellation() -> dict:
    return {"canceled_by": "Zoë Ångström", "reason": "Conflicto de agenda — lo siento 🙏", "canceler_type": "invitee",
            "created_at": _time()}


def _scheduled_event(ctx: _Context, event_uri: str, canceled: bool) -> dict:
    scheduled = {
        "uri": event_uri,
        "name": "Café consultation — 30 min",
        "meeting_notes_plain": None,
        "meeting_notes_html": None,
        "status": "canceled" if canceled else "active",
        "start_time": _time(60 * 24),
        "end_time": _time(60 * 24 + 30),
        "event_type": ctx.uri("event_types"),
        "location": {"type": "physical", "location": "Café Ångström, Drottninggatan 5, Stockholm",
                     "additional_info": "Ring på — 2 tr."},
        "invitees_counter": {"total": 1, "active": 0 if canceled else 1, "limit": 1},
        "created_at": _time(-5),
        "updated_at": _time(),
        "event_memberships": [{"user": ctx.user, "user_email": HOST_EMAIL, "user_name": HOST_NAME}],
        "event_guests": [{"email": "jose.nunez@example.com", "created_at": _time(-5), "updated_at": _time(-5)}],
        "calendar_event": {"kind": "google", "external_id": _id().replace("-", "")},
    }
    if canceled:
        scheduled["cancellation"] = _cancellation()
    return scheduled


def _invitee(event: str, ctx: _Context) -> dict:
    canceled = event == "invitee.canceled"
    event_uri = ctx.uri("scheduled_events")
    payload = {
        "uri": f"{event_uri}/invitees/{_id()}",
        "email": "zoe.angstrom@example.com",
        "first_name": "Zoë",
        "last_name": "Ångström",
        "name": "Zoë Ångström",
        "status": "canceled" if canceled else "active",
        "questions_and_answers": [
            {"question": "¿Dónde nos conocimos?", "answer": "En Málaga — luego en 東京", "position": 0},
            {"question": "Anything we should know?", "answer": "Ich spreche nur ein bisschen Englisch. Grüße!",
             "position": 1},
        ],
        "timezone": "Europe/Stockholm",
        "event": event_uri,
        "created_at": _time(-5),
        "updated_at": _time(),
        "tracking": {"utm_campaign": "höst-2026", "utm_source": "newsletter", "utm_medium": "email", "utm_content": None,
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
        "scheduled_event": _scheduled_event(ctx, event_uri, canceled),
    }
    if canceled:
        payload["cancellation"] = _cancellation()
    return payload


def _invitee_no_show(event: str, ctx: _Context) -> dict:
    return {"uri": ctx.uri("invitee_no_shows"), "invitee": f"{ctx.uri('scheduled_events')}/invitees/{_id()}",
            "created_at": _time()}


def _routing_form_submission(event: str, ctx: _Context) -> dict:
    return {
        "uri": ctx.uri("routing_form_submissions"),
        "routing_form": ctx.uri("routing_forms"),
        "questions_and_answers": [{"question_uuid": _id(), "question": "Société", "answer": "Ærø Fiskeri ApS"},
                                  {"question_uuid": _id(), "question": "¿Cuántos empleados?", "answer": "11–50"}],
        "tracking": {"utm_campaign": None, "utm_source": "sitio-web", "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "result": {"type": "event_type", "value": ctx.uri("event_types")},
        "submitter": f"{ctx.uri('scheduled_events')}/invitees/{_id()}",
        "submitter_type": "Invitee",
        "created_at": _time(),
        "updated_at": _time(),
    }


def _event_type(event: str, ctx: _Context) -> dict:
    deleted = event == "event_type.deleted"
    return {
        "uri": ctx.uri("event_types"),
        "name": "Café consultation — 30 min",
        "active": not deleted,
        "booking_method": "instant",
        "slug": "cafe-consultation",
        "scheduling_url": "https://calendly.com/soren-kierkegaard/cafe-consultation",
        "duration": 30,
        "kind": "solo",
        "pooling_type": None,
        "type": "StandardEventType",
        "color": "#8247f5",
        "created_at": _time(-60),
        "updated_at": _time(),
        "internal_note": None,
        "description_plain": "Un café et une discussion.",
        "description_html": "<p>Un café et une discussion.</p>",
        "profile": {"type": "User", "name": HOST_NAME, "owner": ctx.user},
        "secret": False,
        "custom_questions": [{"name": "¿Dónde nos conocimos?", "type": "string", "position": 0, "enabled": True,
                              "required": False, "answer_choices": [], "include_other": False}],
        "deleted_at": _time() if deleted else None,
        "kind_description": "One-on-One",
        "admin_managed": False,
    }


def _meeting_recap(event: str, ctx: _Context) -> dict:
    if event == "meeting_recap.deleted":  # a tombstone
        return {"uri": ctx.uri("meeting_recaps"), "deleted_at": _time()}
    return {"uri": ctx.uri("meeting_recaps"), "scheduled_event": ctx.uri("scheduled_events"),
            "summary": "Résumé : prochaines étapes convenues avec Zoë.",
            "action_items": ["Envoyer le devis à Ærø Fiskeri"],
            "created_at": _time(-5), "updated_at": _time()}


def _contact(event: str, ctx: _Context) -> dict:
    if event == "contact.deleted":  # only the URI and deleted_at
        return {"uri": ctx.uri("contacts"), "deleted_at": _time()}
    return {"uri": ctx.uri("contacts"), "email": "noel.aberg@example.com", "first_name": "Noël", "last_name": "Åberg",
            "name": "Noël Åberg", "phone_number": None, "owner": ctx.user, "organization": ctx.organization,
            "created_at": _time(-5), "updated_at": _time()}


_BUILDERS = {"invitee": _invitee, "invitee_no_show": _invitee_no_show, "routing_form_submission": _routing_form_submission,
             "event_type": _event_type, "meeting_recap": _meeting_recap, "contact": _contact}


def build(event: str, base_url: str, *, user_uri: str | None = None, organization_uri: str | None = None,
          **overrides) -> dict:
    """The ``payload`` of ``event``, with URIs on ``base_url``; ``overrides`` replace top-level fields.

    ``build("invitee.canceled", base, rescheduled=True)`` also links a fresh ``new_invitee``.
    """
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown Calendly event {event!r}")
    ctx = _Context(base_url, user_uri, organization_uri)
    payload = _BUILDERS[event.split(".", 1)[0]](event, ctx)
    if event == "invitee.canceled" and overrides.get("rescheduled") and "new_invitee" not in overrides:
        payload["new_invitee"] = f"{ctx.uri('scheduled_events')}/invitees/{_id()}"
    payload.update(overrides)
    return payload


def envelope(event: str, base_url: str, *, user_uri: str | None = None, organization_uri: str | None = None,
             **overrides) -> dict:
    """The whole body Calendly posts: ``{event, created_at, created_by, payload}``."""
    ctx = _Context(base_url, user_uri, organization_uri)
    return {"event": event, "created_at": _time(), "created_by": ctx.user,
            "payload": build(event, base_url, user_uri=ctx.user, organization_uri=ctx.organization, **overrides)}


def reschedule(base_url: str, *, user_uri: str | None = None, organization_uri: str | None = None) -> tuple[dict, dict]:
    """A reschedule as Calendly sends it: ``invitee.canceled`` for the old invitee (``rescheduled``,
    ``new_invitee`` set), then ``invitee.created`` for the new one (``old_invitee`` set)."""
    scope = {"user_uri": user_uri, "organization_uri": organization_uri}
    created = envelope("invitee.created", base_url, **scope)
    canceled = envelope("invitee.canceled", base_url, **scope, rescheduled=True, new_invitee=created["payload"]["uri"])
    created["payload"]["old_invitee"] = canceled["payload"]["uri"]
    new_event = created["payload"]["scheduled_event"]  # moved two days later than the old booking
    new_event["start_time"], new_event["end_time"] = _time(60 * 24 * 3), _time(60 * 24 * 3 + 30)
    return canceled, created
