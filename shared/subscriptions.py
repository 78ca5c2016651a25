"""Subscribe and unsubscribe: the webhook-trigger contract on top of Calendly hooks.

Crash safety: the record (with its signing key) is written *before* the Calendly hook is
created, and marked ``deleting`` before the hook is deleted, so any crash leaves a record
that reconciliation can finish, never an unknown hook.

Races: every state change is a compare-and-set on the record's ETag (``creating`` -> ``active``,
-> ``deleting``, deleting a known version), and whoever loses takes back what it made. A subscribe
that finds its record deleted (or taken over) after creating its hook deletes that hook and answers
409; an unsubscribe that meets a subscribe in flight marks the record ``deleting`` and the
subscribe's final write then fails. So once both requests have answered, the subscription either
exists with its hook or neither does.

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
from typing import TYPE_CHECKING

from cachetools import TTLCache

from .calendly import CalendlyClient, CalendlyError
from .errors import BridgeError, ConcurrencyConflict
from .auth import FUNCTION_KEY_CALLER, Caller
from .models import (Clock, Endpoint, HttpEndpoint, Owner, ServiceBusEntity, Subscription, SubscriptionState, isotime,
                     new_callback_token, target_hash, utcnow)
from .redaction import logvalue
from .settings import Settings
from .store.base import Store
from .targets.policy import Resolver, check_target_url
from .targets.servicebus import NOT_CONFIGURED, configured as servicebus_configured

if TYPE_CHECKING:
    from .schemas import SubscribeBody

log = logging.getLogger("shared.subscriptions")

ACTIVE, DELETING, RETIRED = SubscriptionState.ACTIVE, SubscriptionState.DELETING, SubscriptionState.RETIRED
IDENTITY_TTL_SECONDS = 3600.0
CAS_ATTEMPTS = 5  # compare-and-set retries of one unsubscribe before it answers 409 (retry)
MEMBERSHIP_TTL_SECONDS = 300.0


def subscription_id(target: Endpoint, events: list[str], scope: str, user: str | None, group: str | None,
                    owner: Owner | None = None) -> str:
    """Same target + events + scope (+ owner) -> same id, so repeating a subscribe is idempotent
    (and two concurrent identical subscribes collide on one insert). Owner-less (function-key)
    subscriptions hash exactly as before owners existed; two owners of one target get two ids."""
    parts: list = [target.as_dict(), sorted(events), scope, user, group]
    if owner is not None:
        parts.append({"tenant": owner.tenant_id, "object_id": owner.object_id})
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def new_signing_key() -> str:
    return secrets.token_urlsafe(32)


class SubscriptionService:
    def __init__(self, settings: Settings, store: Store, calendly: CalendlyClient, clock: Clock = utcnow,
                 resolver: Resolver | None = None):
        self.settings = settings
        self.resolver = resolver  # the target guard's DNS (None: the system resolver)
        self.store = store
        self.calendly = calendly
        self.clock = clock
        self._identity: TTLCache = TTLCache(maxsize=1, ttl=IDENTITY_TTL_SECONDS, timer=time.monotonic)
        self._identity_lock = threading.Lock()  # held while asking: concurrent subscribes share one call
        self._members: TTLCache = TTLCache(maxsize=1024, ttl=MEMBERSHIP_TTL_SECONDS, timer=time.monotonic)
        self._members_lock = threading.Lock()

    def now(self) -> str:
        return isotime(self.clock())

    # Identity (GET /users/me), cached -----------------------------------------
    def identity(self) -> dict:
        with self._identity_lock:
            identity = self._identity.get("me")
            if identity is None:
                me = self.calendly.me()
                identity = self._identity["me"] = {"user": me["uri"], "organization": me["current_organization"]}
            return identity

    def callback_prefix(self) -> str:
        """Every callback URL of this bridge starts with this."""
        return f"{self.settings.require_public_url()}/api/calendly/events/"

    def callback_url(self, sub: Subscription) -> str:
        """The URL Calendly calls for ``sub`` (the one place it is made): its random token's path,
        or, for a record made before tokens, its id's path until reconcile moves it."""
        return self.callback_prefix() + (sub.callback_token or sub.id)

    def callback_urls(self, sub: Subscription) -> set[str]:
        """Every URL on which a hook may call ``sub`` right now: its own, plus the old id path
        while reconcile is moving its hook to the token path (both answer meanwhile)."""
        urls = {self.callback_url(sub)}
        if sub.answers_legacy_path:
            urls.add(self.callback_prefix() + sub.id)
        return urls

    def location(self, sub_id: str) -> str:
        return f"{self.settings.require_public_url()}/api/subscriptions/{sub_id}"

    # Subscribe ------------------------------------------------------------------
    def subscribe(self, body: "SubscribeBody", caller: Caller = FUNCTION_KEY_CALLER) -> tuple[Subscription, bool]:
        """Return (subscription, created). Raises BridgeError on bad input, a scope the caller may not
        take, or Calendly refusal."""
        if body.target is not None and not caller.organization_scope:
            raise BridgeError(403, "target_forbidden",
                              "Service Bus targets are for admins and holders of the app role "
                              f"'{self.settings.entra_organization_role}': the namespace's queues and topics are shared "
                              "infrastructure another team's consumers may read; use a callback URL")
        target = self.endpoint_for(body)
        self.settings.require_public_url()
        organization, user, group = self._scope_of(body, caller)
        events, owner = sorted(body.events), caller.owner
        draft = Subscription(id=subscription_id(target, events, body.scope, user, group, owner), target=target, events=events,
                             scope=body.scope, organization=organization, user=user, group=group,
                             signing_key=new_signing_key(), generation=secrets.token_hex(8),
                             callback_token=new_callback_token(),
                             owner_tenant=owner.tenant_id if owner else None, owner_id=owner.object_id if owner else None,
                             owner_name=owner.name if owner else None, created_at=self.now(), updated_at=self.now())
        self._check_owner_cap(draft, caller)
        record, is_new = self._claim_record(draft)
        if record.state == ACTIVE:
            return record, False
        return self._activate(record, is_new), True

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

    def endpoint_for(self, body: "SubscribeBody") -> Endpoint:
        """Where the subscription's events go; refuses targets the bridge may not call."""
        if body.target is not None:
            if not servicebus_configured(self.settings):
                raise BridgeError(400, "servicebus_not_configured", NOT_CONFIGURED)
            entity = "queue" if body.target.queue else "topic"
            return ServiceBusEntity(entity=entity, name=body.target.queue or body.target.topic)
        return HttpEndpoint(url=check_target_url(body.target_url or "", self.settings, resolver=self.resolver))

    def _scope_of(self, body: "SubscribeBody", caller: Caller) -> tuple[str, str | None, str | None]:
        """organization, user, group of the hook. User scope without a user means, for a key holder, the
        PAT's owner; for a signed-in caller (with or without the organization role), their own
        Calendly user. Only the organization role (or a key) may name another user."""
        identity = self.identity()
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
        own = self.calendly_user_of(caller, identity["organization"])
        if body.user and body.user != own:
            raise BridgeError(403, "scope_forbidden",
                              f"user scope is limited to your own Calendly user ({own}); another user's events need "
                              f"the app role '{self.settings.entra_organization_role}'")
        return identity["organization"], own, None

    def calendly_user_of(self, caller: Caller, organization: str) -> str:
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
                membership = self.calendly.membership_by_email(organization=organization, email=caller.email)
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

    def _claim_record(self, draft: Subscription) -> tuple[Subscription, bool]:
        """The record for ``draft.id`` to activate, and whether this call created it. An active
        record is returned as it is; one being deleted is finished first; one a crash left in
        'creating' gets a fresh key (Calendly may hold a hook signed with the old one)."""
        existing = self.store.get_subscription(draft.id)
        if existing is not None and existing.state in (DELETING, RETIRED):
            self._finish_delete(existing)
            existing = None
        if existing is None:
            try:
                return self.store.create_subscription(draft), True
            except ConcurrencyConflict:
                raise BridgeError(409, "subscription_in_progress", "the same subscription is being created right now; retry",
                                  {"Retry-After": "2"}) from None
        if existing.state == ACTIVE:
            return existing, False
        return self.store.update_subscription(existing.replace(
            signing_key=new_signing_key(), callback_token=existing.callback_token or new_callback_token(),
            updated_at=self.now())), False

    def _activate(self, record: Subscription, is_new: bool) -> Subscription:
        try:
            hook = self.create_hook(record)
        except BridgeError:
            if is_new:
                self._discard(record)
            raise
        try:
            record = self.store.update_subscription(record.replace(state=ACTIVE, calendly_webhook=hook["uri"],
                                                                   updated_at=self.now()))
        except ConcurrencyConflict:
            raise self._lost_activation(record, hook["uri"]) from None
        log.info("subscription outcome=created subscription=%s target=%s events=%s scope=%s hook=%s", record.id,
                 record.target.describe(), logvalue(",".join(record.events)), logvalue(record.scope), logvalue(hook["uri"]))
        return record

    def _discard(self, record: Subscription) -> None:
        """Delete the record this subscribe made, unless someone else changed it meanwhile."""
        try:
            self.store.delete_subscription(record.id, etag=record.etag)
        except ConcurrencyConflict:
            pass

    def _lost_activation(self, record: Subscription, hook_uri: str) -> BridgeError:
        """The record changed while its hook was being made (an unsubscribe, or another subscribe
        took it over): take the hook back, so nothing calls a record that will not use it."""
        self.calendly.delete_webhook(hook_uri)
        current = self.store.get_subscription(record.id)
        if current is None or current.state in (DELETING, RETIRED) or current.generation != record.generation:
            log.info("subscription outcome=abandoned subscription=%s reason=unsubscribed_meanwhile hook=%s", record.id, hook_uri)
            return BridgeError(409, "subscription_deleted",
                               "the subscription was unsubscribed while it was being created; nothing was kept")
        return BridgeError(409, "subscription_in_progress", "the same subscription is being created right now; retry",
                           {"Retry-After": "2"})

    def create_hook(self, sub: Subscription) -> dict:
        kwargs = dict(url=self.callback_url(sub), events=sub.events, organization=sub.organization,
                      scope=sub.scope, user=sub.user, group=sub.group, signing_key=sub.signing_key)
        try:
            return self.calendly.create_webhook(**kwargs)
        except CalendlyError as exc:
            if exc.calendly_status != 409:
                raise
        # A hook for this URL survived a crash. Calendly never returns its signing key,
        # so replace it: find it (every page), delete it, create it with our key.
        for hook in self.calendly.list_webhooks(organization=sub.organization, scope=sub.scope, user=sub.user, group=sub.group):
            if hook.get("callback_url") == kwargs["url"] and hook.get("uri"):
                self.calendly.delete_webhook(hook["uri"])
        log.info("subscription %s: replaced a leftover Calendly hook", sub.id)
        return self.calendly.create_webhook(**kwargs)

    # Unsubscribe ----------------------------------------------------------------
    def unsubscribe(self, sub_id: str) -> bool:
        """Mark the record deleting (compare-and-set), delete its Calendly hook(s), its deliveries,
        then the record. False when there was nothing to delete."""
        for _ in range(CAS_ATTEMPTS):
            sub = self.store.get_subscription(sub_id)
            if sub is None:
                return False
            if sub.state != DELETING:
                try:
                    sub = self.store.update_subscription(sub.replace(state=DELETING, updated_at=self.now()))
                except ConcurrencyConflict:
                    continue  # a subscribe (or reconcile) moved it meanwhile: look again
            self._finish_delete(sub)
            log.info("subscription outcome=deleted subscription=%s", sub_id)
            return True
        raise ConcurrencyConflict(f"subscription {sub_id} kept changing while being deleted; retry")

    def _finish_delete(self, sub: Subscription) -> None:
        """Delete the hooks of this version of the record, then forget it."""
        for hook in dict.fromkeys(h for h in (sub.calendly_webhook, sub.legacy_webhook) if h):
            self.calendly.delete_webhook(hook)
        self.forget(sub)

    def forget(self, sub: Subscription) -> bool:
        """Delete the deliveries and the record, in this version only: when another request
        finished it first, or a new subscribe already took the id, nothing is touched."""
        current = self.store.get_subscription(sub.id)
        if current is None or current.etag != sub.etag:
            return False
        if sub.callback_token:  # Calendly may still call the old path: it is then told 410 (drop the hook)
            self.store.bury_callback(sub.callback_token, sub.id, sub.signing_key, self.now())
        self.store.delete_deliveries(sub.id)
        try:
            self.store.delete_subscription(sub.id, etag=sub.etag)
        except ConcurrencyConflict:
            return False
        return True

    def unsubscribe_target(self, url: str, caller: Caller = FUNCTION_KEY_CALLER) -> list[str]:
        """Unsubscribe every subscription with this target URL that the caller may manage; their ids."""
        subs = [s for s in self.store.find_subscriptions_by_target(target_hash(HttpEndpoint(url=url.strip())))
                if caller.may_manage(s)]
        for sub in subs:
            self.unsubscribe(sub.id)
        return [sub.id for sub in subs]

    def retire(self, sub: Subscription, reason: str) -> None:
        """The target is gone (404/410): stop Calendly calling and delete the deliveries (the
        record stays, retired, so Calendly's calls answer 410 and an operator sees why)."""
        current = self.store.get_subscription(sub.id)
        if current is None or current.state == RETIRED:
            return
        try:
            current = self.store.update_subscription(current.replace(state=RETIRED, updated_at=self.now()))
        except ConcurrencyConflict:
            return
        try:
            for hook in dict.fromkeys(h for h in (current.calendly_webhook, current.legacy_webhook) if h):
                self.calendly.delete_webhook(hook)
        except BridgeError as exc:
            log.warning("subscription %s retired but its Calendly hook could not be deleted yet: %s", sub.id, exc.code)
        self.store.delete_deliveries(sub.id)
        log.warning("subscription outcome=retired subscription=%s reason=%s", sub.id, logvalue(reason))

    # Read -----------------------------------------------------------------------
    def get(self, sub_id: str) -> Subscription | None:
        return self.store.get_subscription(sub_id)

    def list(self, limit: int, cursor: str | None, owner_id: str | None = None) -> tuple[list[Subscription], str | None]:
        return self.store.list_subscriptions(limit, cursor, owner_id)
