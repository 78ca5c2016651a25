"""Subscribe and unsubscribe: the webhook-trigger contract on top of Calendly hooks.

This is orchestration: who may take which scope, which target, which id; the record's states and
its Calendly hook are moved only through ``shared.lifecycle`` (crash safety and races are argued
and tested there). Once a subscribe and an unsubscribe of the same subscription have both
answered, the subscription either exists with its hook or neither does.

Calendly calls a subscription on ``/api/calendly/events/<callback token>``: a random token, not
the management id (which is derived from the target, so anyone could compute it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Literal

from cachetools import TTLCache

from .accounts import DEFAULT as DEFAULT_ACCOUNT
from .accounts import AccountService
from .auth import FUNCTION_KEY_CALLER, Caller
from .azure_clients import SERVICEBUS_NOT_CONFIGURED as NOT_CONFIGURED
from .errors import BridgeError, ConcurrencyConflict
from .filters import Filters
from .lifecycle import CallbackUrls, Lifecycle
from .models import Clock, Endpoint, HttpEndpoint, Owner, ServiceBusEntity, Subscription, SubscriptionState, isotime, target_hash, utcnow
from .redaction import logvalue
from .settings import Settings
from .store.base import Store
from .targets.policy import Resolver, check_target_url
from .targets.servicebus import configured as servicebus_configured

if TYPE_CHECKING:
    from .schemas import ScopeFields, SubscribeBody

log = logging.getLogger("shared.subscriptions")

ACTIVE, DELETING, RETIRED = SubscriptionState.ACTIVE, SubscriptionState.DELETING, SubscriptionState.RETIRED
IN_PROGRESS = ("subscription_in_progress", "the same subscription is being created right now; retry")
CAS_ATTEMPTS = 5  # compare-and-set retries of one unsubscribe before it answers 409 (retry)
MEMBERSHIP_TTL_SECONDS = 300.0
EVENT_TYPES_TTL_SECONDS = 120.0  # the connector's dropdown asks on every designer refresh; Calendly's list changes rarely


def subscription_id(target: Endpoint, events: list[str], scope: str, user: str | None, group: str | None,
                    owner: Owner | None = None, exclude_rescheduled: bool = False, filters: Filters | None = None,
                    payload_format: str = "calendly", account: str = DEFAULT_ACCOUNT) -> str:
    """Same target + events + scope (+ owner, + options) -> same id, so repeating a subscribe is
    idempotent (and two concurrent identical subscribes collide on one insert). Owner-less
    (function-key) subscriptions without options hash exactly as before owners and options existed;
    two owners of one target get two ids, and so do two flows that differ in an option."""
    parts: list = [target.as_dict(), sorted(events), scope, user, group]
    if owner is not None:
        parts.append({"tenant": owner.tenant_id, "object_id": owner.object_id})
    if exclude_rescheduled:
        parts.append({"exclude_rescheduled": True})
    if filters:
        parts.append({"filters": {"event_types": sorted(filters.event_types), "hosts": sorted(filters.hosts)}})
    if payload_format != "calendly":
        parts.append({"payload": payload_format})
    if account != DEFAULT_ACCOUNT:
        parts.append({"account": account})
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class SubscriptionService:
    def __init__(self, settings: Settings, store: Store, accounts: AccountService, lifecycle: Lifecycle,
                 clock: Clock = utcnow, resolver: Resolver | None = None):
        self.settings = settings
        self.resolver = resolver  # the target guard's DNS (None: the system resolver)
        self.store = store
        self.accounts = accounts
        self.lifecycle = lifecycle
        self.clock = clock
        self._members: TTLCache = TTLCache(maxsize=1024, ttl=MEMBERSHIP_TTL_SECONDS, timer=time.monotonic)
        self._members_lock = threading.Lock()
        self._event_types: TTLCache = TTLCache(maxsize=256, ttl=EVENT_TYPES_TTL_SECONDS, timer=time.monotonic)
        self._event_types_lock = threading.Lock()

    def now(self) -> str:
        return isotime(self.clock())

    # Identity (GET /users/me), cached -----------------------------------------
    def identity(self, account: str = DEFAULT_ACCOUNT) -> dict:
        return self.accounts.identity(account)

    @property
    def urls(self) -> CallbackUrls:
        return self.lifecycle.urls

    def callback_url(self, sub: Subscription) -> str:
        return self.urls.of(sub)

    def location(self, sub_id: str) -> str:
        return f"{self.settings.require_public_url()}/api/subscriptions/{sub_id}"

    # Subscribe ------------------------------------------------------------------
    def subscribe(self, body: SubscribeBody, caller: Caller = FUNCTION_KEY_CALLER) -> tuple[Subscription, bool]:
        """Return (subscription, created). Raises BridgeError on bad input, a scope the caller may not
        take, or Calendly refusal."""
        if body.target is not None and not caller.organization_scope:
            raise BridgeError(403, "target_forbidden",
                              "Service Bus targets are for admins and holders of the app role "
                              f"'{self.settings.entra_organization_role}': the namespace's queues and topics are shared "
                              "infrastructure another team's consumers may read; use a callback URL")
        target = self.endpoint_for(body)
        self.settings.require_public_url()
        account = self.accounts.usable(caller, body.account)
        organization, user, group = self._scope_of(body, caller, account)
        events, owner = sorted(body.events), caller.owner
        filters = body.filters()
        draft = Subscription(id=subscription_id(target, events, body.scope, user, group, owner, body.exclude_rescheduled, filters,
                                                body.payload, account),
                             target=target, events=events, exclude_rescheduled=body.exclude_rescheduled, filters=filters,
                             payload_format=body.payload, account=account,
                             scope=body.scope, organization=organization, user=user, group=group,
                             signing_key=self.lifecycle.new_key(), generation=secrets.token_hex(8),
                             callback_token=self.lifecycle.new_token(),
                             owner_tenant=owner.tenant_id if owner else None, owner_id=owner.object_id if owner else None,
                             owner_name=owner.name if owner else None, created_at=self.now(), updated_at=self.now())
        self._check_owner_cap(draft, caller)
        try:
            record, inserted = self.lifecycle.claim(draft)
        except ConcurrencyConflict:
            raise BridgeError(409, *IN_PROGRESS, {"Retry-After": "2"}) from None
        if record.state == ACTIVE:
            return record, False
        try:
            record = self.lifecycle.activate(record, inserted)
        except ConcurrencyConflict:
            raise self._lost_activation(record) from None
        log.info("subscription outcome=created subscription=%s target=%s events=%s scope=%s hook=%s account=%s", record.id,
                 record.target.describe(), logvalue(",".join(record.events)), logvalue(record.scope),
                 logvalue(record.calendly_webhook), record.account)
        return record, True

    def _check_owner_cap(self, draft: Subscription, caller: Caller) -> None:
        """A signed-in maker holds at most MAX_SUBSCRIPTIONS_PER_OWNER subscriptions (a repeat of one
        they hold is not a new one); admins and key holders are not capped."""
        if caller.owner is None or caller.admin or self.store.get_subscription(draft.id) is not None:
            return
        cap = self.settings.max_subscriptions_per_owner
        held, _ = self.store.list_subscriptions(cap, owner_id=caller.owner.object_id)
        if len(held) >= cap:
            raise BridgeError(403, "subscription_limit_reached",
                              f"you hold {cap} subscriptions, the most one owner may (MAX_SUBSCRIPTIONS_PER_OWNER); "
                              "delete one you no longer need")

    def endpoint_for(self, body: SubscribeBody) -> Endpoint:
        """Where the subscription's events go; refuses targets the bridge may not call."""
        if body.target is not None:
            if not servicebus_configured(self.settings):
                raise BridgeError(400, "servicebus_not_configured", NOT_CONFIGURED)
            entity: Literal["queue", "topic"] = "queue" if body.target.queue else "topic"
            return ServiceBusEntity(entity=entity, name=body.target.queue or body.target.topic or "")
        return HttpEndpoint(url=check_target_url(body.target_url or "", self.settings, resolver=self.resolver))

    def event_types(self, query: ScopeFields, caller: Caller) -> list[dict]:
        """The Calendly event types a filter of a subscription at this scope may name (the connector's
        dropdown): the same owner and role rules as subscribing there; a user's own event types at
        user scope, the organization's at group and organization scope (Calendly lists event types
        by user or organization only). Cached briefly per list."""
        account = self.accounts.usable(caller, query.account)
        organization, user, _group = self._scope_of(query, caller, account)
        key = (organization, user)
        with self._event_types_lock:
            cached = self._event_types.get(key)
        if cached is None:
            cached = self.accounts.client(account).list_event_types(organization=organization if user is None else None, user=user)
            with self._event_types_lock:
                self._event_types[key] = cached
        return [dict(item) for item in cached]

    def hosts(self, query: ScopeFields, caller: Caller) -> list[dict]:
        """The hosts a filter at this scope may name (the connector's host dropdown): at user scope the
        one user the caller may subscribe for, at group and organization scope the organization's
        members (Calendly lists members by organization), by name. Same rules and cache as event types."""
        account = self.accounts.usable(caller, query.account)
        organization, user, _group = self._scope_of(query, caller, account)
        key = ("hosts", organization, user)
        with self._event_types_lock:
            cached = self._event_types.get(key)
        if cached is None:
            cached = sorted(self.accounts.client(account).list_members(organization=organization, user=user),
                            key=lambda m: (str(m.get("name") or ""), m["uri"]))
            with self._event_types_lock:
                self._event_types[key] = cached
        return [dict(item) for item in cached]

    def _scope_of(self, body: ScopeFields, caller: Caller, account: str) -> tuple[str, str | None, str | None]:
        """organization, user, group of the hook, in the account's organization. User scope without a
        user means, for a key holder, the PAT's owner; for a signed-in caller (with or without the
        organization role), their own Calendly user. Only the organization role (or a key) may name
        another user."""
        identity = self.identity(account)
        if body.scope != "user":
            if not caller.organization_scope:
                raise BridgeError(403, "scope_forbidden",
                                  f"{body.scope} scope needs the app role '{self.settings.entra_organization_role}'; "
                                  "without it you may subscribe at user scope to your own Calendly user")
            return identity["organization"], None, body.group if body.scope == "group" else None
        if caller.kind != "entra":
            return identity["organization"], body.user or identity["user"], None
        if caller.organization_scope and body.user:
            return identity["organization"], body.user, None
        own = self.calendly_user_of(caller, identity["organization"], account)
        if body.user and body.user != own:
            raise BridgeError(403, "scope_forbidden",
                              f"user scope is limited to your own Calendly user ({own}); another user's events need "
                              f"the app role '{self.settings.entra_organization_role}'")
        return identity["organization"], own, None

    def calendly_user_of(self, caller: Caller, organization: str, account: str = DEFAULT_ACCOUNT) -> str:
        """The caller's Calendly user URI: the organization member whose email is the token's UPN/email (cached)."""
        if not caller.email:
            raise BridgeError(403, "scope_forbidden",
                              "your token carries no user principal name from the bridge's home tenant to match a "
                              "Calendly user by (guests of other tenants and managed identities have none), so user "
                              "scope without a 'user' is not possible; organization scope needs the app role "
                              f"'{self.settings.entra_organization_role}' from the home tenant")
        key = (organization, caller.email)
        with self._members_lock:
            if key not in self._members:
                membership = self.accounts.client(account).membership_by_email(organization=organization, email=caller.email)
                # Calendly's filter may fold case its own way: the member's address must be the
                # caller's exactly, up to ASCII case.
                found = str((membership or {}).get("user", {}).get("email") or "")
                same = found.isascii() and found.lower() == caller.email
                self._members[key] = membership["user"]["uri"] if membership and same else None
            user = self._members[key]
        if user is None:
            raise BridgeError(403, "scope_forbidden",
                              f"no member of the Calendly organization has the email {caller.email} (your user principal name); "
                              "user scope is limited to your own Calendly user")
        return user

    def _lost_activation(self, record: Subscription) -> BridgeError:
        """The record changed while its hook was being made (the lifecycle took the hook back): an
        unsubscribe won (409 subscription_deleted), or another subscribe took it over (retry)."""
        current = self.store.get_subscription(record.id)
        if current is None or current.state in (DELETING, RETIRED) or current.generation != record.generation:
            log.info("subscription outcome=abandoned subscription=%s reason=unsubscribed_meanwhile", record.id)
            return BridgeError(409, "subscription_deleted",
                               "the subscription was unsubscribed while it was being created; nothing was kept")
        return BridgeError(409, *IN_PROGRESS, {"Retry-After": "2"})

    # Unsubscribe ----------------------------------------------------------------
    def unsubscribe(self, sub_id: str) -> bool:
        """Mark the record deleting, delete its Calendly hook(s), its deliveries, then the record.
        False when there was nothing to delete."""
        for _ in range(CAS_ATTEMPTS):
            sub = self.store.get_subscription(sub_id)
            if sub is None:
                return False
            if sub.state != DELETING:
                try:
                    sub = self.lifecycle.mark_deleting(sub)
                except ConcurrencyConflict:
                    continue  # a subscribe (or reconcile) moved it meanwhile: look again
            self.lifecycle.finish_delete(sub)
            log.info("subscription outcome=deleted subscription=%s", sub_id)
            return True
        raise ConcurrencyConflict(f"subscription {sub_id} kept changing while being deleted; retry")

    def stop_account(self, account: str) -> int:
        """Unsubscribe every subscription of ``account`` (its account is being retired); how many. A hook
        whose deletion Calendly refuses (the token revoked, Calendly down, the account gone already) is
        left to Calendly: the record, its deliveries and its callback path go all the same, so a call on
        that hook is answered 410 and Calendly stops it."""
        stopped, cursor = 0, None
        while True:
            page, cursor = self.store.list_subscriptions(100, cursor)
            stopped += sum(self.stop_account_record(sub.id) for sub in page if sub.account == account)
            if not cursor:
                return stopped

    def stop_account_record(self, sub_id: str) -> bool:
        """Unsubscribe one record of a retired account; its hook is left when Calendly refuses."""
        try:
            return self.unsubscribe(sub_id)
        except (BridgeError, ConcurrencyConflict) as exc:
            return self._drop_without_hook(sub_id, getattr(exc, "code", type(exc).__name__))

    def _drop_without_hook(self, sub_id: str, why: str) -> bool:
        for _ in range(CAS_ATTEMPTS):
            sub = self.store.get_subscription(sub_id)
            if sub is None:
                return False
            try:
                if sub.state != DELETING:
                    sub = self.lifecycle.mark_deleting(sub)
                if self.lifecycle.delete_version(sub):
                    log.warning("subscription outcome=deleted subscription=%s account=%s hook_left=%s reason=%s", sub_id,
                                sub.account, logvalue(sub.calendly_webhook), logvalue(why))
                    return True
            except ConcurrencyConflict:
                continue
        return False

    def unsubscribe_target(self, url: str, caller: Caller = FUNCTION_KEY_CALLER) -> list[str]:
        """Unsubscribe every subscription with this target URL that the caller may manage; their ids."""
        subs = [s for s in self.store.find_subscriptions_by_target(target_hash(HttpEndpoint(url=url.strip())))
                if caller.may_manage(s)]
        for sub in subs:
            self.unsubscribe(sub.id)
        return [sub.id for sub in subs]

    # Read -----------------------------------------------------------------------
    def get(self, sub_id: str) -> Subscription | None:
        return self.store.get_subscription(sub_id)

    def list(self, limit: int, cursor: str | None, owner_id: str | None = None) -> tuple[list[Subscription], str | None]:
        return self.store.list_subscriptions(limit, cursor, owner_id)
