"""The subscription record's lifecycle: the only code that writes a record's ``state``, its Calendly
hook references (``calendly_webhook``, ``legacy_webhook``), its signing key and its callback token,
and the only code that creates or deletes a subscription's Calendly hook.

States and the named transitions between them::

    (none) --claim--> creating --activate--> active --mark_deleting--> deleting --finish_delete--> (none)
                         |  ^                  |  \\--retire--> retired --clear_hooks / finish_delete
                         |  '------rekey-------'   \\--start_move (new token, old hook kept) --replace_hook--> active
                         '--discard (its own subscribe failed)

Crash safety: the record (with its signing key) is written before its hook is created, and marked
``deleting`` before its hook is deleted, so a crash anywhere leaves a record reconciliation can
finish, never a hook nobody knows. A new key is written before the hook that signs with it.

Races: every write is a compare-and-set on the record's ETag. Whoever loses takes back what it
made: a hook created for a record that changed meanwhile is deleted at once (``attach``), and
``delete_version`` deletes only the version it was given. The callers (``SubscriptionService`` for the
management API, ``Reconciler`` for the timer) orchestrate these steps and never write the fields
above themselves.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable

from .calendly import CalendlyClient, CalendlyError
from .errors import BridgeError, ConcurrencyConflict
from .events import calendly_events
from .models import Clock, Subscription, SubscriptionState, isotime, new_callback_token, utcnow
from .redaction import logvalue
from .store.base import Store

log = logging.getLogger("shared.lifecycle")

ACTIVE, CREATING = SubscriptionState.ACTIVE, SubscriptionState.CREATING
DELETING, RETIRED = SubscriptionState.DELETING, SubscriptionState.RETIRED


def new_signing_key() -> str:
    return secrets.token_urlsafe(32)


class CallbackUrls:
    """Where Calendly calls a subscription: ``<public URL>/api/calendly/events/<callback token>``."""

    def __init__(self, public_url: Callable[[], str]):
        self._public_url = public_url

    def prefix(self) -> str:
        """Every callback URL of this bridge starts with this."""
        return f"{self._public_url()}/api/calendly/events/"

    def of(self, sub: Subscription) -> str:
        """The URL Calendly calls for ``sub`` (the one place it is made): its random token's path,
        or, for a record made before tokens, its id's path until reconcile moves it."""
        return self.prefix() + (sub.callback_token or sub.id)

    def answering(self, sub: Subscription) -> set[str]:
        """Every URL on which a hook may call ``sub`` right now: its own, plus the old id path
        while reconcile is moving its hook to the token path (both answer meanwhile)."""
        urls = {self.of(sub)}
        if sub.answers_legacy_path:
            urls.add(self.prefix() + sub.id)
        return urls


class Lifecycle:
    def __init__(self, store: Store, clients: Callable[[str], CalendlyClient], urls: CallbackUrls, clock: Clock = utcnow,
                 new_key: Callable[[], str] = new_signing_key, new_token: Callable[[], str] = new_callback_token):
        """``clients(account)``: the Calendly client of a record's account (shared.accounts)."""
        self.store = store
        self.clients = clients
        self.urls = urls
        self.clock = clock
        self.new_key = new_key
        self.new_token = new_token

    def now(self) -> str:
        return isotime(self.clock())

    # Creating ------------------------------------------------------------------------------
    def claim(self, draft: Subscription) -> tuple[Subscription, bool]:
        """The record for ``draft.id`` to activate, and whether this call inserted it. An active
        record is returned as it is; one being deleted (or retired) is finished first; one a crash
        left in ``creating`` gets a fresh key (Calendly may hold a hook signed with the old one).
        Raises ``ConcurrencyConflict`` when another request inserted or changed it meanwhile."""
        existing = self.store.get_subscription(draft.id)
        if existing is not None and existing.state in (DELETING, RETIRED):
            self.finish_delete(existing)
            existing = None
        if existing is None:
            return self.store.create_subscription(draft), True
        if existing.state == ACTIVE:
            return existing, False
        return self.store.update_subscription(existing.replace(
            signing_key=self.new_key(), callback_token=existing.callback_token or self.new_token(),
            updated_at=self.now())), False

    def activate(self, record: Subscription, inserted: bool) -> Subscription:
        """``creating`` -> ``active``: create the hook, then record it. A hook Calendly refused leaves
        nothing behind when this request inserted the record; a record that changed meanwhile gets
        its new hook deleted again (``ConcurrencyConflict``)."""
        try:
            hook = self.create_hook(record)
        except BridgeError:
            if inserted:
                self.discard(record)
            raise
        return self.attach(record, hook["uri"])

    def discard(self, record: Subscription) -> None:
        """Delete a record its own subscribe inserted, unless someone else changed it meanwhile."""
        try:
            self.store.delete_subscription(record.id, etag=record.etag)
        except ConcurrencyConflict:
            pass

    def attach(self, record: Subscription, hook_uri: str) -> Subscription:
        """Record ``hook_uri`` as the record's hook and the record as ``active`` (compare-and-set).
        Losing the race deletes the hook just made (nobody else would) and raises."""
        try:
            return self.store.update_subscription(record.replace(state=ACTIVE, calendly_webhook=hook_uri,
                                                                 updated_at=self.now()))
        except ConcurrencyConflict:
            self.clients(record.account).delete_webhook(hook_uri)
            raise

    def create_hook(self, sub: Subscription) -> dict:
        """Create ``sub``'s Calendly hook with its key on its callback URL. A hook for that URL that
        survived a crash (Calendly answers 409 and never returns a signing key) is found on every
        page of its scope, deleted and made again with the record's key."""
        url = self.urls.of(sub)
        calendly = self.clients(sub.account)

        def create() -> dict:
            return calendly.create_webhook(url=url, events=calendly_events(sub.events), organization=sub.organization, scope=sub.scope,
                                                user=sub.user, group=sub.group, signing_key=sub.signing_key)
        try:
            return create()
        except CalendlyError as exc:
            if exc.calendly_status != 409:
                raise
        for hook in calendly.list_webhooks(organization=sub.organization, scope=sub.scope, user=sub.user, group=sub.group):
            if hook.get("callback_url") == url and hook.get("uri"):
                calendly.delete_webhook(hook["uri"])
        log.info("subscription %s: replaced a leftover Calendly hook", sub.id)
        return create()

    # Repairing (reconcile) -------------------------------------------------------------------
    def rekey(self, sub: Subscription) -> Subscription:
        """Before a lost or disabled hook is made again: a new signing key, no hook known, a callback
        token. A ``creating`` record keeps its age, so an interrupted repair is finished next run."""
        return self.store.update_subscription(sub.replace(
            signing_key=self.new_key(), calendly_webhook=None, legacy_webhook=None,
            callback_token=sub.callback_token or self.new_token(),
            updated_at=sub.updated_at if sub.state == CREATING else self.now()))

    def start_move(self, sub: Subscription) -> Subscription:
        """A record made before callback tokens: give it a token and note its old hook, so the id
        path keeps answering until that hook is gone (see ``drop_old_hooks``)."""
        return self.store.update_subscription(sub.replace(
            callback_token=self.new_token(), legacy_webhook=sub.calendly_webhook, updated_at=self.now()))

    def replace_hook(self, sub: Subscription, delete_first: Iterable[str] = (), delete_after: Iterable[str] = ()) -> Subscription:
        """Delete ``delete_first`` (a hook on the same URL would make Calendly answer 409), create the
        record's hook and attach it, then delete ``delete_after`` (hooks it moved away from)."""
        for uri in delete_first:
            self.clients(sub.account).delete_webhook(uri)
        sub = self.attach(sub, self.create_hook(sub)["uri"])
        return self.drop_old_hooks(sub, delete_after)

    def drop_old_hooks(self, sub: Subscription, hooks: Iterable[str]) -> Subscription:
        """Delete the hooks the record has moved away from; then the id path stops answering."""
        for uri in hooks:
            self.clients(sub.account).delete_webhook(uri)
        if sub.legacy_webhook:
            sub = self.store.update_subscription(sub.replace(legacy_webhook=None, updated_at=self.now()))
            log.info("subscription outcome=moved subscription=%s hook=%s", sub.id, sub.calendly_webhook)
        return sub

    # Ending ------------------------------------------------------------------------------------
    def mark_deleting(self, sub: Subscription) -> Subscription:
        """Any state -> ``deleting`` (compare-and-set): from here on a subscribe in flight loses."""
        return self.store.update_subscription(sub.replace(state=DELETING, updated_at=self.now()))

    def finish_delete(self, sub: Subscription, hooks: Iterable[str] | None = None) -> bool:
        """Delete ``hooks`` (default: the ones the record knows), then ``delete_version`` (this version of the record)."""
        for uri in dict.fromkeys(hooks if hooks is not None else (h for h in (sub.calendly_webhook, sub.legacy_webhook) if h)):
            self.clients(sub.account).delete_webhook(uri)
        return self.delete_version(sub)

    def delete_version(self, sub: Subscription) -> bool:
        """Delete the deliveries and the record, in this version only: when another request
        finished it first, or a new subscribe already took the id, nothing is touched. The callback
        token is buried so a call Calendly still makes on it is answered 410 (drop the hook)."""
        current = self.store.get_subscription(sub.id)
        if current is None or current.etag != sub.etag:
            return False
        if sub.callback_token:
            self.store.bury_callback(sub.callback_token, sub.id, sub.signing_key, self.now())
        self.store.delete_deliveries(sub.id)
        try:
            self.store.delete_subscription(sub.id, etag=sub.etag)
        except ConcurrencyConflict:
            return False
        return True

    def retire(self, sub: Subscription, reason: str) -> None:
        """The target is gone (404/410): stop Calendly calling and delete the deliveries (the record
        stays, ``retired``, so Calendly's calls answer 410 and an operator sees why)."""
        current = self.store.get_subscription(sub.id)
        if current is None or current.state == RETIRED:
            return
        try:
            current = self.store.update_subscription(current.replace(state=RETIRED, updated_at=self.now()))
        except ConcurrencyConflict:
            return
        try:
            for uri in dict.fromkeys(h for h in (current.calendly_webhook, current.legacy_webhook) if h):
                self.clients(current.account).delete_webhook(uri)
        except BridgeError as exc:
            log.warning("subscription %s retired but its Calendly hook could not be deleted yet: %s", sub.id, exc.code)
        self.store.delete_deliveries(sub.id)
        log.warning("subscription outcome=retired subscription=%s reason=%s", sub.id, logvalue(reason))

    def clear_hooks(self, sub: Subscription, hooks: Iterable[str]) -> Subscription:
        """A retired record whose hooks outlived it: delete them, then forget their references."""
        for uri in hooks:
            self.clients(sub.account).delete_webhook(uri)
        return self.store.update_subscription(sub.replace(calendly_webhook=None, legacy_webhook=None,
                                                          updated_at=self.now()))
