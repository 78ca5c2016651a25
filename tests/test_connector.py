"""The Power Platform custom connector (connector/): valid Swagger 2.0 with webhook triggers as
Power Automate expects them, and a contract test that drives the running local host exactly as
Power Automate would from this file."""
from __future__ import annotations

import copy
import json
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from shared.events import EVENT_TYPES
from tests.conftest import ROOT, simulate

SWAGGER = json.loads((ROOT / "connector" / "apiDefinition.swagger.json").read_text("utf-8"))
PROPERTIES = json.loads((ROOT / "connector" / "apiProperties.json").read_text("utf-8"))


def triggers():
    for path, item in SWAGGER["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("x-ms-trigger"):
                yield path, method, op, item


def resolve(schema):
    """Inline #/definitions refs (for jsonschema)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolve(copy.deepcopy(SWAGGER["definitions"][schema["$ref"].rsplit("/", 1)[1]]))
        out = {k: resolve(v) for k, v in schema.items() if not k.startswith("x-")}
        if schema.get("x-nullable") and "type" in out:  # Power Platform's Swagger 2.0 way of saying "or null"
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [resolve(v) for v in schema]
    return schema


def test_definition_is_valid_swagger_2():
    validate(SWAGGER)
    assert SWAGGER["swagger"] == "2.0" and SWAGGER["basePath"] == "/api"


def test_api_key_connection_on_the_function_key_header():
    assert SWAGGER["securityDefinitions"]["api_key"] == {"type": "apiKey", "in": "header", "name": "x-functions-key"}
    assert PROPERTIES["properties"]["connectionParameters"]["api_key"]["type"] == "securestring"


def test_one_trigger_per_event_family_with_an_internal_notification_url():
    events = set()
    for path, method, op, item in triggers():
        assert method == "post" and urlsplit(path).path == "/subscriptions" and op["x-ms-trigger"] == "single"
        body = op["parameters"][0]["schema"]["properties"]
        assert body["url"]["x-ms-notification-url"] is True and body["url"]["x-ms-visibility"] == "internal"
        assert body["events"]["x-ms-visibility"] == "internal"
        events |= set(body["events"]["default"])
        assert "Location" in op["responses"]["201"]["headers"]
        assert item["x-ms-notification-content"]["schema"]
    assert events == {"invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
                      "routing_form_submission.created"} and events <= set(EVENT_TYPES)


def test_makers_get_dynamic_content_for_invitee_events():
    payload = SWAGGER["definitions"]["InviteePayload"]["properties"]
    for field in ("name", "email", "questions_and_answers", "cancellation", "scheduled_event", "tracking", "cancel_url"):
        assert field in payload and (payload[field].get("x-ms-summary") or payload[field].get("properties"))
    assert "start_time" in payload["scheduled_event"]["properties"]


def test_routing_forms_are_organization_scope_only():
    [op] = [op for path, _, op, _ in triggers() if "routing_form" in path]
    assert op["parameters"][0]["schema"]["properties"]["scope"]["enum"] == ["organization"]


def test_delete_is_internal_and_list_get_actions_exist():
    item = SWAGGER["paths"]["/subscriptions/{id}"]
    assert item["delete"]["x-ms-visibility"] == "internal" and "get" in item
    assert "get" in SWAGGER["paths"]["/subscriptions"]


@pytest.mark.parametrize("operation_id, event", [("WhenInviteeCreated", "invitee.created"), ("WhenInviteeCanceled", "invitee.canceled")])
def test_power_automate_flow_lifecycle_against_the_local_host(bridge, sandbox, target, operation_id, event):
    [(path, _, op, item)] = [t for t in triggers() if t[2]["operationId"] == operation_id]
    body_schema = op["parameters"][0]["schema"]
    notification_url = f"{target.url}/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=PASECRET"
    body = {"url": notification_url}
    for name, spec in body_schema["properties"].items():  # Power Automate fills internal defaults itself
        if name != "url" and "default" in spec:
            body[name] = spec["default"]
    headers = {"x-functions-key": "local-keys-are-not-enforced", "Content-Type": "application/json"}
    subscribed = requests.post(f"{bridge.url}{SWAGGER['basePath']}{path}", json=body, headers=headers, timeout=30)
    assert subscribed.status_code == 201, subscribed.text
    jsonschema.validate(subscribed.json(), resolve(op["responses"]["201"]["schema"]))
    location = subscribed.headers["Location"]

    simulate(sandbox, event)
    [got] = target.wait_for(1)
    jsonschema.validate(json.loads(got["body"]), resolve(item["x-ms-notification-content"]["schema"]))
    assert got["query"].endswith("sig=PASECRET")

    deleted = requests.delete(location, headers=headers, timeout=30)
    assert deleted.status_code == 204
    assert requests.get(location, headers=headers, timeout=30).status_code == 404
