"""Service Bus target at the SDK boundary (no Service Bus emulator runs here): the real
ServiceBusMessage objects the real SDK would send, client reuse, error mapping, and the real
SDK's connection attempts to a closed and to a silent loopback port."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import (MessageSizeExceededError, MessagingEntityNotFoundError, ServiceBusAuthenticationError,
                                         ServiceBusConnectionError)

from shared.models import Delivery, ServiceBusEntity, Subscription
from shared.settings import Settings
from shared.targets import servicebus as servicebus_module
from shared.azure_clients import servicebus_client
from shared.targets.servicebus import ServiceBusTarget
from tests.conftest import ROOT, free_port

BODY = json.dumps({"event": "invitee.created", "payload": {"name": "Zoë Ångström"}}, ensure_ascii=False).encode("utf-8")


class FakeSender:
    def __init__(self, entity, name, fail=None, block=None):
        self.entity, self.name, self.fail, self.block = entity, name, fail, block
        self.sent: list[ServiceBusMessage] = []
        self.timeouts: list[float] = []
        self.closed = False

    def send_messages(self, message, timeout=None):
        if self.block is not None:
            self.block.wait()  # like the SDK stuck in a connection handshake: deaf to its own timeout
        if self.fail:
            raise self.fail
        self.sent.append(message)
        self.timeouts.append(timeout)

    def close(self):
        self.closed = True


class FakeClient:
    def __init__(self, fail=None, block=None):
        self.senders: list[FakeSender] = []
        self.fail, self.block = fail, block
        self.closed = False

    def get_queue_sender(self, queue_name):
        self.senders.append(FakeSender("queue", queue_name, self.fail, self.block))
        return self.senders[-1]

    def get_topic_sender(self, topic_name):
        self.senders.append(FakeSender("topic", topic_name, self.fail, self.block))
        return self.senders[-1]

    def close(self):
        self.closed = True


def sb_subscription(entity="queue", name="calendly-events"):
    return Subscription(id="a" * 32, target=ServiceBusEntity(entity, name), events=["invitee.created"],
                        scope="organization", organization="o", user=None, group=None, signing_key="k", generation="g")


def delivery(n=0):
    return Delivery(id=f"{'a' * 32}-{n:024x}", subscription_id="a" * 32, event="invitee.created", event_key="k", body=BODY)


def test_message_carries_raw_body_and_ids():
    client = FakeClient()
    target = ServiceBusTarget(lambda: client)
    assert target.send(sb_subscription(), delivery(), 8.0).ok
    [message] = client.senders[0].sent
    assert b"".join(message.body) == BODY
    assert message.content_type == "application/json"
    assert message.message_id == delivery().id and message.subject == "invitee.created"
    assert message.application_properties == {"calendly_event": "invitee.created", "bridge_subscription_id": "a" * 32,
                                              "bridge_delivery_id": delivery().id}
    [timeout] = client.senders[0].timeouts
    assert 7.0 < timeout <= 8.0  # the SDK's own operation timeout is the delivery budget


def test_topic_targets_use_a_topic_sender():
    client = FakeClient()
    target = ServiceBusTarget(lambda: client)
    assert target.send(sb_subscription("topic", "calendly"), delivery(), 8.0).ok
    assert [(s.entity, s.name, len(s.sent)) for s in client.senders] == [("topic", "calendly", 1)]


def test_one_client_and_one_sender_per_entity_are_reused_across_threads():
    made = []
    target = ServiceBusTarget(lambda: made.append(FakeClient()) or made[-1])
    threads = [threading.Thread(target=lambda i=i: target.send(sb_subscription("topic" if i % 2 else "queue", "t" if i % 2 else "q"), delivery(i), 8))
               for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(made) == 1
    assert sorted((s.entity, s.name, len(s.sent)) for s in made[0].senders) == [("queue", "q", 10), ("topic", "t", 10)]


@pytest.mark.parametrize("error, hint", [
    (ServiceBusConnectionError(message="refused"), "could not be reached"),
    (MessagingEntityNotFoundError(message="no queue"), "does not exist"),
    (ServiceBusAuthenticationError(message="401"), "Azure Service Bus Data Sender"),
    (MessageSizeExceededError(message="too big"), "maximum message size"),
])
def test_service_bus_errors_are_retryable_failures_not_retirements(error, hint):
    target = ServiceBusTarget(lambda: FakeClient(fail=error))
    result = target.send(sb_subscription(), delivery(), 8.0)
    assert not result.ok and not result.gone and type(error).__name__ in result.error and hint in result.error
    assert result.error.startswith("Service Bus queue 'calendly-events': ")


def test_a_send_the_sdk_does_not_bound_is_abandoned_at_the_budget_and_its_sender_replaced():
    release = threading.Event()
    client = FakeClient(block=release)
    target = ServiceBusTarget(lambda: client)
    started = time.monotonic()
    result = target.send(sb_subscription(), delivery(), 1.0)
    assert not result.ok and "no answer within 1 s" in result.error
    assert time.monotonic() - started < 1.0 + servicebus_module.ABANDON_GRACE_SECONDS + 0.5
    assert target.stuck == 1
    client.block = None
    assert target.send(sb_subscription(), delivery(1), 1.0).ok and len(client.senders) == 2  # a fresh sender
    release.set()
    deadline = time.monotonic() + 5
    while (target.stuck or not client.senders[0].closed) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.stuck == 0 and client.senders[0].closed


def test_too_many_stuck_sends_fail_fast(monkeypatch):
    monkeypatch.setattr(servicebus_module, "MAX_STUCK_SENDS", 1)
    monkeypatch.setattr(servicebus_module, "ABANDON_GRACE_SECONDS", 0.1)
    release = threading.Event()
    client = FakeClient(block=release)
    target = ServiceBusTarget(lambda: client)
    assert "no answer" in target.send(sb_subscription(), delivery(), 1.0).error
    started = time.monotonic()
    result = target.send(sb_subscription(), delivery(1), 1.0)
    assert not result.ok and "still blocked" in result.error and time.monotonic() - started < 0.1
    assert len(client.senders) == 1
    release.set()


def test_real_sdk_against_a_closed_loopback_port_fails_cleanly_without_secrets(caplog):
    # UseDevelopmentEmulator: plain AMQP on the port given (without it the SDK dials 5671 over TLS).
    connection = (f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=send;SharedAccessKey=SUPERSECRETKEY;"
                  "UseDevelopmentEmulator=true")
    def factory():
        from azure.servicebus import ServiceBusClient

        return ServiceBusClient.from_connection_string(connection, retry_total=0)

    with caplog.at_level("DEBUG"):
        result = ServiceBusTarget(factory).send(sb_subscription(), delivery(), 3.0)
    assert not result.ok and "ServiceBusConnectionError" in result.error
    assert "SUPERSECRETKEY" not in result.error and "SUPERSECRETKEY" not in caplog.text


@pytest.fixture
def silent_listener():
    """Accepts TCP connections and never says a word (a wedged proxy or broker)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for conn in accepted:
        conn.close()


def test_real_sdk_against_a_silent_peer_is_bounded_by_the_budget(silent_listener):
    """The SDK's own send timeout does not cover the handshake; the target's budget does."""
    port, accepted = silent_listener
    connection = f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=send;SharedAccessKey=SUPERSECRETKEY;UseDevelopmentEmulator=true"
    target = ServiceBusTarget(lambda: servicebus_client(Settings.from_env({"SERVICEBUS_CONNECTION": connection})))
    started = time.monotonic()
    result = target.send(sb_subscription(), delivery(), 2.0)
    assert not result.ok and "no answer within 2 s" in result.error and "SUPERSECRETKEY" not in result.error
    assert time.monotonic() - started < 2.0 + servicebus_module.ABANDON_GRACE_SECONDS + 0.5
    assert accepted and target.stuck == 1
    for conn in accepted:  # the peer goes away: the blocked SDK thread ends and is reaped
        conn.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + 10
    while target.stuck and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.stuck == 0
    target.close()


def test_a_malformed_connection_string_is_a_failure_not_a_crash():
    target = ServiceBusTarget(lambda: servicebus_client(Settings.from_env({"SERVICEBUS_CONNECTION": "Endpoint=nonsense;SharedAccessKey=SUPERSECRETKEY"})))
    result = target.send(sb_subscription(), delivery(), 2.0)
    assert not result.ok and "ValueError" in result.error and "SUPERSECRETKEY" not in result.error


def test_an_unconfigured_target_fails_with_the_settings_to_set():
    result = ServiceBusTarget(lambda: servicebus_client(Settings.from_env({}))).send(sb_subscription(), delivery(), 2.0)
    assert not result.ok and "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE" in result.error and "SERVICEBUS_CONNECTION" in result.error


def test_client_comes_from_the_connection_string_or_the_namespace_with_the_apps_credential():
    class Credential:
        def get_token(self, *scopes, **kwargs):
            raise AssertionError("no token is needed to build a client")

    credential = Credential()
    by_identity = servicebus_client(Settings.from_env({"SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": "sb://contoso.servicebus.windows.net/"}),
                                        credential)
    assert by_identity.fully_qualified_namespace == "contoso.servicebus.windows.net"
    assert by_identity._credential is credential
    both = Settings.from_env({"SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": "contoso.servicebus.windows.net",
                              "SERVICEBUS_CONNECTION": "Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=s;SharedAccessKey=k"})
    assert servicebus_client(both, credential).fully_qualified_namespace == "local.servicebus.windows.net"


def test_close_releases_the_client_and_its_senders():
    client = FakeClient()
    target = ServiceBusTarget(lambda: client)
    target.send(sb_subscription(), delivery(), 2.0)
    target.close()
    assert client.closed and client.senders[0].closed


def test_azure_sdks_are_imported_only_when_used():
    code = ("import sys; import shared.composition, shared.targets.servicebus, shared.secrets; "
            "print(sorted(m for m in sys.modules if m.startswith(('azure.servicebus', 'azure.identity', 'azure.keyvault'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_servicebus_target_needs_configuration(bridge, sandbox):
    response = bridge.api("POST", "/subscriptions", json={"target": {"type": "servicebus", "queue": "q"}, "events": ["invitee.created"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "servicebus_not_configured"


def test_servicebus_subscription_records_a_pending_delivery_when_the_namespace_is_unreachable(make_host, sandbox):
    from tests.conftest import simulate

    connection = (f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=send;SharedAccessKey=SUPERSECRETKEY;"
                  "UseDevelopmentEmulator=true")
    bridge = make_host(SERVICEBUS_CONNECTION=connection)
    created = bridge.api("POST", "/subscriptions", json={"target": {"type": "servicebus", "queue": "calendly-events"},
                                                         "events": ["invitee.created"]})
    target = created.json()["target"]
    assert created.status_code == 201 and target == {"type": "servicebus", "queue": "calendly-events",
                                                     "fingerprint": target["fingerprint"]}
    assert re.fullmatch(r"[0-9a-f]{16}", target["fingerprint"])
    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [202]
    [item] = bridge.api("GET", f"/subscriptions/{created.json()['id']}/deliveries").json()["value"]
    assert item["status"] == "pending" and "Service Bus queue 'calendly-events'" in item["last_error"]
    assert "SUPERSECRETKEY" not in bridge.logs()
