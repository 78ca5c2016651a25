"""The examples stay consistent with the bridge's contract."""
import importlib.util
import json

from tests.conftest import ROOT


def test_logic_app_webhook_trigger_subscribes_and_unsubscribes_by_callback_url():
    workflow = json.loads((ROOT / "examples" / "logic-app" / "workflow.json").read_text())
    [trigger] = workflow["definition"]["triggers"].values()
    assert trigger["type"] == "HttpWebhook"
    subscribe, unsubscribe = trigger["inputs"]["subscribe"], trigger["inputs"]["unsubscribe"]
    assert subscribe["method"] == "POST" and subscribe["uri"].endswith("/api/subscriptions")
    assert subscribe["body"]["callbackUrl"] == "@{listCallbackUrl()}" and "x-functions-key" in subscribe["headers"]
    assert unsubscribe["method"] == "DELETE" and "callbackUrl=@{encodeUriComponent(listCallbackUrl())}" in unsubscribe["uri"]


def test_logic_app_body_is_a_valid_subscribe_body():
    from shared.schemas import parse_subscribe

    workflow = json.loads((ROOT / "examples" / "logic-app" / "workflow.json").read_text())
    [trigger] = workflow["definition"]["triggers"].values()
    body = dict(trigger["inputs"]["subscribe"]["body"], callbackUrl="https://prod-01.westus.logic.azure.com/x?sig=1")
    assert parse_subscribe(body).events == ["invitee.created", "invitee.canceled"]


def test_servicebus_consumer_imports_without_side_effects_and_describes_a_message():
    spec = importlib.util.spec_from_file_location("consumer", ROOT / "examples" / "servicebus-consumer" / "consumer.py")
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    body = json.dumps({"event": "invitee.created", "payload": {"name": "Zoë", "email": "z@example.com"}}).encode()
    assert consumer.describe(body, "id-1", "invitee.created") == "invitee.created delivery id-1: Zoë <z@example.com>"
    assert consumer.main([]) == 2
