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


def test_the_logic_app_readmes_account_body_is_a_valid_subscribe_body():
    import re

    from shared.schemas import parse_subscribe

    text = (ROOT / "examples" / "logic-app" / "README.md").read_text()
    [snippet] = [s for s in re.findall(r"`(\{[^`]*\})`", text) if '"account"' in s]
    body = dict(json.loads(snippet), callbackUrl="https://prod-01.westus.logic.azure.com/x?sig=1")
    assert parse_subscribe(body).account == "sales"


def test_servicebus_consumer_imports_without_side_effects_and_describes_a_message():
    spec = importlib.util.spec_from_file_location("consumer", ROOT / "examples" / "servicebus-consumer" / "consumer.py")
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    body = json.dumps({"event": "invitee.created", "payload": {"name": "Zoë", "email": "z@example.com"}}).encode()
    assert consumer.describe(body, "id-1", "invitee.created") == "invitee.created delivery id-1: Zoë <z@example.com>"
    assert consumer.main([]) == 2


def test_logic_app_entra_variant_authenticates_subscribe_and_unsubscribe_with_its_managed_identity():
    """Same trigger as workflow.json, but the Logic App's managed identity gets a token for the bridge
    (audience = its application ID URI) instead of sending a function key."""
    from shared.schemas import parse_subscribe

    keyed = json.loads((ROOT / "examples" / "logic-app" / "workflow.json").read_text())
    entra = json.loads((ROOT / "examples" / "logic-app" / "workflow.entra.json").read_text())
    [trigger] = entra["definition"]["triggers"].values()
    [keyed_trigger] = keyed["definition"]["triggers"].values()
    for step in ("subscribe", "unsubscribe"):
        inputs = trigger["inputs"][step]
        assert inputs["authentication"] == {"type": "ManagedServiceIdentity", "audience": "@{parameters('bridgeAudience')}"}
        assert "x-functions-key" not in json.dumps(inputs)
        assert (inputs["method"], inputs["uri"]) == (keyed_trigger["inputs"][step]["method"], keyed_trigger["inputs"][step]["uri"])
    assert "bridgeFunctionKey" not in entra["definition"]["parameters"]
    body = dict(trigger["inputs"]["subscribe"]["body"], callbackUrl="https://prod-01.westus.logic.azure.com/x?sig=1")
    # A managed identity has no email to match a Calendly user by: it subscribes at organization scope.
    assert parse_subscribe(body).scope == "organization"


def test_logic_app_entra_bicep_deploys_it_disabled_with_a_system_assigned_identity():
    from pycep import BicepParser

    parsed = BicepParser().parse(file_path=ROOT / "examples" / "logic-app" / "workflow.entra.bicep")
    [workflow] = parsed["resources"].values()
    config = workflow["config"]
    assert workflow["type"] == "Microsoft.Logic/workflows" and config["identity"] == {"type": "SystemAssigned"}
    assert parsed["parameters"]["state"]["default"] == "Disabled"
    assert set(config["properties"]["parameters"]) == {"bridgeUrl", "bridgeAudience"}
    assert "principalId" in parsed["outputs"]
