"""A minimal Service Bus consumer for the bridge's Service Bus target.

    python examples/servicebus-consumer/consumer.py <namespace>.servicebus.windows.net calendly-events

Authenticates with DefaultAzureCredential (needs the Azure Service Bus Data Receiver role).
The message body is Calendly's JSON; ``message_id`` is the bridge's delivery id.
"""
from __future__ import annotations

import json
import sys


def describe(body: bytes, message_id: str | None, subject: str | None) -> str:
    """One line per event: name, delivery id, and the invitee (when the payload has one)."""
    envelope = json.loads(body)
    payload = envelope.get("payload") or {}
    return f"{subject or envelope.get('event')} delivery {message_id}: {payload.get('name')} <{payload.get('email')}>"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    namespace, queue = argv
    # Imported here so the module imports without the Azure SDKs (and without side effects).
    from azure.identity import DefaultAzureCredential
    from azure.servicebus import ServiceBusClient

    credential = DefaultAzureCredential()
    with ServiceBusClient(namespace, credential) as client, client.get_queue_receiver(queue) as receiver:
        try:
            for message in receiver:
                try:
                    line = describe(b"".join(message.body), message.message_id, message.subject)
                except (ValueError, TypeError, AttributeError) as exc:
                    print(f"not a Calendly event ({exc}); abandoning {message.message_id}", file=sys.stderr)
                    receiver.abandon_message(message)
                    continue
                print(line, flush=True)
                receiver.complete_message(message)
        except KeyboardInterrupt:
            pass
    credential.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
