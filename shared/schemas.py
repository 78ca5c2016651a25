"""Request bodies of the management API, validated with pydantic."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .accounts import NAME as ACCOUNT_NAME
from .errors import BridgeError
from .events import RESCHEDULE_HALVES, SCOPES, SUBSCRIBABLE, TRIGGER_EVENTS, scope_conflicts
from .filters import FILTERABLE_EVENTS, Filters, event_type_problem, host_problem, resource_uri
from .filters import MAX_VALUES as MAX_FILTER_VALUES

# Azure's rules for Service Bus queue and topic names (the entity path relative to the namespace):
# 1-260 characters of letters, digits, '.', '-', '_' and '/', starting and ending with a letter or
# digit; '/' separates path segments, so no empty segment ('//') and no '.' or '..' segment.
_ENTITY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._\-/]{0,258}[A-Za-z0-9])?")


# A Calendly user or group URI: "<API base>/users/<id>" or ".../groups/<id>". The connector definition's
# `pattern` for `user`/`group` is this one, plus "" for a cleared field (tests/test_connector_fuzz.py compares them).
CALENDLY_URI = {kind: resource_uri(f"{kind}s") for kind in ("user", "group")}


def entity_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Service Bus queue/topic name, or None when it is."""
    if not 1 <= len(name) <= 260:
        return "must be 1 to 260 characters long"
    if not _ENTITY_NAME.fullmatch(name):
        return ("may contain only letters, digits, '.', '-', '_' and '/', "
                "and must start and end with a letter or digit")
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        return "must not contain '//' or a '.' or '..' path segment"
    return None


class ServiceBusBody(BaseModel):
    """``target`` of a subscribe body: a Service Bus queue or topic instead of a callback URL."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["servicebus"]
    queue: str | None = Field(default=None, max_length=260)
    topic: str | None = Field(default=None, max_length=260)

    @field_validator("queue", "topic")
    @classmethod
    def _entity_name(cls, name: str | None) -> str | None:
        problem = None if name is None else entity_name_problem(name)
        if problem:
            raise ValueError(f"a Service Bus entity name {problem}")
        return name

    @model_validator(mode="after")
    def _one_entity(self) -> ServiceBusBody:
        if (self.queue is None) == (self.topic is None):
            raise ValueError("a servicebus target needs exactly one of 'queue' or 'topic'")
        return self


class ScopeFields(BaseModel):
    """Whose events: ``scope`` and its ``user``/``group`` URI, as subscribe takes them (also the query of
    GET /api/event-types, so a dropdown lists exactly what the same trigger may subscribe to)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    scope: str = "organization"
    user: str | None = Field(default=None, max_length=512)
    group: str | None = Field(default=None, max_length=512)
    # Which Calendly account (shared.accounts); none: "default", or the only one the caller may use
    account: str | None = Field(default=None, max_length=64)

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if not value:  # a cleared connector field
            return None
        if not ACCOUNT_NAME.fullmatch(value):
            raise ValueError("must be an account name (1-32 lower-case letters, digits and inner hyphens)")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, scope: str) -> str:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {list(SCOPES)}")
        return scope

    @field_validator("user", "group")
    @classmethod
    def _uri(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:  # the connector's form sends "" for a cleared field: the same as none
            return None
        kind = str(info.field_name)
        if not CALENDLY_URI[kind].fullmatch(value):
            raise ValueError(f"must be a Calendly {info.field_name} URI (https://api.calendly.com/{info.field_name}s/<id>)")
        return value


class SubscribeBody(ScopeFields):
    """POST /api/subscriptions. Unknown fields are ignored (platforms add their own)."""

    url: str | None = Field(default=None, max_length=4096)
    callbackUrl: str | None = Field(default=None, max_length=4096)
    notificationUrl: str | None = Field(default=None, max_length=4096)
    events: list[str] = Field(min_length=1, max_length=len(SUBSCRIBABLE))
    target: ServiceBusBody | None = None
    exclude_rescheduled: StrictBool = False
    event_types: list[str] | None = Field(default=None, max_length=MAX_FILTER_VALUES)
    hosts: list[str] | None = Field(default=None, max_length=MAX_FILTER_VALUES)
    payload: Literal["calendly", "enriched"] = "calendly"  # shared.enrichment

    @field_validator("event_types", "hosts")
    @classmethod
    def _filter_values(cls, values: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Every value well formed (each problem named); kept sorted and unique, so the same filters
        in another order are the same subscription."""
        problem_of = event_type_problem if info.field_name == "event_types" else host_problem
        problems = [p for p in (problem_of(v) for v in values or []) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return sorted(set(values)) if values else None

    def filters(self) -> Filters:
        return Filters(tuple(self.event_types or ()), tuple(self.hosts or ()))

    @field_validator("events")
    @classmethod
    def _known_unique(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e not in SUBSCRIBABLE]
        if unknown:
            raise ValueError(f"unknown Calendly event(s) {unknown}; expected some of {list(SUBSCRIBABLE)}")
        if len(set(events)) != len(events):
            raise ValueError("events must be unique")
        return events

    @model_validator(mode="after")
    def _one_target(self) -> SubscribeBody:
        urls = [u for u in (self.url, self.callbackUrl, self.notificationUrl) if u]
        if len(set(urls)) > 1:
            raise ValueError("give the target URL once, under 'url', 'callbackUrl' or 'notificationUrl'")
        if urls and self.target is not None:
            raise ValueError("give either a target URL or a 'target' object, not both")
        if not urls and self.target is None:
            raise ValueError("the target URL is missing: set 'url', 'callbackUrl' or 'notificationUrl'")
        return self

    @model_validator(mode="after")
    def _scope_fits(self) -> SubscribeBody:
        conflicts = scope_conflicts(self.events, self.scope)
        if conflicts:
            raise PydanticCustomError("invalid_scope", "{events} can only be subscribed at organization scope",
                                      {"events": ", ".join(conflicts)})
        if self.scope == "group" and not self.group:
            raise ValueError("group scope needs 'group' (a Calendly group URI)")
        if (self.event_types or self.hosts) and not set(self.events) <= set(FILTERABLE_EVENTS):
            raise ValueError("event_types and hosts filters apply to invitee.created and invitee.canceled only "
                             "(the events whose payload names the scheduled event)")
        if self.exclude_rescheduled and not set(self.events) & set(RESCHEDULE_HALVES):
            raise ValueError("exclude_rescheduled applies to invitee.created and invitee.canceled, which this "
                             "subscription does not include")
        return self

    @property
    def target_url(self) -> str | None:
        return self.url or self.callbackUrl or self.notificationUrl


class TriggerBody(BaseModel):
    """POST /api/triggers/{trigger}: what the custom connector sends. ``scope`` is required (no
    default applies on this route, so the connector's and the bridge's defaults cannot disagree);
    ``events`` only on the "event" trigger, whose path does not name them. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    url: str = Field(min_length=1, max_length=4096)
    scope: str
    user: str | None = Field(default=None, max_length=512)
    group: str | None = Field(default=None, max_length=512)
    events: list[str] | None = None
    exclude_rescheduled: StrictBool = False
    payload: Literal["calendly", "enriched"] = "calendly"
    event_types: list[str] | None = None  # validated as on POST /api/subscriptions
    hosts: list[str] | None = None
    account: str | None = None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}".replace("Value error, ", ""))
    return "; ".join(parts)


def parse_subscribe(data: Any) -> SubscribeBody:
    if not isinstance(data, dict):
        raise BridgeError(400, "invalid_body", "the body must be a JSON object")
    try:
        return SubscribeBody.model_validate(data)
    except ValidationError as exc:
        code = "invalid_scope" if any(e["type"] == "invalid_scope" for e in exc.errors()) else "invalid_subscription"
        raise BridgeError(400, code, _describe(exc)) from None


def parse_scope_query(params: Mapping[str, str]) -> ScopeFields:
    """GET /api/event-types?scope=&user=&group=: the scope a trigger would subscribe at (default user)."""
    try:
        query = ScopeFields.model_validate({"scope": params.get("scope") or "user", "user": params.get("user"),
                                            "group": params.get("group"), "account": params.get("account")})
    except ValidationError as exc:
        raise BridgeError(400, "invalid_query", _describe(exc)) from None
    if query.scope == "group" and not query.group:
        raise BridgeError(400, "invalid_query", "group scope needs 'group' (a Calendly group URI)")
    return query


def parse_trigger(trigger: str, data: Any) -> SubscribeBody:
    """The subscribe body a trigger stands for: the same one ``POST /api/subscriptions`` takes for the
    same target, events and scope (hence the same subscription). ``trigger`` must be a known one."""
    if not isinstance(data, dict):
        raise BridgeError(400, "invalid_body", "the body must be a JSON object")
    try:
        body = TriggerBody.model_validate(data)
    except ValidationError as exc:
        raise BridgeError(400, "invalid_subscription", _describe(exc)) from None
    fixed = TRIGGER_EVENTS[trigger]
    if fixed is not None and body.events is not None:
        # Refused, not ignored: a caller sending other events would silently get the path's.
        raise BridgeError(400, "invalid_subscription",
                          f"events: the {trigger} trigger always subscribes to {', '.join(fixed)}; send no events")
    subscribe = body.model_dump(exclude_none=True)
    if fixed is not None:
        subscribe["events"] = list(fixed)
    return parse_subscribe(subscribe)
