"""The composed bridge: settings, store, Calendly client, targets and services, built
once per worker process and reused (Azure SDK clients and HTTP pools included)."""
from __future__ import annotations

import threading

from .calendly import CalendlyClient
from .delivery import DeliveryService
from .models import Subscription
from .redaction import install_log_redaction
from .secrets import pat_provider
from .settings import Settings
from .store import open_store
from .store.base import Store
from .subscriptions import SubscriptionService
from .targets import Target


class Bridge:
    def __init__(self, settings: Settings, store: Store | None = None, calendly: CalendlyClient | None = None):
        install_log_redaction()
        self.settings = settings
        self.store = store or open_store(settings)
        self.pat = pat_provider(settings)
        self.calendly = calendly or CalendlyClient(settings.calendly_api_base, self.pat)
        self.subscriptions = SubscriptionService(settings, self.store, self.calendly)
        self._targets: dict[str, Target] = {}
        self._targets_lock = threading.Lock()
        self.deliveries = DeliveryService(settings, self.store, self.target_for, self.subscriptions.retire, self._scheduler())

    def _scheduler(self):
        """Azure: the Storage retry queue; locally: the SQLite outbox (drained by ``serve``)."""
        if self.store.name == "tables":
            from .retry_queue import QueueScheduler, queue_client

            return QueueScheduler(queue_client(self.settings))
        return None

    def target_for(self, sub: Subscription) -> Target:
        kind = sub.target.get("type", "http")
        target = self._targets.get(kind)
        if target is None:
            with self._targets_lock:
                target = self._targets.get(kind) or self._make_target(kind)
                self._targets[kind] = target
        return target

    def _make_target(self, kind: str) -> Target:
        if kind == "http":
            from .targets.http import HttpTarget

            return HttpTarget(self.settings)
        if kind == "servicebus":
            from .targets.servicebus import ServiceBusTarget

            return ServiceBusTarget(self.settings)
        from .errors import BridgeError

        raise BridgeError(503, "target_not_configured", f"no {kind} target is configured in this bridge")

    def close(self) -> None:
        for target in self._targets.values():
            getattr(target, "close", lambda: None)()  # e.g. the Service Bus client and senders
        self.calendly.close()
        if hasattr(self.deliveries.scheduler, "close"):
            self.deliveries.scheduler.close()
        self.store.close()


_bridge: Bridge | None = None
_lock = threading.Lock()


def get_bridge() -> Bridge:
    """The process-wide bridge, built from the environment on first use."""
    global _bridge
    if _bridge is None:
        with _lock:
            if _bridge is None:
                _bridge = Bridge(Settings.from_env())
    return _bridge


def reset_bridge() -> None:
    global _bridge
    with _lock:
        if _bridge is not None:
            _bridge.close()
        _bridge = None
