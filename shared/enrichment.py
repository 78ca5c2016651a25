"""The enriched payload (opt-in per subscription, ``payload: "enriched"``): Calendly's webhook body,
byte for byte, with one more top-level member, ``enriched``, that a flow can read without loops.

``enriched`` holds the invitee's name, email and time zone, the scheduled event's name, start and
end, its hosts' names and emails, and the booking questions' answers keyed by question text
(``answers``; a text asked twice gets ``"<text> (<position>)"`` from its second occurrence on) and
by position (``answers_by_position``, position as a string key). It is best-effort: whatever is
missing or odd in the payload is left out or null, and nothing in it can stop the forward —
Calendly's bytes are always there, untouched: the member is spliced in before the body's closing
brace, so everything before it is exactly what Calendly signed.
"""
from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("shared.enrichment")

CALENDLY = "calendly"
ENRICHED = "enriched"
PAYLOAD_FORMATS = (CALENDLY, ENRICHED)
MEMBER = "enriched"
MAX_KEY = 200  # an answer's key (its question text) is cut here; Calendly caps question text well below


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def summary(envelope: dict) -> dict:
    """The ``enriched`` object for a parsed Calendly envelope (never raises on odd shapes)."""
    payload = _object(envelope.get("payload"))
    event = _object(payload.get("scheduled_event"))
    answers: dict[str, Any] = {}
    by_position: dict[str, Any] = {}
    questions = payload.get("questions_and_answers")
    for index, item in enumerate(questions if isinstance(questions, list) else []):
        if not isinstance(item, dict):
            continue
        position = item.get("position") if isinstance(item.get("position"), int) and not isinstance(item.get("position"), bool) else index
        question = (_text(item.get("question")) or f"question {position}")[:MAX_KEY]
        answer = item.get("answer") if isinstance(item.get("answer"), str | int | float | bool) or item.get("answer") is None else None
        by_position[str(position)] = answer
        key = question if question not in answers else f"{question} ({position})"
        answers[key] = answer
    members = event.get("event_memberships")
    hosts = [{"name": _text(m.get("user_name")), "email": _text(m.get("user_email")), "uri": _text(m.get("user"))}
             for m in (members if isinstance(members, list) else []) if isinstance(m, dict)]
    return {"invitee_name": _text(payload.get("name")), "invitee_email": _text(payload.get("email")),
            "invitee_timezone": _text(payload.get("timezone")), "event_name": _text(event.get("name")),
            "start_time": _text(event.get("start_time")), "end_time": _text(event.get("end_time")), "hosts": hosts,
            "answers": answers, "answers_by_position": by_position}


def enrich(body: bytes) -> bytes:
    """Calendly's ``body`` with ``"enriched": {...}`` spliced in as its last member; ``body`` itself
    when it is not a JSON object or already has that member (nothing is ever lost)."""
    try:
        envelope = json.loads(body)
        if not isinstance(envelope, dict) or MEMBER in envelope:
            return body
        extra = json.dumps(summary(envelope), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, RecursionError, TypeError) as exc:
        log.warning("enrichment outcome=skipped error=%s", type(exc).__name__)
        return body
    head = body.rstrip()
    if not head.endswith(b"}"):
        return body
    head = head[:-1].rstrip()
    separator = b"" if head.endswith(b"{") else b","
    return head + separator + b'"' + MEMBER.encode() + b'":' + extra + b"}"
