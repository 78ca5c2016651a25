"""Where events go: a Logic Apps / Power Automate callback URL, or Service Bus."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Delivery, HttpEndpoint, Subscription

if TYPE_CHECKING:
    from ..settings import Settings
    from .policy import Resolver


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: int | None = None
    error: str | None = None
    gone: bool = False  # the target says the flow no longer exists (404/410)
    retry_after: float | None = None  # the target asked us to wait this long


class Target(Protocol):
    def send(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> SendResult:
        """Deliver once (with bounded in-call retries); never raise for target failures."""


def forwarding_headers(sub: Subscription, delivery: Delivery) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Calendly-Event": delivery.event,
        "X-Bridge-Subscription-Id": sub.id,
        "X-Bridge-Delivery-Id": delivery.id,
    }


class Targets:
    """One sender per kind of endpoint, built on first use and reused (HTTP pool, Service Bus client)."""

    def __init__(self, settings: Settings, servicebus_client: Callable[[], Any], resolver: Resolver | None = None):
        self._settings = settings
        self._resolver = resolver
        self._servicebus_client = servicebus_client  # a factory: the client is made on the first send
        self._made: dict[str, Target] = {}
        self._lock = threading.Lock()

    def for_subscription(self, sub: Subscription) -> Target:
        kind = "http" if isinstance(sub.target, HttpEndpoint) else "servicebus"
        target = self._made.get(kind)
        if target is None:
            with self._lock:
                target = self._made.get(kind) or self._make(kind)
                self._made[kind] = target
        return target

    def _make(self, kind: str) -> Target:
        if kind == "http":
            from .http import HttpTarget

            return HttpTarget(self._settings, self._resolver)
        from .servicebus import ServiceBusTarget

        return ServiceBusTarget(self._servicebus_client)

    def close(self) -> None:
        for target in self._made.values():
            getattr(target, "close", lambda: None)()  # e.g. the Service Bus client and senders
