"""The records the bridge keeps: subscriptions and deliveries."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .redaction import redact_url

# States of a subscription.
CREATING, ACTIVE, DELETING, RETIRED = "creating", "active", "deleting", "retired"
# States of a delivery.
PENDING, DELIVERED, DEAD, DISCARDED = "pending", "delivered", "dead", "discarded"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isotime(moment: datetime | None = None, plus_seconds: float = 0.0) -> str:
    """Fixed-width UTC ISO-8601, so timestamps sort as strings in every store."""
    moment = (moment or utcnow()) + timedelta(seconds=plus_seconds)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def target_hash(target: dict) -> str:
    """Index key for 'every subscription with this target'."""
    if target.get("type") == "http":
        material = f"http\n{target['url']}"
    else:
        material = f"{target.get('type')}\n{target.get('entity')}\n{target.get('name')}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def public_target(target: dict) -> dict:
    if target.get("type") == "http":
        return {"type": "http", "url": redact_url(target["url"])}
    return {"type": target.get("type"), target.get("entity", "queue"): target.get("name")}


@dataclass
class Subscription:
    id: str
    target: dict
    events: list[str]
    scope: str
    organization: str
    user: str | None
    group: str | None
    signing_key: str
    generation: str
    state: str = CREATING
    calendly_webhook: str | None = None
    created_at: str = field(default_factory=isotime)
    updated_at: str = field(default_factory=isotime)
    etag: str | None = None

    @property
    def target_hash(self) -> str:
        return target_hash(self.target)

    def public(self) -> dict:
        """The subscription as callers see it: no signing key, target secrets redacted."""
        return {
            "id": self.id,
            "events": list(self.events),
            "scope": self.scope,
            "organization": self.organization,
            "user": self.user,
            "group": self.group,
            "target": public_target(self.target),
            "calendly_webhook": self.calendly_webhook,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def replace(self, **changes) -> "Subscription":
        return dataclasses.replace(self, **changes)


@dataclass
class Delivery:
    id: str
    subscription_id: str
    event: str
    event_key: str
    body: bytes
    status: str = PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: str = field(default_factory=isotime)
    created_at: str = field(default_factory=isotime)
    updated_at: str = field(default_factory=isotime)
    delivered_at: str | None = None
    etag: str | None = None

    def public(self, include_payload: bool = False) -> dict:
        view = {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at if self.status == PENDING else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
        }
        if include_payload:
            view["payload"] = self.body.decode("utf-8", "replace")
        return view

    def replace(self, **changes) -> "Delivery":
        return dataclasses.replace(self, **changes)
