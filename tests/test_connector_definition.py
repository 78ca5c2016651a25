"""connector/ on its own: a valid Swagger 2.0 custom connector whose triggers follow Power
Platform's webhook conventions (x-ms-trigger, an internal x-ms-notification-url, a DELETE for the
Location, x-ms-notification-content for dynamic content), naming only Calendly's real events, and
whose notification schemas accept Calendly's own example payloads. Nothing here runs the bridge."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
from openapi_spec_validator import validate

CONNECTOR = Path(__file__).resolve().parent.parent / "connector"
SWAGGER = json.loads((CONNECTOR / "apiDefinition.swagger.json").read_text("utf-8"))
PROPERTIES = json.loads((CONNECTOR / "apiProperties.json").read_text("utf-8"))

# Calendly API v2 webhook event names (developer.calendly.com; shared/calendly/FACTS.md).
CALENDLY_EVENTS = {
    "invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
    "routing_form_submission.created", "event_type.created", "event_type.updated", "event_type.deleted",
    "meeting_recap.created", "meeting_recap.updated", "meeting_recap.deleted",
    "contact.created", "contact.updated", "contact.deleted",
}
TRIGGER_EVENTS = {"invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
                  "routing_form_submission.created"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def operations():
    for path, item in SWAGGER["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op, item


def triggers():
    return [(path, method, op, item) for path, method, op, item in operations() if "x-ms-trigger" in op]


def body_schema(op: dict) -> dict:
    [param] = [p for p in op["parameters"] if p["in"] == "body"]
    return resolve_refs(param["schema"])


def resolve_refs(schema):
    """Inline #/definitions refs, keeping the x- extensions."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolve_refs(copy.deepcopy(SWAGGER["definitions"][schema["$ref"].rsplit("/", 1)[1]]))
        return {k: resolve_refs(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve_refs(v) for v in schema]
    return schema


def as_json_schema(schema):
    """Swagger 2.0 schema -> JSON Schema: drop extensions, turn x-nullable into 'or null'."""
    if isinstance(schema, dict):
        out = {k: as_json_schema(v) for k, v in schema.items() if not k.startswith("x-")}
        if schema.get("x-nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [as_json_schema(v) for v in schema]
    return schema


def notification_schema(event: str) -> dict:
    [item] = [item for _, _, op, item in triggers() if body_schema(op)["properties"]["events"]["default"] == [event]]
    return resolve_refs(item["x-ms-notification-content"]["schema"])


# The document -----------------------------------------------------------------------------------
def test_definition_is_valid_swagger_2_with_a_host_placeholder_and_the_api_base_path():
    validate(SWAGGER)
    assert SWAGGER["swagger"] == "2.0" and SWAGGER["schemes"] == ["https"]
    assert SWAGGER["basePath"] == "/api"
    assert SWAGGER["host"].endswith(".azurewebsites.net") and "YOUR-" in SWAGGER["host"], \
        "keep the placeholder in git; connector/README.md says how to set it"


def test_the_connection_asks_for_a_function_key_sent_as_x_functions_key():
    assert SWAGGER["securityDefinitions"] == {"api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"}}
    assert SWAGGER["security"] == [{"api_key": []}]
    key = PROPERTIES["properties"]["connectionParameters"]["api_key"]
    assert key["type"] == "securestring" and key["uiDefinition"]["constraints"]["required"] == "true"
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", PROPERTIES["properties"]["iconBrandColor"])


def test_operation_ids_are_unique_and_every_ref_resolves():
    ids = [op["operationId"] for _, _, op, _ in operations()]
    assert len(ids) == len(set(ids))
    refs = set(re.findall(r'"\$ref": "#/definitions/([^"]+)"', json.dumps(SWAGGER)))
    assert refs <= set(SWAGGER["definitions"]), refs - set(SWAGGER["definitions"])


def test_every_visible_operation_and_parameter_is_labelled_for_makers():
    for path, method, op, _ in operations():
        if op.get("x-ms-visibility") == "internal":
            continue
        assert op.get("summary") and op.get("description"), f"{method.upper()} {path}"
        for param in op.get("parameters", []):
            if param["in"] == "body":
                for name, prop in body_schema(op)["properties"].items():
                    assert prop.get("x-ms-summary") or prop.get("title"), f"{op['operationId']}: body.{name}"
            else:
                assert param.get("x-ms-summary"), f"{op['operationId']}: {param['name']}"


# Triggers -------------------------------------------------------------------------------------
def test_one_webhook_trigger_per_calendly_event_family():
    events = [body_schema(op)["properties"]["events"]["default"] for _, _, op, _ in triggers()]
    assert all(len(e) == 1 for e in events)
    assert sorted(e[0] for e in events) == sorted(TRIGGER_EVENTS)


def test_every_trigger_subscribes_with_post_on_the_subscriptions_route():
    keys = set()
    for path, method, op, _ in triggers():
        assert op["x-ms-trigger"] == "single" and method == "post"
        # Swagger 2.0 allows one POST per path key: each trigger's key adds a query the bridge ignores.
        parts = urlsplit(path)
        assert parts.path == "/subscriptions"
        [trigger_key] = parse_qs(parts.query)["trigger"]
        keys.add(trigger_key)
        assert [trigger_key] == body_schema(op)["properties"]["events"]["default"]
    assert len(keys) == len(triggers())


def test_the_notification_url_is_required_internal_and_marked():
    for _, _, op, _ in triggers():
        assert [p["required"] for p in op["parameters"] if p["in"] == "body"] == [True]
        schema = body_schema(op)
        url = schema["properties"]["url"]
        assert url["x-ms-notification-url"] is True and url["x-ms-visibility"] == "internal"
        assert url["type"] == "string" and "url" in schema["required"]
        assert [name for name, prop in schema["properties"].items() if prop.get("x-ms-notification-url")] == ["url"]


def test_the_event_is_fixed_per_trigger_and_hidden():
    for _, _, op, _ in triggers():
        events = body_schema(op)["properties"]["events"]
        assert events["x-ms-visibility"] == "internal" and events["type"] == "array"
        assert events["items"]["enum"] == events["default"], "Power Automate sends the internal default"


def test_scope_user_and_group_are_optional_advanced_and_routing_forms_are_organization_only():
    for _, _, op, _ in triggers():
        schema = body_schema(op)
        event = schema["properties"]["events"]["default"][0]
        optional = set(schema["properties"]) - {"url", "events"}
        assert not optional & set(schema["required"])
        scope = schema["properties"]["scope"]
        if event == "routing_form_submission.created":
            assert scope["enum"] == ["organization"] and scope["x-ms-visibility"] == "internal"
            assert optional == {"scope"}, "Calendly: routing form hooks are organization scope only"
        else:
            assert set(scope["enum"]) == {"organization", "user", "group"}
            assert optional == {"scope", "user", "group"}
            assert all(schema["properties"][name]["x-ms-visibility"] == "advanced" for name in optional)


def test_subscribe_answers_201_with_the_location_power_automate_deletes():
    for _, _, op, _ in triggers():
        created = op["responses"]["201"]
        assert "Location" in created["headers"] and created["schema"]["$ref"] == "#/definitions/Subscription"
        assert "Location" in op["responses"]["200"]["headers"], "a repeated subscribe returns the same Location"
    unsubscribe = SWAGGER["paths"]["/subscriptions/{id}"]["delete"]
    assert unsubscribe["x-ms-visibility"] == "internal"
    assert [p["name"] for p in unsubscribe["parameters"] if p["in"] == "path"] == ["id"]
    assert "204" in unsubscribe["responses"]
    # The bridge's Location is {BRIDGE_PUBLIC_URL}/api/subscriptions/{id}: the DELETE route above, on this host.
    location = f"https://{SWAGGER['host']}{SWAGGER['basePath']}/subscriptions/0f8c2c1e"
    template = re.escape(f"https://{SWAGGER['host']}{SWAGGER['basePath']}") + "/subscriptions/[^/?]+"
    assert re.fullmatch(template, location)


def test_every_event_named_anywhere_is_one_of_calendlys():
    named = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("enum", "default") and isinstance(value, list):
                    named.update(v for v in value if isinstance(v, str) and "." in v)
                elif key == "default" and isinstance(value, str) and "." in value:
                    named.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SWAGGER)
    named |= {parse_qs(urlsplit(path).query)["trigger"][0] for path, *_ in triggers()}
    assert named and named <= CALENDLY_EVENTS, named - CALENDLY_EVENTS


# Actions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, operation_id", [
    ("get", "/subscriptions", "ListSubscriptions"),
    ("get", "/subscriptions/{id}", "GetSubscription"),
    ("get", "/subscriptions/{id}/deliveries", "ListDeliveries"),
    ("post", "/deliveries/{delivery_id}/replay", "ReplayDelivery"),
    ("post", "/subscriptions/{id}/test", "SendTestEvent"),
])
def test_management_actions_map_to_the_bridge_routes(method, path, operation_id):
    op = SWAGGER["paths"][path][method]
    assert op["operationId"] == operation_id and op.get("x-ms-visibility") != "internal"
    assert "default" in op["responses"] and op["responses"]["default"]["schema"]["$ref"] == "#/definitions/Error"


def test_errors_have_the_bridges_shape():
    error = SWAGGER["definitions"]["Error"]["properties"]["error"]["properties"]
    assert {"code", "message"} <= set(error)


# Dynamic content ------------------------------------------------------------------------------
def test_makers_get_dynamic_content_for_the_envelope_and_the_invitee():
    for event in TRIGGER_EVENTS:
        envelope = notification_schema(event)["properties"]
        assert {"event", "created_at", "created_by", "payload"} <= set(envelope)
    invitee = notification_schema("invitee.canceled")["properties"]["payload"]["properties"]
    for field in ("name", "email", "first_name", "last_name", "status", "timezone", "questions_and_answers",
                  "tracking", "cancel_url", "reschedule_url", "rescheduled", "cancellation", "scheduled_event"):
        assert field in invitee, field
        assert invitee[field].get("x-ms-summary") or invitee[field].get("properties"), f"{field} has no label"
    assert {"canceled_by", "reason", "canceler_type"} <= set(invitee["cancellation"]["properties"])
    assert {"name", "start_time", "end_time", "location"} <= set(invitee["scheduled_event"]["properties"])
    assert {"question", "answer"} <= set(invitee["questions_and_answers"]["items"]["properties"])


def _invitee(status: str) -> dict:
    # Calendly's own example payload (OpenAPI export, WebhookPayload x-examples), plus the fields
    # the live service adds and non-ASCII text as real invitees write it.
    base = "https://api.calendly.com"
    return {
        "cancel_url": "https://calendly.com/cancellations/AAAAAAAAAAAAAAAA", "created_at": "2020-11-23T17:51:18.327602Z",
        "email": "zoe@example.com", "event": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA", "name": "Zoë Ångström",
        "first_name": None, "last_name": None, "new_invitee": None, "old_invitee": None,
        "questions_and_answers": [{"question": "¿Dónde?", "answer": "東京", "position": 0}],
        "reschedule_url": "https://calendly.com/reschedulings/AAAAAAAAAAAAAAAA", "rescheduled": False, "status": status,
        "text_reminder_number": None, "timezone": "America/New_York",
        "tracking": {"utm_campaign": None, "utm_source": None, "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "updated_at": "2020-11-23T17:51:18.341657Z", "uri": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA",
        "routing_form_submission": None, "payment": None, "no_show": None, "reconfirmation": None,
        "scheduled_event": {
            "uri": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA", "name": "15 Minute Meeting", "status": "active",
            "start_time": "2019-08-24T14:15:22.123456Z", "end_time": "2019-08-24T14:30:22.123456Z",
            "event_type": f"{base}/event_types/GBGBDCAADAEDCRZ2",
            "location": {"type": "physical", "location": "Calendly Office"},
            "invitees_counter": {"total": 1, "active": 1, "limit": 1},
            "created_at": "2019-01-02T03:04:05.678123Z", "updated_at": "2019-01-02T03:04:05.678123Z",
            "event_memberships": [{"user": f"{base}/users/GBGBDCAADAEDCRZ2"}], "event_guests": [],
        },
    }


EXAMPLES = {
    "invitee.created": _invitee("active"),
    "invitee.canceled": dict(_invitee("canceled"), cancellation={"canceled_by": "Zoë Ångström",
                                                                  "reason": "Meeting Conflict", "canceler_type": "invitee"}),
    "invitee_no_show.created": {"uri": "https://api.calendly.com/invitee_no_shows/6ee96ed4-83a3-4966-a278-cd19b3c02e09",
                                "invitee": "https://api.calendly.com/scheduled_events/AAAA/invitees/BBBB",
                                "created_at": "2020-11-23T17:51:18.341657Z"},
    "routing_form_submission.created": {
        "uri": "https://api.calendly.com/routing_form_submissions/AAAAAAAAAAAAAAAA",
        "routing_form": "https://api.calendly.com/routing_forms/AAAAAAAAAAAAAAAA",
        "questions_and_answers": [{"question_uuid": "123e4567-e89b-12d3-a456-426614174000",
                                   "question": "What is your industry?", "answer": "IT & Software"}],
        "tracking": {"utm_campaign": None, "utm_source": None, "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "result": {"type": "event_type", "value": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2"},
        "submitter": "https://calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA",
        "submitter_type": "Invitee", "created_at": "2022-05-15T03:04:05.678Z", "updated_at": "2022-05-15T06:05:04.321Z"},
}
EXAMPLES["invitee_no_show.deleted"] = EXAMPLES["invitee_no_show.created"]


@pytest.mark.parametrize("event", sorted(TRIGGER_EVENTS))
def test_notification_schema_accepts_calendlys_payload(event):
    envelope = {"event": event, "created_at": "2020-11-23T17:51:19.000000Z",
                "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA", "payload": EXAMPLES[event]}
    jsonschema.validate(envelope, as_json_schema(notification_schema(event)))
