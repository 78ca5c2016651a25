"""Filters a subscription may carry (issue 25, first part): which invitee events reach its target.

Everything a filter needs is in Calendly's payload (``scheduled_event.event_type`` and
``scheduled_event.event_memberships``), so applying one costs no Calendly call and no storage request
on the callback path. Each filter is a list (any of its values matches); the filters given are all
required. An event the filters leave out is answered ``200`` and neither stored nor forwarded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The event families whose payload carries the scheduled event the filters read.
FILTERABLE_EVENTS = ("invitee.created", "invitee.canceled", "invitee.rescheduled")
MAX_VALUES = 50


def resource_uri(collection: str) -> re.Pattern[str]:
    """A Calendly resource URI as the bridge takes it: ``<API base>/<collection>/<id>`` (the host is
    Calendly's to judge: the sandbox's differs). Only ASCII classes, spelled out: the connector
    definition carries the same pattern, and ECMA's ``\\s`` and Python's differ (``\\x1c``-``\\x1f``).
    The host is a name or IPv4 address with an optional port: no bracketed IPv6 literal (the fuzzer
    found ``http://[/...`` passing a looser class, a URI no URL parser takes)."""
    return re.compile(rf"^https?://[A-Za-z0-9.-]+(:[0-9]{{1,5}})?/{collection}/[A-Za-z0-9_-]{{1,64}}$")


EVENT_TYPE_URI = resource_uri("event_types")
USER_URI = resource_uri("users")
# Printable ASCII but space and "@", spelled out for the same reason (the connector carries this too).
EMAIL = re.compile(r"^[!-?A-~]{1,64}@[!-?A-~]{1,255}$")


def host_pattern() -> str:
    """The connector definition's pattern for a host filter value: a user URI or an email."""
    return rf"^({USER_URI.pattern[1:-1]}|{EMAIL.pattern[1:-1]})$"


@dataclass(frozen=True)
class Filters:
    event_types: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # Calendly user URIs, or emails (compared ASCII-case-insensitively)

    def __bool__(self) -> bool:
        return bool(self.event_types or self.hosts)

    def as_dict(self) -> dict[str, list[str]]:
        return {"event_types": list(self.event_types), "hosts": list(self.hosts)}

    @classmethod
    def from_dict(cls, data: Any) -> Filters:
        data = data if isinstance(data, dict) else {}
        return cls(tuple(data.get("event_types") or ()), tuple(data.get("hosts") or ()))

    def matches(self, envelope: dict) -> bool:
        """Whether the event passes every filter given (no filters: every event passes)."""
        payload = envelope.get("payload")
        scheduled = payload.get("scheduled_event") if isinstance(payload, dict) else None
        scheduled = scheduled if isinstance(scheduled, dict) else {}
        if self.event_types and scheduled.get("event_type") not in self.event_types:
            return False
        if self.hosts:
            members = scheduled.get("event_memberships")
            members = [m for m in members if isinstance(m, dict)] if isinstance(members, list) else []
            uris = {m.get("user") for m in members if isinstance(m.get("user"), str)}
            emails = {m["user_email"].lower() for m in members if isinstance(m.get("user_email"), str) and m["user_email"].isascii()}
            if not any(host in uris or host.lower() in emails for host in self.hosts):
                return False
        return True


def host_problem(value: str) -> str | None:
    if USER_URI.fullmatch(value) or (EMAIL.fullmatch(value) and value.isascii()):
        return None
    return f"{value!r} is neither a Calendly user URI (<API base>/users/<id>) nor an email address"


def event_type_problem(value: str) -> str | None:
    return None if EVENT_TYPE_URI.fullmatch(value) else f"{value!r} is not a Calendly event type URI (<API base>/event_types/<id>)"
