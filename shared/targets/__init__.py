"""Where events go: a Logic Apps / Power Automate callback URL, or Service Bus."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..models import Delivery, Subscription


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
