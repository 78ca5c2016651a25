"""Service Bus target: Calendly's raw JSON as the message body, the delivery id as
``message_id`` (so the entity's duplicate detection drops repeats). One client per worker
process, one sender per entity, reused."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from ..errors import BridgeError
from ..models import Delivery, Subscription
from ..settings import Settings
from . import SendResult

log = logging.getLogger("shared.targets.servicebus")


def configured(settings: Settings) -> bool:
    return bool(settings.env.get("SERVICEBUS_FULLY_QUALIFIED_NAMESPACE") or settings.env.get("SERVICEBUS_CONNECTION"))


def _client_from_settings(settings: Settings):
    from azure.servicebus import ServiceBusClient  # imported only when a Service Bus target is used

    connection = settings.env.get("SERVICEBUS_CONNECTION")
    if connection:
        return ServiceBusClient.from_connection_string(connection)
    namespace = settings.env.get("SERVICEBUS_FULLY_QUALIFIED_NAMESPACE")
    if not namespace:
        raise BridgeError(400, "servicebus_not_configured", "this bridge has no Service Bus namespace: set "
                          "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE (managed identity) or SERVICEBUS_CONNECTION")
    from azure.identity import DefaultAzureCredential

    client_id = settings.env.get("AZURE_CLIENT_ID")
    credential = DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()
    return ServiceBusClient(namespace, credential)


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


class ServiceBusTarget:
    def __init__(self, settings: Settings, client_factory: Callable[[], Any] | None = None):
        self._factory = client_factory or (lambda: _client_from_settings(settings))
        self._client = None
        self._senders: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()

    def _sender(self, entity: str, name: str):
        key = (entity, name)
        with self._lock:
            if key not in self._senders:
                if self._client is None:
                    self._client = self._factory()
                sender = (self._client.get_queue_sender(queue_name=name) if entity == "queue"
                          else self._client.get_topic_sender(topic_name=name))
                self._senders[key] = (sender, threading.Lock())  # a sender is not safe for concurrent sends
            return self._senders[key]

    def send(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> SendResult:
        from azure.servicebus.exceptions import ServiceBusError

        entity, name = sub.target.get("entity", "queue"), sub.target["name"]
        try:
            sender, lock = self._sender(entity, name)
            with lock:
                sender.send_messages(message_for(sub, delivery), timeout=max(1.0, budget_seconds))
        except ServiceBusError as exc:
            # A missing queue/topic is a configuration error, not a deleted flow: keep retrying
            # (and keep the dead delivery for replay) rather than retiring the Calendly hook.
            log.warning("delivery %s to Service Bus %s %s failed: %s", delivery.id, entity, name, type(exc).__name__)
            return SendResult(False, None, f"Service Bus {entity} '{name}': {type(exc).__name__}")
        log.info("delivery %s sent to Service Bus %s %s", delivery.id, entity, name)
        return SendResult(True, None)

    def close(self) -> None:
        with self._lock:
            for sender, _ in self._senders.values():
                sender.close()
            self._senders.clear()
            if self._client is not None:
                self._client.close()
                self._client = None
