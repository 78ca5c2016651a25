"""Several Calendly accounts per deployment (README "Accounts").

The PAT of the settings (``CALENDLY_PAT``, or the Key Vault secret ``CALENDLY_PAT_SECRET_NAME``) is
the account ``default``, exactly as before accounts existed. An admin declares more: a name makers
see and the name of the Key Vault secret holding that account's token. Declaring reads the secret
with the app's identity and asks Calendly who the token belongs to (``GET /users/me``), so a token
that does not work, or an organization another account already serves, is refused then. The
management API never takes, keeps or shows a token: only secret names.

Each account has its own Calendly client, so its own token cache (re-read on a 401), its own view of
Calendly's per-token rate window (500 a minute each), and its failures are its own: a missing
secret or a revoked token answers 503/502 for that account's calls only.

Who may use an account: key holders and admins, any; a signed-in maker, ``default`` and every
account whose app role ``Calendly.Account.<name>`` they hold (an app role of the bridge's
registration, assigned per user or group by an admin).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cachetools import TTLCache

from .errors import BridgeError, ConcurrencyConflict
from .models import Account, Clock, isotime, utcnow
from .redaction import logvalue

if TYPE_CHECKING:
    from .auth import Caller
    from .calendly import CalendlyClient
    from .store.base import Store

log = logging.getLogger("shared.accounts")

DEFAULT = "default"
ROLE_PREFIX = "Calendly.Account."
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")  # a slug: 1-32 lower-case letters, digits, inner hyphens
SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")  # what Key Vault allows in a secret's name
CACHE_SECONDS = 30.0  # how long a worker trusts its copy of an account record (a retire reaches others within it)
IDENTITY_TTL_SECONDS = 3600.0  # who a token belongs to (GET /users/me) changes only with the token
ACTIVE, RETIRING = "active", "retiring"


def check_name(name: object, code: str = "invalid_account") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BridgeError(400, code, "account must be an account name: 1-32 lower-case letters, digits and inner hyphens")
    return name


def not_found(name: str) -> BridgeError:
    return BridgeError(404, "account_not_found",
                       f"no Calendly account named '{name}' (GET /api/accounts lists the ones you may use; it may have "
                       "been retired)")


class AccountService:
    """The accounts: their Calendly clients, who may use them, declaring and retiring."""

    def __init__(self, store: Store, default: CalendlyClient, client_for: Callable[[str, str], CalendlyClient],
                 vault_configured: bool, default_exists: Callable[[], bool], clock: Clock = utcnow,
                 timer: Callable[[], float] = time.monotonic):
        """``client_for(name, secret_name)``: the Calendly client of account ``name``, whose token is that Key Vault secret;
        ``default_exists()``: whether the settings' PAT is there (set, or its Key Vault secret exists)."""
        self.store = store
        self.default = default
        self.client_for = client_for
        self.vault_configured = vault_configured
        self._default_exists = default_exists
        self._default_known: TTLCache = TTLCache(maxsize=1, ttl=CACHE_SECONDS, timer=timer)
        self.clock = clock
        self._records: TTLCache = TTLCache(maxsize=256, ttl=CACHE_SECONDS, timer=timer)
        self._clients: dict[tuple[str, str], CalendlyClient] = {}
        self._lock = threading.Lock()
        self._identities: TTLCache = TTLCache(maxsize=256, ttl=IDENTITY_TTL_SECONDS, timer=timer)
        self._identity_lock = threading.Lock()  # held while asking: concurrent subscribes share one call

    # Reading ---------------------------------------------------------------------------------
    def record(self, name: str) -> Account | None:
        """The declared account (cached briefly), or None."""
        with self._lock:
            if name in self._records:
                return self._records[name]
        account = self.store.get_account(name)
        with self._lock:
            self._records[name] = account
        return account

    def active(self, name: str) -> Account:
        account = self.record(name)
        if account is None or account.status != ACTIVE:
            raise not_found(name)
        return account

    def client(self, name: str) -> CalendlyClient:
        """The Calendly client of a declared account (also while it is being retired, to delete its
        hooks); 404 for an unknown or retired one."""
        if name == DEFAULT:
            return self.default
        account = self.record(name)
        if account is None:
            raise not_found(name)
        key = (account.name, account.secret_name)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self.client_for(account.name, account.secret_name)
            return client

    @property
    def default_configured(self) -> bool:
        """Whether the account ``default`` exists: its answer is kept CACHE_SECONDS (a missing secret
        would otherwise cost a Key Vault read on every call that names no account)."""
        with self._lock:
            known = self._default_known.get(DEFAULT)
        if known is None:
            known = self._default_exists()
            with self._lock:
                self._default_known[DEFAULT] = known
        return known

    def identity(self, name: str = DEFAULT) -> dict:
        """{"user", "organization"} of the account's token (GET /users/me), cached an hour."""
        client = self.client(name)
        with self._identity_lock:
            identity = self._identities.get(name)
            if identity is None:
                me = client.me()
                identity = self._identities[name] = {"user": me["uri"], "organization": me["current_organization"]}
            return identity

    def names(self) -> list[str]:
        """Every account calls may be made with: ``default`` (when its PAT is configured) and the active declared ones."""
        declared = [a.name for a in self.store.list_accounts() if a.status == ACTIVE]
        return ([DEFAULT] if self.default_configured else []) + declared

    # Who may use which -----------------------------------------------------------------------
    @staticmethod
    def may_use(caller: Caller, name: str) -> bool:
        return caller.kind != "entra" or caller.admin or name == DEFAULT or f"{ROLE_PREFIX}{name}" in caller.roles

    def usable(self, caller: Caller, requested: str | None) -> str:
        """The account a caller's request uses: the one asked for (404 unknown, 403 not theirs), else
        ``default`` when its PAT is configured, else the only declared account the caller may use."""
        if requested is not None:
            name = check_name(requested)
            if name != DEFAULT:
                self.active(name)
            if not self.may_use(caller, name):
                raise BridgeError(403, "account_forbidden",
                                  f"you may not use the Calendly account '{name}': it needs the app role "
                                  f"'{ROLE_PREFIX}{name}' (ask an admin of the bridge)")
            if name == DEFAULT and not self.default_configured and self.store.list_accounts():
                raise not_found(name)
            return name
        if self.default_configured:
            return DEFAULT
        mine = [a.name for a in self.store.list_accounts() if a.status == ACTIVE and self.may_use(caller, a.name)]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            return DEFAULT  # no account at all: the default's "no PAT configured" 503 says what to set
        raise BridgeError(400, "account_required",
                          f"say which Calendly account to use: 'account' is one of {', '.join(mine)}")

    def visible(self, caller: Caller) -> list[dict]:
        """The accounts the caller may use (admins: all, with their secret names)."""
        admin = caller.admin or caller.kind != "entra"
        listed = []
        if self.default_configured:
            listed.append({"name": DEFAULT, "organization": self._default_organization(), "status": ACTIVE, "created_at": None})
        listed += [a.public(admin) for a in self.store.list_accounts() if admin or (a.status == ACTIVE and self.may_use(caller, a.name))]
        return listed

    def _default_organization(self) -> str | None:
        try:
            return self.identity(DEFAULT)["organization"]
        except BridgeError:
            return None

    # Declaring and retiring (admins) ---------------------------------------------------------
    def declare(self, name: object, secret_name: object) -> tuple[Account, bool]:
        """A new account whose token is the Key Vault secret ``secret_name``; (account, created).
        Repeating a declaration as it was answers the account (created False)."""
        name = check_name(name, "invalid_account_name")
        if name == DEFAULT:
            raise BridgeError(400, "invalid_account_name",
                              "'default' is the account of the settings' PAT (CALENDLY_PAT / CALENDLY_PAT_SECRET_NAME)")
        if not isinstance(secret_name, str) or not SECRET_NAME.fullmatch(secret_name):
            raise BridgeError(400, "invalid_secret_name",
                              "secret_name must be a Key Vault secret name: 1-127 letters, digits and hyphens")
        if not self.vault_configured:
            raise BridgeError(400, "key_vault_not_configured",
                              "an account's token is read from Key Vault: set KEY_VAULT_URL (and grant the app's identity "
                              "'Key Vault Secrets User' on it)")
        existing = self.store.get_account(name)
        if existing is not None:
            if existing.secret_name == secret_name and existing.status == ACTIVE:
                return existing, False
            raise BridgeError(409, "account_exists",
                              f"an account named '{name}' exists{' and is being retired' if existing.status != ACTIVE else ''}; "
                              "retire it first or choose another name")
        probe = self.client_for(name, secret_name)
        try:
            me = probe.me()  # reads the secret (503 when it cannot) and checks the token (502)
        finally:
            probe.close()
        organization, user = str(me.get("current_organization") or ""), str(me.get("uri") or "")
        if not organization or not user:
            raise BridgeError(502, "calendly_rejected", "Calendly did not say which user and organization the token belongs to")
        self._check_organization_free(organization, name)
        now = isotime(self.clock())
        try:
            account = self.store.create_account(Account(name=name, secret_name=secret_name, organization=organization,
                                                        user=user, created_at=now, updated_at=now))
        except ConcurrencyConflict:
            raise BridgeError(409, "account_exists", f"an account named '{name}' was declared meanwhile") from None
        self._forget(name)
        log.info("account outcome=declared account=%s organization=%s", name, logvalue(organization))
        return account, True

    def _check_organization_free(self, organization: str, name: str) -> None:
        taken = [a.name for a in self.store.list_accounts() if a.organization == organization]
        if self.default_configured and self._default_organization() == organization:
            taken.insert(0, DEFAULT)
        if taken:
            raise BridgeError(409, "account_organization_taken",
                              f"the token of '{name}' belongs to the Calendly organization the account '{taken[0]}' already "
                              "serves: one account per organization (subscribe through that one)")

    def retire(self, name: str, stop: Callable[[str], int]) -> dict:
        """Stop every subscription of the account (``stop(name)``: how many), then forget it. Its
        calls answer 404 from here on (on other workers within CACHE_SECONDS)."""
        name = check_name(name)
        if name == DEFAULT:
            raise BridgeError(400, "account_not_retirable",
                              "'default' is the settings' PAT: unset CALENDLY_PAT / KEY_VAULT_URL to stop using it")
        account = self.store.get_account(name)
        if account is None:
            raise not_found(name)
        if account.status == ACTIVE:
            try:
                account = self.store.update_account(account.replace(status=RETIRING, updated_at=isotime(self.clock())))
            except ConcurrencyConflict:
                raise BridgeError(409, "account_changed", "the account changed meanwhile; retry") from None
        self._forget(name)
        stopped = stop(name)
        self.store.delete_account(name)
        self._forget(name)
        stopped += stop(name)  # a subscribe that read the account before it was marked
        log.warning("account outcome=retired account=%s subscriptions=%d", name, stopped)
        return {"name": name, "status": "retired", "subscriptions_stopped": stopped}

    def _forget(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)
            for key in [k for k in self._clients if k[0] == name]:
                self._clients.pop(key).close()
        with self._identity_lock:
            self._identities.pop(name, None)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
