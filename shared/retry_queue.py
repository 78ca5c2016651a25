"""Durable retries on Azure: a failed delivery becomes a message on the Storage queue
``DELIVERY_QUEUE``, made visible after its backoff; the queue-triggered function calls
``handle_message``, which attempts the delivery again (claimed with an ETag lease, so a
message delivered twice never sends twice at once)."""
from __future__ import annotations

import json
import math
import logging

from .models import Delivery
from .settings import Settings

log = logging.getLogger("shared.retry_queue")

DEFAULT_QUEUE = "calendly-deliveries"
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600 - 60  # Storage queues hide a message for 7 days at most


def queue_name(settings: Settings) -> str:
    return settings.env.get("DELIVERY_QUEUE") or DEFAULT_QUEUE


def queue_client(settings: Settings):
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    # The Functions queue trigger expects base64 message text by default.
    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    env, name = settings.env, queue_name(settings)
    if env.get("AzureWebJobsStorage"):
        return QueueClient.from_connection_string(env["AzureWebJobsStorage"], name, **policies)
    from .store.tables import _credential

    endpoint = env.get("AzureWebJobsStorage__queueServiceUri") or f"https://{env['AzureWebJobsStorage__accountName']}.queue.core.windows.net"
    return QueueClient(endpoint, name, credential=_credential(settings), **policies)


class QueueScheduler:
    def __init__(self, client):
        self._client = client
        self._created = False

    def schedule(self, delivery: Delivery, delay_seconds: float) -> None:
        from azure.core.exceptions import ResourceExistsError

        if not self._created:
            try:
                self._client.create_queue()
            except ResourceExistsError:
                pass
            self._created = True
        visibility = math.ceil(min(MAX_VISIBILITY_SECONDS, max(0.0, delay_seconds)))
        self._client.send_message(json.dumps({"delivery_id": delivery.id}), visibility_timeout=visibility)


def handle_message(text: str, bridge=None) -> str:
    """The queue trigger's work: retry one delivery. Malformed messages are dropped (logged)."""
    try:
        delivery_id = json.loads(text)["delivery_id"]
        if not isinstance(delivery_id, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        log.error("dropped a malformed retry message")
        return "malformed"
    if bridge is None:
        from .bridge import get_bridge

        bridge = get_bridge()
    result = bridge.deliveries.retry(delivery_id)
    status = "claimed elsewhere" if result is None else result.status
    log.info("retry of delivery %s: %s", delivery_id, status)
    return status
