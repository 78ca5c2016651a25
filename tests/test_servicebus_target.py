"""Service Bus target at the SDK boundary (no Service Bus emulator runs here): the real
ServiceBusMessage objects the real SDK would send, client reuse, error mapping, and the real
SDK's connection attempt to a closed loopback port."""
from __future__ import annotations

import json
import threading

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusConnectionError

from shared.models import Delivery, Subscription
from shared.settings import Settings
from shared.targets.servicebus import ServiceBusTarget
from tests.conftest import free_port

BODY = json.dumps({"event": "invitee.created", "payload": {"name": "Zoë Ångström"}}, ensure_ascii=False).encode("utf-8")


class FakeSender:
    def __init__(self, entity, name, fail=None):
        self.entity, self.name, self.fail = entity, name, fail
        self.sent: list[ServiceBusMessage] = []
        self.timeouts: list[float] = []
        self.closed = False

    def send_messages(self, message, timeout=None):
        if self.fail:
            raise self.fail
        self.sent.append(message)
        self.timeouts.append(timeout)

    def close(self):
        self.closed = True


class FakeClient:
    def __init__(self, fail=None):
        self.senders: list[FakeSender] = []
        self.fail = fail

    def get_queue_sender(self, queue_name):
        self.senders.append(FakeSender("queue", queue_name, self.fail))
        return self.senders[-1]

    def get_topic_sender(self, topic_name):
        self.senders.append(FakeSender("topic", topic_name, self.fail))
        return self.senders[-1]

    def close(self):
        pass


def sub(entity="queue", name="calendly-events"):
    return Subscription(id="a" * 32, target={"type": "servicebus", "entity": entity, "name": name}, events=["invitee.created"],
                        scope="organization", organization="o", user=None, group=None, signing_key="k", generation="g")


def delivery(n=0):
    return Delivery(id=f"{'a' * 32}-{n:024x}", subscription_id="a" * 32, event="invitee.created", event_key="k", body=BODY)


def test_message_carries_raw_body_and_ids():
    client = FakeClient()
    target = ServiceBusTarget(Settings.from_env({}), client_factory=lambda: client)
    assert target.send(sub(), delivery(), 8.0).ok
    [message] = client.senders[0].sent
    assert b"".join(message.body) == BODY
    assert message.content_type == "application/json"
    assert message.message_id == delivery().id and message.subject == "invitee.created"
    assert message.application_properties == {"calendly_event": "invitee.created", "bridge_subscription_id": "a" * 32,
                                              "bridge_delivery_id": delivery().id}
    assert client.senders[0].timeouts == [8.0]


def test_one_client_and_one_sender_per_entity_are_reused_across_threads():
    made = []
    target = ServiceBusTarget(Settings.from_env({}), client_factory=lambda: made.append(FakeClient()) or made[-1])
    threads = [threading.Thread(target=lambda i=i: target.send(sub("topic" if i % 2 else "queue", "t" if i % 2 else "q"), delivery(i), 8))
               for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(made) == 1
    assert sorted((s.entity, s.name, len(s.sent)) for s in made[0].senders) == [("queue", "q", 10), ("topic", "t", 10)]


@pytest.mark.parametrize("error", [ServiceBusConnectionError(message="refused"), MessagingEntityNotFoundError(message="no queue")])
def test_service_bus_errors_are_retryable_failures_not_retirements(error):
    target = ServiceBusTarget(Settings.from_env({}), client_factory=lambda: FakeClient(fail=error))
    result = target.send(sub(), delivery(), 8.0)
    assert not result.ok and not result.gone and type(error).__name__ in result.error


def test_real_sdk_against_a_closed_loopback_port_fails_cleanly_without_secrets():
    connection = f"Endpoint=sb://127.0.0.1:{free_port()}/;SharedAccessKeyName=send;SharedAccessKey=SUPERSECRETKEY"
    settings = Settings.from_env({"SERVICEBUS_CONNECTION": connection})

    def factory():
        from azure.servicebus import ServiceBusClient

        return ServiceBusClient.from_connection_string(connection, retry_total=0)

    result = ServiceBusTarget(settings, client_factory=factory).send(sub(), delivery(), 3.0)
    assert not result.ok and "SUPERSECRETKEY" not in (result.error or "")


def test_servicebus_target_needs_configuration(bridge, sandbox):
    response = bridge.api("POST", "/subscriptions", json={"target": {"type": "servicebus", "queue": "q"}, "events": ["invitee.created"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "servicebus_not_configured"


def test_servicebus_subscription_records_a_pending_delivery_when_the_namespace_is_unreachable(make_host, sandbox):
    from tests.conftest import simulate

    connection = f"Endpoint=sb://127.0.0.1:{free_port()}/;SharedAccessKeyName=send;SharedAccessKey=SUPERSECRETKEY"
    bridge = make_host(SERVICEBUS_CONNECTION=connection)
    created = bridge.api("POST", "/subscriptions", json={"target": {"type": "servicebus", "queue": "calendly-events"},
                                                         "events": ["invitee.created"]})
    assert created.status_code == 201 and created.json()["target"] == {"type": "servicebus", "queue": "calendly-events"}
    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [202]
    [item] = bridge.api("GET", f"/subscriptions/{created.json()['id']}/deliveries").json()["value"]
    assert item["status"] == "pending" and "Service Bus queue 'calendly-events'" in item["last_error"]
    assert "SUPERSECRETKEY" not in bridge.logs()
