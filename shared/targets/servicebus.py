"""Service Bus target: Calendly's raw JSON as the message body, the delivery id as
``message_id`` (so the entity's duplicate detection drops repeats). One client per worker
process, one sender per entity, reused."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import BridgeError
from ..models import Delivery, ServiceBusEntity, Subscription
from ..redaction import logvalue
from ..settings import Settings
from . import SendResult

log = logging.getLogger("shared.targets.servicebus")

# azure-servicebus 7.15's send timeout does not cover opening the connection: against a peer that
# accepts TCP and stays silent it blocks in the TLS/SASL handshake for good. So each send runs on a
# daemon thread the caller waits for at most budget + this grace, then gives up on that sender.
ABANDON_GRACE_SECONDS = 1.0
MAX_STUCK_SENDS = 8  # abandoned sends still blocked; past this, fail fast instead of piling up threads


def configured(settings: Settings) -> bool:
    return bool(settings.servicebus_namespace or settings.servicebus_connection)


def message_for(sub: Subscription, delivery: Delivery):
    from azure.servicebus import ServiceBusMessage

    return ServiceBusMessage(
        body=delivery.body,
        content_type="application/json",
        message_id=delivery.id,
        subject=delivery.event,
        application_properties={"calendly_event": delivery.event, "bridge_subscription_id": sub.id,
                                "bridge_delivery_id": delivery.id},
    )


def reason(exc: BaseException) -> str:
    """The exception's class and what it usually means; never its message (it may quote the endpoint)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.servicebus import exceptions as sb

    hints: tuple[tuple[Any, str], ...] = (
        (sb.MessagingEntityNotFoundError, "the entity does not exist"),
        (sb.MessagingEntityDisabledError, "the entity is disabled"),
        (sb.MessageSizeExceededError, "the event is larger than the entity's maximum message size"),
        ((sb.ServiceBusAuthenticationError, sb.ServiceBusAuthorizationError, ClientAuthenticationError),
         "not allowed to send: grant the identity 'Azure Service Bus Data Sender', or check SERVICEBUS_CONNECTION"),
        (sb.ServiceBusQuotaExceededError, "the entity is full or over quota"),
        (sb.ServiceBusServerBusyError, "Service Bus is busy"),
        ((sb.OperationTimeoutError, TimeoutError), "timed out"),
        ((sb.ServiceBusConnectionError, sb.ServiceBusCommunicationError), "the namespace could not be reached"),
    )
    for kinds, hint in hints:
        if isinstance(exc, kinds):
            return f"{type(exc).__name__} ({hint})"
    return type(exc).__name__


class _Sender:
    """One SDK sender and the lock that serializes its sends (a sender is not safe for concurrent sends)."""

    def __init__(self, sdk: Any):
        self.sdk = sdk
        self.lock = threading.Lock()


class ServiceBusTarget:
    def __init__(self, client_factory: Callable[[], Any]):
        """``client_factory`` makes the ServiceBusClient, on the first send (shared.azure_clients)."""
        self._factory = client_factory
        self._client: Any = None
        self._senders: dict[tuple[str, str], _Sender] = {}
        self._lock = threading.Lock()
        self.stuck = 0  # abandoned sends whose thread is still blocked

    def _sender(self, entity: str, name: str) -> _Sender:
        with self._lock:
            sender = self._senders.get((entity, name))
            if sender is None:
                if self._client is None:
                    self._client = self._factory()
                sdk = (self._client.get_queue_sender(queue_name=name) if entity == "queue"
                       else self._client.get_topic_sender(topic_name=name))
                sender = self._senders[(entity, name)] = _Sender(sdk)
            return sender

    def send(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> SendResult:
        from azure.core.exceptions import AzureError

        if not isinstance(sub.target, ServiceBusEntity):
            raise TypeError("a Service Bus target sends only to a Service Bus entity")
        entity, name = sub.target.entity, sub.target.name
        where = f"Service Bus {entity} '{name}'"
        budget = max(1.0, budget_seconds)
        if self.stuck >= MAX_STUCK_SENDS:
            return self._failed(delivery, where, f"{self.stuck} earlier sends are still blocked; not starting another")
        try:
            sender = self._sender(entity, name)
            message = message_for(sub, delivery)
        except BridgeError as exc:
            return self._failed(delivery, where, exc.message)
        except (AzureError, ValueError, TypeError) as exc:  # e.g. a malformed SERVICEBUS_CONNECTION
            return self._failed(delivery, where, reason(exc))
        outcome: list[BaseException | None] = []
        worker = threading.Thread(target=_send_once, args=(sender, message, time.monotonic() + budget, outcome),
                                  name="servicebus-send", daemon=True)
        worker.start()
        worker.join(budget + ABANDON_GRACE_SECONDS)
        if worker.is_alive():
            self._abandon(entity, name, sender, worker)
            return self._failed(delivery, where, f"no answer within {budget:.0f} s")
        error = outcome[0] if outcome else None
        if error is None:
            log.info("forward delivery=%s target=%s status=sent", delivery.id, logvalue(f"servicebus:{entity}:{name}"))
            return SendResult(True, None)
        if isinstance(error, (AzureError, ValueError, TypeError, OSError)):
            # Every Service Bus failure is retryable, a missing queue/topic included: it is infrastructure
            # (a typo, not deployed yet, being recreated), not a flow that was deleted on purpose, so the
            # delivery is retried, then kept dead for replay, and the Calendly hook is never retired.
            return self._failed(delivery, where, reason(error))
        raise error  # a bug, not a Service Bus failure

    @staticmethod
    def _failed(delivery: Delivery, where: str, why: str) -> SendResult:
        log.warning("forward delivery=%s target=%s error=%s", delivery.id, logvalue(where), logvalue(why))
        return SendResult(False, None, f"{where}: {why}")

    def _abandon(self, entity: str, name: str, sender: _Sender, worker: threading.Thread) -> None:
        """Forget a sender whose send is stuck; close it once (if ever) the blocked thread returns."""
        with self._lock:
            if self._senders.get((entity, name)) is sender:
                del self._senders[(entity, name)]
            self.stuck += 1

        def reap() -> None:
            worker.join()
            with self._lock:
                self.stuck -= 1
            _close_quietly(sender.sdk)

        threading.Thread(target=reap, name="servicebus-reap", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            for sender in self._senders.values():
                _close_quietly(sender.sdk)
            self._senders.clear()
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None


def _send_once(sender: _Sender, message: Any, deadline: float, outcome: list[BaseException | None]) -> None:
    try:
        if not sender.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError("an earlier send on this sender is still running")
        try:
            sender.sdk.send_messages(message, timeout=max(0.1, deadline - time.monotonic()))
        finally:
            sender.lock.release()
        outcome.append(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which decides
        outcome.append(exc)


def _close_quietly(closable: Any) -> None:
    try:
        closable.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing is lost
        log.debug("closing a Service Bus handler failed", exc_info=True)
