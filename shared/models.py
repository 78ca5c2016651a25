"""The records the bridge keeps: subscriptions and deliveries, their states and targets."""
from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from .filters import Filters
from .redaction import fingerprint, logvalue, render_url

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def isotime(moment: datetime | None = None, plus_seconds: float = 0.0) -> str:
    """The one timestamp format: fixed-width UTC ISO-8601, so timestamps sort as strings in every store."""
    moment = (moment or utcnow()) + timedelta(seconds=plus_seconds)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """The inverse of ``isotime`` (and any ISO-8601 time with an offset or ``Z``)."""
    return datetime.fromisoformat(text)


# The random segment of a subscription's callback path: 32 random bytes, URL-safe base64 (43
# characters), so it cannot be mistaken for a management id (32 hex digits) or guessed from one.
CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_callback_token() -> str:
    return secrets.token_urlsafe(32)


class SubscriptionState(StrEnum):
    CREATING = "creating"  # the record exists; its Calendly hook may not yet
    ACTIVE = "active"
    DELETING = "deleting"  # unsubscribe began: the hook is being deleted, then the record
    RETIRED = "retired"    # the target said the flow is gone; kept for the delivery log


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # recorded, not yet delivered: the outbox
    DELIVERED = "delivered"
    DEAD = "dead"            # attempts ran out: kept for replay
    DISCARDED = "discarded"  # the subscription was retired or deleted meanwhile


@dataclass(frozen=True)
class HttpEndpoint:
    """A Logic Apps / Power Automate callback URL (or any https endpoint)."""

    url: str
    type: Literal["http"] = "http"

    def as_dict(self) -> dict:
        return {"type": "http", "url": self.url}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.url)

    def public(self) -> dict:
        """Never the URL itself: it is a bearer credential (see shared.redaction)."""
        return {"type": "http", "url": render_url(self.url), "fingerprint": self.fingerprint}

    def describe(self) -> str:
        return f"{logvalue(render_url(self.url))} fingerprint={self.fingerprint}"


@dataclass(frozen=True)
class ServiceBusEntity:
    """A Service Bus queue or topic in the bridge's namespace."""

    entity: Literal["queue", "topic"]
    name: str
    type: Literal["servicebus"] = "servicebus"

    def as_dict(self) -> dict:
        return {"type": "servicebus", "entity": self.entity, "name": self.name}

    @property
    def fingerprint(self) -> str:
        return fingerprint(f"servicebus\n{self.entity}\n{self.name}")

    def public(self) -> dict:
        return {"type": "servicebus", self.entity: self.name, "fingerprint": self.fingerprint}

    def describe(self) -> str:
        return f"{logvalue(f'servicebus:{self.entity}:{self.name}')} fingerprint={self.fingerprint}"


Endpoint = HttpEndpoint | ServiceBusEntity


def endpoint_from_dict(data: dict) -> Endpoint:
    if data.get("type") == "servicebus":
        return ServiceBusEntity(entity=data.get("entity", "queue"), name=data["name"])
    return HttpEndpoint(url=data["url"])


def target_hash(target: Endpoint) -> str:
    """Index key for 'every subscription with this target'."""
    if isinstance(target, HttpEndpoint):
        material = f"http\n{target.url}"
    else:
        material = f"{target.type}\n{target.entity}\n{target.name}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Owner:
    """Who subscribed, when it was a Microsoft Entra ID caller (function-key subscriptions have none)."""

    tenant_id: str
    object_id: str
    name: str | None = None

    def public(self) -> dict:
        return {"tenant_id": self.tenant_id, "object_id": self.object_id, "name": self.name}


@dataclass
class Subscription:
    id: str
    target: Endpoint
    events: list[str]
    scope: str
    organization: str
    user: str | None
    group: str | None
    signing_key: str
    generation: str
    state: SubscriptionState = SubscriptionState.CREATING
    calendly_webhook: str | None = None
    created_at: str = field(default_factory=isotime)
    updated_at: str = field(default_factory=isotime)
    # The random segment of the callback path Calendly calls (never derived from the id, never
    # shown by the management API). None: a record made before tokens, still called on its id.
    callback_token: str | None = None
    # A hook still calling the old id path while reconcile moves the record to its token path.
    legacy_webhook: str | None = None
    owner_tenant: str | None = None
    owner_id: str | None = None
    owner_name: str | None = None
    # Leave out the halves of a reschedule (Calendly's invitee.canceled with rescheduled: true and
    # invitee.created with old_invitee set): part of the subscription's identity.
    exclude_rescheduled: bool = False
    filters: Filters = field(default_factory=Filters)  # which invitee events reach the target (shared.filters)
    # "calendly": Calendly's bytes as they came; "enriched": with an added "enriched" member (shared.enrichment)
    payload_format: str = "calendly"
    # Which Calendly account's token makes and lists the hook (shared.accounts; "default": the PAT of the settings)
    account: str = "default"
    etag: str | None = None

    @property
    def target_hash(self) -> str:
        return target_hash(self.target)

    @property
    def owner(self) -> Owner | None:
        return Owner(self.owner_tenant, self.owner_id, self.owner_name) if self.owner_tenant and self.owner_id else None

    def owned_by(self, owner: Owner | None) -> bool:
        """Same owner (tenant and object id; the name may change), or both owner-less."""
        mine = self.owner
        if mine is None or owner is None:
            return mine is None and owner is None
        return (mine.tenant_id, mine.object_id) == (owner.tenant_id, owner.object_id)

    def public(self) -> dict:
        """The subscription as callers see it: no signing key, target secrets redacted."""
        return {
            "id": self.id,
            "events": list(self.events),
            "scope": self.scope,
            "organization": self.organization,
            "user": self.user,
            "group": self.group,
            "exclude_rescheduled": self.exclude_rescheduled,
            "filters": self.filters.as_dict(),
            "payload": self.payload_format,
            "account": self.account,
            "target": self.target.public(),
            "calendly_webhook": self.calendly_webhook,
            "state": str(self.state),
            "owner": self.owner.public() if self.owner else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @property
    def answers_legacy_path(self) -> bool:
        """Whether Calendly may still call this record on ``/calendly/events/<id>``."""
        return self.callback_token is None or self.legacy_webhook is not None

    def replace(self, **changes) -> Subscription:
        return dataclasses.replace(self, **changes)


@dataclass
class Delivery:
    id: str
    subscription_id: str
    event: str
    event_key: str
    body: bytes
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: str = field(default_factory=isotime)
    created_at: str = field(default_factory=isotime)
    updated_at: str = field(default_factory=isotime)
    delivered_at: str | None = None
    etag: str | None = None
    # The store's own bookkeeping, like the etag: the key of the delivery's row in the Table store's
    # due/expiry index (shared/store/tables.py), carried from a read to the next update.
    index_key: str | None = field(default=None, compare=False, repr=False)

    def public(self, include_payload: bool = False) -> dict:
        view = {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "event": self.event,
            "status": str(self.status),
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at if self.status == DeliveryStatus.PENDING else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
        }
        if include_payload:
            view["payload"] = self.body.decode("utf-8", "replace")
        return view

    def replace(self, **changes) -> Delivery:
        return dataclasses.replace(self, **changes)


@dataclass
class Account:
    """A Calendly account the bridge serves besides ``default`` (shared.accounts): its token is the
    Key Vault secret ``secret_name``; ``organization`` and ``user`` are what Calendly said of that
    token when an admin declared it. Never holds the token itself."""

    name: str
    secret_name: str
    organization: str
    user: str
    status: str = "active"  # "active", or "retiring" while its subscriptions are being stopped
    created_at: str = field(default_factory=isotime)
    updated_at: str = field(default_factory=isotime)
    etag: str | None = None

    def public(self, admin: bool) -> dict:
        """As callers see it: admins also see which Key Vault secret holds its token (a name, never a value)."""
        view = {"name": self.name, "organization": self.organization, "status": self.status, "created_at": self.created_at}
        if admin:
            view.update(secret_name=self.secret_name, user=self.user, updated_at=self.updated_at)
        return view

    def replace(self, **changes) -> Account:
        return dataclasses.replace(self, **changes)
