"""The composition root: settings in, the bridge's services out, each wired to what it uses.

Built once per worker process (function_app.py holds a ``BridgeProvider``; each CLI command
composes its own) and reused, Azure SDK clients and HTTP pools included. Every Azure SDK client is
made here, with the factories of ``shared.azure_clients`` (Key Vault and Service Bus on first use),
and handed to the module that uses it. Tests call ``compose`` with stand-ins for the parts they
replace. The services are imported when the bridge is first composed, not when the Functions host
indexes function_app (see the cold-start benchmark).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import Clock, utcnow

if TYPE_CHECKING:
    from .accounts import AccountService
    from .auth import Authenticator
    from .calendly import CalendlyClient
    from .callbacks import CallbackService
    from .delivery import DeliveryPolicy, DeliveryService, RetryScheduler
    from .lifecycle import Lifecycle
    from .ratelimit import CallerLimits
    from .reconcile import Reconciler
    from .retention import RetentionService
    from .secrets import PatProvider
    from .settings import Settings
    from .store.base import Store
    from .subscriptions import SubscriptionService
    from .targets import Targets
    from .targets.policy import Resolver


@dataclass
class Bridge:
    """Everything a trigger or command may use, composed once."""

    settings: Settings
    auth: Authenticator
    store: Store
    pat: PatProvider
    calendly: CalendlyClient  # the account "default" (the settings' PAT)
    accounts: AccountService
    targets: Targets
    lifecycle: Lifecycle
    subscriptions: SubscriptionService
    deliveries: DeliveryService
    callbacks: CallbackService
    reconciler: Reconciler
    retention: RetentionService
    limits: CallerLimits

    def close(self) -> None:
        self.callbacks.counter.flush()  # a failure keeps them pending: nothing raises here
        self.targets.close()
        self.calendly.close()
        self.accounts.close()
        getattr(self.deliveries.scheduler, "close", lambda: None)()
        self.store.close()


def open_store(settings: Settings, credential: Any = None) -> Store:
    """Azure Table Storage when AzureWebJobsStorage (or its identity-based form, with ``credential``)
    is set, else the embedded SQLite store. SDKs are imported only for the backend in use."""
    if settings.table_storage:
        from .azure_clients import table_service
        from .store.tables import TableStore

        return TableStore(table_service(settings, credential), settings.table_prefix)
    from .store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)


def _retry_scheduler(settings: Settings, store: Store, credential: Any) -> RetryScheduler:
    """Azure: the Storage retry queue; locally: the SQLite outbox (drained by ``serve``)."""
    if store.name == "tables":
        from .azure_clients import queue_client
        from .retry_queue import QueueScheduler

        return QueueScheduler(queue_client(settings, credential))
    from .delivery import OutboxScheduler

    return OutboxScheduler()


def compose(settings: Settings, *, store: Store | None = None, calendly: CalendlyClient | None = None,
            pat: PatProvider | None = None, credential: Any = None, scheduler: RetryScheduler | None = None,
            policy: DeliveryPolicy | None = None,
            clock: Clock = utcnow, auth: Authenticator | None = None, resolver: Resolver | None = None,
            sleep: Callable[[float], None] = time.sleep, vault: Callable[[], Any] | None = None) -> Bridge:
    """``clock`` (wall time) and ``sleep`` (reconcile's waits for Calendly's rate window) are injected so
    tests drive time; ``resolver`` replaces the system DNS resolver of the target guard (tests: a stand-in);
    ``vault`` makes the Key Vault SecretClient (tests: one trusting the loopback vault's certificate)."""
    from .accounts import AccountService
    from .auth import Authenticator
    from .azure_clients import azure_credential, needs_credential, secret_client, servicebus_client
    from .calendly import CalendlyClient
    from .callbacks import CallbackService
    from .delivery import DeliveryPolicy, DeliveryService
    from .isolation import ChangeNotifyingStore, SubscriptionCache
    from .lifecycle import CallbackUrls, Lifecycle
    from .ratelimit import CallerLimits
    from .reconcile import Reconciler
    from .redaction import install_log_redaction
    from .retention import RetentionService
    from .secrets import KeyVaultPat, pat_provider, token_exists
    from .subscriptions import SubscriptionService
    from .targets import Targets

    install_log_redaction()
    auth = auth or Authenticator.from_settings(settings)  # first: a missing Entra setting is named before any I/O
    if credential is None and needs_credential(settings):
        credential = azure_credential(settings)
    cache = SubscriptionCache(timer=lambda: clock().timestamp())
    # Every subscription write this worker makes drops the callback path's cached record at once.
    store = ChangeNotifyingStore(store or open_store(settings, credential), cache.forget)
    vault = vault or _shared(lambda: secret_client(settings.key_vault_url, credential))
    pat = pat or pat_provider(settings, vault)
    calendly = calendly or CalendlyClient(settings.calendly_api_base, pat)

    def account_client(name: str, secret_name: str) -> CalendlyClient:  # another account: its token is that Key Vault secret
        token = KeyVaultPat(str(settings.key_vault_url), secret_name, settings.pat_cache_seconds, vault)
        return CalendlyClient(settings.calendly_api_base, token, account=name)

    accounts = AccountService(store, calendly, account_client, vault_configured=bool(settings.key_vault_url),
                              default_exists=lambda: token_exists(pat), clock=clock)
    targets = Targets(settings, lambda: servicebus_client(settings, credential), resolver)
    lifecycle = Lifecycle(store, accounts.client, CallbackUrls(settings.require_public_url), clock)
    subscriptions = SubscriptionService(settings, store, accounts, lifecycle, clock, resolver)
    policy = policy or DeliveryPolicy(max_attempts=settings.delivery_max_attempts)
    deliveries = DeliveryService(store, targets.for_subscription, lifecycle.retire, policy,
                                 scheduler or _retry_scheduler(settings, store, credential), clock,
                                 fetch=lambda account, path: accounts.client(account).resource(path))
    return Bridge(settings=settings, auth=auth, store=store, pat=pat, calendly=calendly, accounts=accounts, targets=targets,
                  lifecycle=lifecycle, subscriptions=subscriptions, deliveries=deliveries,
                  callbacks=CallbackService(store, deliveries, accounts.client, settings.signature_tolerance, cache),
                  reconciler=Reconciler(settings, store, accounts, subscriptions, lifecycle, deliveries, clock, sleep),
                  retention=RetentionService(store, settings.delivery_retention_hours,
                                             settings.dead_delivery_retention_days, clock),
                  limits=CallerLimits(settings.calendly_calls_per_caller_per_minute))


def _shared(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` called once, on first use, its result reused (one Key Vault client for every account's secret)."""
    made: list[Any] = []
    lock = threading.Lock()

    def get() -> Any:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return get


class BridgeProvider:
    """The bridge of this worker process, composed on first use (so a bad setting becomes a clear
    503 on the request that meets it, not a worker that fails to index its functions)."""

    def __init__(self, build: Callable[[], Bridge] | None = None):
        self._build = build or _from_app_settings
        self._bridge: Bridge | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Bridge:
        if self._bridge is None:
            with self._lock:
                if self._bridge is None:
                    self._bridge = self._build()
        return self._bridge


def _from_app_settings() -> Bridge:
    from .settings import Settings

    return compose(Settings.from_env())
