"""Reconciliation: make Calendly's hooks and the bridge's records agree again, at the cost of
Calendly's list pages, not of the number of subscriptions.

One run lists Calendly's hooks once per scope in use (pages of 100) and diffs them against the
records. Only what differs costs a call:

- ``active`` whose hook is listed, ``active`` and calls the URL its hook must have: nothing;
- ``active`` whose hook is missing or ``disabled`` (after 24 h of failed deliveries): a new
  signing key, then a new hook (``recreated``); one still calling an outdated URL is moved: a new
  hook with the same key first, then the old one deleted;
- ``active`` made before callback tokens (its hook calls the id path): given a random callback
  token and moved the same gapless way (``moved``): the record first notes the old hook (so the
  id path keeps answering), then the new hook on the token URL, then the old hook goes and the
  id path answers 404 from then on;
- ``creating`` older than the grace (a subscribe that crashed): finished like a missing hook
  (``completed``); younger ones may be in flight and are left alone;
- ``deleting``: its hook, when listed, is deleted, then the record (``deleted``);
- ``retired`` still knowing a hook: the hook, when listed, is deleted (``deleted``);
- hooks calling this bridge's callback route that no record owns (orphans) are deleted.

Scopes in use: those of the records, plus organization and the PAT owner's user scope (where
orphans may hide). A listing that fails (a member's PAT may not list organization hooks) is
reported and its records are left alone.

Every call spends the PAT's rate limit, which makers' subscribes share, so a run spends only
``RECONCILE_RATE_SHARE_PERCENT`` of it (``CallBudget``): it waits for Calendly's window to reset
rather than eat into the rest, honours a 429's ``X-RateLimit-Reset``, and makes at most that
share of one window in repair calls. Whatever it could not do is ``leftover``: each step leaves
the records in a state the next run finishes, so a rate-limited run loses nothing.

The timer also runs the retry safety net: pending deliveries whose queue message was lost.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from .accounts import DEFAULT as DEFAULT_ACCOUNT
from .accounts import AccountService
from .calendly import CalendlyClient, CallBudget, is_rate_limited
from .delivery import DeliveryService
from .errors import BridgeError, ConcurrencyConflict, StoreUnavailable
from .lifecycle import Lifecycle
from .models import Clock, Subscription, SubscriptionState, isotime, utcnow
from .settings import Settings
from .store.base import Store
from .subscriptions import SubscriptionService

log = logging.getLogger("shared.reconcile")

ACTIVE, CREATING = SubscriptionState.ACTIVE, SubscriptionState.CREATING
DELETING, RETIRED = SubscriptionState.DELETING, SubscriptionState.RETIRED

# A 'creating' record younger than this may belong to a subscribe still in flight.
CREATING_GRACE_SECONDS = 120
# The most one run waits, in all, for Calendly's rate-limit window: two 60 s windows, well inside
# host.json's functionTimeout (5 min) and the timer's period, so the timer invocation is never killed.
MAX_RUN_WAIT_SECONDS = 120.0
STORE_PAGE = 500

ScopeKey = tuple[str, str, "str | None", "str | None"]  # organization, scope, user, group


def scope_of(sub: Subscription) -> ScopeKey:
    return (sub.organization, sub.scope, sub.user if sub.scope == "user" else None,
            sub.group if sub.scope == "group" else None)


def hook_scope(hook: dict) -> ScopeKey:
    scope = str(hook.get("scope") or "")
    return (str(hook.get("organization") or ""), scope, hook.get("user") if scope == "user" else None,
            hook.get("group") if scope == "group" else None)


@dataclass
class Listing:
    """One scope's hooks as Calendly listed them."""

    hooks: list[dict]
    by_uri: dict[str, dict] = field(init=False)
    by_url: dict[str, list[dict]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_uri = {h["uri"]: h for h in self.hooks if h.get("uri")}
        self.by_url = defaultdict(list)
        for hook in self.by_uri.values():
            self.by_url[hook.get("callback_url") or ""].append(hook)


@dataclass
class Repair:
    """What one record needs: hooks to delete before creating (a hook with the same URL would make
    Calendly answer 409), whether to create its hook, hooks to delete once the new one exists."""

    sub: Subscription
    outcome: str  # the summary counter it moves: recreated | completed | deleted | moved
    delete_first: list[dict] = field(default_factory=list)
    create: bool = False
    delete_after: list[dict] = field(default_factory=list)
    renew_key: bool = False
    new_token: bool = False  # a record made before callback tokens: give it one, move gaplessly
    reason: str = ""

    @property
    def calls(self) -> int:
        return len(self.delete_first) + int(self.create) + len(self.delete_after)


@dataclass
class ReconcileError:
    code: str
    message: str
    subscription: str | None = None


LAST_RUN_NOTE = "last_reconcile"  # the store's note with the last run's summary (GET /api/status)


@dataclass
class ReconcileReport:
    """What one run found and did (printed by ``python -m shared reconcile`` as JSON, logged as one
    ``reconcile outcome=…`` line). The counters a repair moves are named by ``Repair.outcome``."""

    checked: int = 0
    healthy: int = 0
    recreated: int = 0
    completed: int = 0
    deleted: int = 0
    moved: int = 0
    orphans_deleted: int = 0
    leftover: int = 0
    scopes: int = 0
    list_pages: int = 0
    accounts: int = 0
    calendly_calls: int = 0
    waited_seconds: float = 0.0
    leftover_reason: str = ""
    errors: list[ReconcileError] = field(default_factory=list)
    overdue_deliveries: dict[str, int] | None = None  # the timer's retry safety net, by outcome (run_timer only)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def failed(self, exc: BridgeError, doing: str | None, sub_id: str | None = None) -> None:
        self.errors.append(ReconcileError(exc.code, f"{doing}: {exc.message}" if doing else exc.message, sub_id))

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["errors"] = [{"subscription": e.subscription, "code": e.code, "message": e.message} for e in self.errors]
        if self.overdue_deliveries is None:
            del data["overdue_deliveries"]
        return data

    def log_line(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.as_dict().items() if k != "errors" and v != "")
        return f"reconcile outcome={'errors' if self.errors else 'ok'} {counts} errors={len(self.errors)}"


class Reconciler:
    def __init__(self, settings: Settings, store: Store, accounts: AccountService, subscriptions: SubscriptionService,
                 lifecycle: Lifecycle, deliveries: DeliveryService, clock: Clock = utcnow,
                 sleep: Callable[[float], None] = time.sleep, max_wait: float = MAX_RUN_WAIT_SECONDS):
        self.settings = settings
        self.store = store
        self.accounts = accounts  # each account's client and token identity (cached), shared with subscribe
        self.subscriptions = subscriptions
        self.lifecycle = lifecycle
        self.deliveries = deliveries
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait

    def run_timer(self) -> ReconcileReport:
        """The timer's work: reconcile hooks, then the retry safety net (every due delivery when no
        queue retries them, e.g. the SQLite store under ``func start``)."""
        report = self.reconcile()
        late = self.deliveries.scheduler.safety_net_after_seconds
        report.overdue_deliveries = self.deliveries.retry_due(overdue_seconds=late)
        return report

    # The run ------------------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        """Each account on its own (its records, its scopes, its token's rate budget); one report."""
        report = ReconcileReport()
        records = self._all_subscriptions()
        names = self.accounts.names()
        if DEFAULT_ACCOUNT not in names and any(r.account == DEFAULT_ACCOUNT for r in records):
            names.insert(0, DEFAULT_ACCOUNT)  # no PAT any more: its records' errors say so, as before accounts
        for name in names:
            self._reconcile_account(name, [r for r in records if r.account == name], report)
        self._stop_strays([r for r in records if r.account not in names], report)
        report.accounts = len(names)
        log.log(logging.WARNING if report.errors else logging.INFO, "%s", report.log_line())
        self._remember(report)
        return report

    def _remember(self, report: ReconcileReport) -> None:
        """The run's summary, for the console's admin view (GET /api/status); at most 20 errors kept."""
        summary = {"finished_at": isotime(self.clock()), **report.as_dict()}
        summary["errors"] = summary["errors"][:20]
        try:
            self.store.save_note(LAST_RUN_NOTE, json.dumps(summary, ensure_ascii=False)[:32 * 1024])
        except StoreUnavailable:
            log.warning("reconcile: its summary could not be kept (the store is unavailable)")

    def _reconcile_account(self, account: str, records: list[Subscription], report: ReconcileReport) -> None:
        try:
            calendly = self.accounts.client(account)
        except BridgeError as exc:  # retired since names() was read: its records are strays next run
            report.failed(exc, f"account {account}")
            return
        calls_before = calendly.calls_in_this_thread
        budget = CallBudget(calendly, self.settings.reconcile_rate_share / 100, max_wait=self.max_wait, sleep=self.sleep)
        by_scope: dict[ScopeKey, list[Subscription]] = defaultdict(list)
        for sub in records:
            by_scope[scope_of(sub)].append(sub)
        scopes = set(by_scope) | self._owner_scopes(account, budget, report)
        deferred: set[ScopeKey] = set()  # not listed (whole) for want of budget: the next run lists them
        listings = {key: self._list(calendly, key, budget, report, deferred) for key in sorted(scopes, key=str)}

        repairs, handled = self._plan(by_scope, listings, deferred, report)
        # Restore event flow first; clean-ups after.
        repairs.sort(key=lambda r: r.outcome == "deleted")
        for repair in repairs:
            self._run_repair(repair, budget, report)
        self._delete_orphans(account, calendly, [h for listing in listings.values() if listing for h in listing.hooks
                                                 if h.get("uri") not in handled], budget, report)
        report.calendly_calls += calendly.calls_in_this_thread - calls_before
        report.waited_seconds = round(report.waited_seconds + budget.waited, 1)
        if report.leftover and not report.leftover_reason:
            report.leftover_reason = budget.stopped or budget.deferred or ""

    def _stop_strays(self, records: list[Subscription], report: ReconcileReport) -> None:
        """Records of an account that no longer exists (retired while a subscribe was in flight on
        another worker): stopped as the retirement stops them."""
        for sub in records:
            if sub.account == DEFAULT_ACCOUNT or self.store.get_account(sub.account) is not None:
                continue  # an account being retired: its retirement stops it
            if self.subscriptions.stop_account_record(sub.id):
                report.deleted += 1

    def _plan(self, by_scope: dict, listings: dict, deferred: set, report: ReconcileReport) -> tuple[list[Repair], set[str]]:
        """The repairs the records need against the listed hooks, and the hooks some record accounts for."""
        repairs: list[Repair] = []
        handled: set[str] = set()
        now = self.clock()
        for key, subs in by_scope.items():
            listing = listings.get(key)
            if listing is None:
                report.leftover += len(subs) if key in deferred else 0
                continue
            for sub in subs:
                report.checked += 1
                repair = self._diff(sub, listing, handled, now)
                if repair is None:
                    report.healthy += sub.state == ACTIVE
                else:
                    repairs.append(repair)
        return repairs, handled

    def _all_subscriptions(self) -> list[Subscription]:
        subs, cursor = [], None
        while True:
            page, cursor = self.store.list_subscriptions(STORE_PAGE, cursor)
            subs.extend(page)
            if not cursor:
                return subs

    def _owner_scopes(self, account: str, budget: CallBudget, report: ReconcileReport) -> set[ScopeKey]:
        """Organization and the token owner's user scope: orphans may be there without any record."""
        try:
            identity = self.accounts.identity(account)  # cached: one /users/me an hour at most
        except BridgeError as exc:
            if is_rate_limited(exc):
                budget.rate_limited(exc)  # not an error: those scopes' orphans wait for the next run
            else:
                self._failed(exc, budget, report, "reading the PAT's identity")
            return set()
        return {(identity["organization"], "organization", None, None), (identity["organization"], "user", identity["user"], None)}

    def _list(self, calendly: CalendlyClient, key: ScopeKey, budget: CallBudget, report: ReconcileReport,
              deferred: set[ScopeKey]) -> Listing | None:
        """Every hook of the scope (one call a page), or None when it could not be listed whole
        (and then the key is in ``deferred`` when the budget, not an error, stopped it)."""
        organization, scope, user, group = key
        pages = calendly.webhook_pages(organization=organization, scope=scope, user=user, group=group)
        hooks: list[dict] = []
        while not pages.done:
            if not budget.allow():
                deferred.add(key)
                return None
            try:
                hooks.extend(pages.fetch())
            except BridgeError as exc:
                if is_rate_limited(exc):
                    budget.rate_limited(exc)  # the next allow() waits for the reset (or defers)
                    continue
                # e.g. a member's PAT may not list organization hooks: report, carry on.
                self._failed(exc, budget, report, f"listing {scope} hooks")
                return None
        report.scopes += 1
        report.list_pages += pages.pages
        return Listing(hooks)

    # The diff -----------------------------------------------------------------------------
    def _diff(self, sub: Subscription, listing: Listing, handled: set[str], now) -> Repair | None:
        """What ``sub`` needs, given its scope's hooks; None: nothing."""
        url = self.lifecycle.urls.of(sub)  # the callback URL the record's hook must have
        own = listing.by_uri.get(sub.calendly_webhook) if sub.calendly_webhook else None
        same_url = [h for h in listing.by_url.get(url, ()) if h is not own]
        # The hook still calling the id path while the record moves to its token URL.
        old = listing.by_uri.get(sub.legacy_webhook) if sub.legacy_webhook and sub.legacy_webhook != sub.calendly_webhook else None
        handled.update(h["uri"] for h in ([own] if own else []) + same_url + ([old] if old else []))
        both = ([own] if own else []) + same_url + ([old] if old else [])
        if sub.state == DELETING:
            return Repair(sub, "deleted", delete_first=both)
        if sub.state == RETIRED:
            return Repair(sub, "deleted", delete_first=both) if (sub.calendly_webhook or sub.legacy_webhook or same_url) else None
        if sub.state == CREATING:
            if sub.updated_at > isotime(now, -CREATING_GRACE_SECONDS):
                return None  # a subscribe may still be making its hook
            return Repair(sub, "completed", delete_first=both, create=True, renew_key=True, reason="left creating")
        if own is not None and own.get("state") == "active":
            if sub.callback_token is None:
                # Made before callback tokens: Calendly calls its (computable) id. Same gapless move.
                return Repair(sub, "moved", delete_first=same_url, create=True, delete_after=[own], new_token=True,
                              reason="calls its id path (made before callback tokens)")
            if own.get("callback_url") == url:
                if sub.legacy_webhook:  # moved, but the old hook was not deleted yet
                    return Repair(sub, "moved", delete_after=[old] if old else [], reason="old hook left")
                return None
            # Calling an outdated URL: move it without a gap (both sign with the same key meanwhile).
            return Repair(sub, "moved" if sub.legacy_webhook else "recreated", delete_first=same_url, create=True,
                          delete_after=[own] + ([old] if old else []), reason="calls an outdated URL")
        why = "missing" if own is None else f"state {own.get('state')}"
        return Repair(sub, "recreated", delete_first=both, create=True, renew_key=True, reason=why)

    # The repairs --------------------------------------------------------------------------
    def _run_repair(self, repair: Repair, budget: CallBudget, report: ReconcileReport) -> None:
        if repair.calls and not budget.allow(repair.calls, repair=True):
            report.leftover += 1
            return
        first, after = [h["uri"] for h in repair.delete_first], [h["uri"] for h in repair.delete_after]
        sub, lifecycle = repair.sub, self.lifecycle
        try:
            if sub.state == DELETING:
                lifecycle.finish_delete(sub, first)
                log.info("subscription outcome=deleted subscription=%s", sub.id)
            elif sub.state == RETIRED:
                lifecycle.clear_hooks(sub, first)
            elif repair.create:
                if repair.renew_key:
                    log.warning("subscription %s: Calendly hook %s; recreating it", sub.id, repair.reason)
                    sub = lifecycle.rekey(sub)
                elif repair.new_token:
                    log.warning("subscription %s: Calendly hook %s; moving it to a callback token", sub.id, repair.reason)
                    sub = lifecycle.start_move(sub)
                else:
                    log.warning("subscription %s: Calendly hook %s; moving it", sub.id, repair.reason)
                lifecycle.replace_hook(sub, first, after)
            else:
                lifecycle.drop_old_hooks(sub, after)
        except ConcurrencyConflict:
            log.info("subscription %s changed during reconciliation; the next run looks again", repair.sub.id)
            return
        except BridgeError as exc:
            if is_rate_limited(exc):
                budget.rate_limited(exc)
                report.leftover += 1
            else:
                self._failed(exc, budget, report, None, repair.sub.id)
            return
        report.count(repair.outcome)

    def _delete_orphans(self, account: str, calendly: CalendlyClient, unowned: list[dict], budget: CallBudget,
                        report: ReconcileReport) -> None:
        """Delete hooks calling this bridge's callback route that no record owns."""
        if not self.settings.public_url:
            return
        prefix = self.lifecycle.urls.prefix()
        candidates = [h for h in unowned if str(h.get("callback_url") or "").startswith(prefix)]
        if not candidates:
            return
        # Read the records again: a subscribe may have written its record (then its hook) after
        # the first read but before its scope was listed.
        owned_uris: set[str | None] = set()
        owned_urls: set[tuple[str, ScopeKey]] = set()
        for sub in self._all_subscriptions():  # every account's: a hook is owned by its URL and scope
            owned_uris.update((sub.calendly_webhook, sub.legacy_webhook))
            owned_urls.update((url, scope_of(sub)) for url in self.lifecycle.urls.answering(sub))
        for hook in candidates:
            if hook["uri"] in owned_uris or (hook.get("callback_url"), hook_scope(hook)) in owned_urls:
                continue
            if not budget.allow(1, repair=True):
                report.leftover += 1
                continue
            try:
                calendly.delete_webhook(hook["uri"])
            except BridgeError as exc:
                if is_rate_limited(exc):
                    budget.rate_limited(exc)
                    report.leftover += 1
                else:
                    self._failed(exc, budget, report, "deleting an orphan hook")
                continue
            log.warning("deleted orphan Calendly hook %s (no subscription record) account=%s", hook["uri"], account)
            report.orphans_deleted += 1

    @staticmethod
    def _failed(exc: BridgeError, budget: CallBudget, report: ReconcileReport, doing: str | None,
                sub_id: str | None = None) -> None:
        report.failed(exc, doing, sub_id)
        if exc.status == 503:
            budget.stop(exc.code)  # Calendly (or the store) is down: leave the rest to the next run
