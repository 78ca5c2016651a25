"""The custom connector against the running bridge, driven the way Power Automate drives it.

``PowerAutomate`` below knows nothing but connector/'s two files: the host comes from the
``dynamichosturl`` policy template with the connection's ``bridgeHost``, the function key goes in the
header the security definition names, each trigger is the path and body its operation declares
(internal fields sent with their defaults, visible ones as a maker leaves or sets them), and
unsubscribing is a DELETE on the ``Location`` of the ``201``. It runs against the local host
(``python -m shared serve``) and the Calendly sandbox over real sockets on 127.0.0.1.

The one liberty taken: the local host speaks http, so the template's ``https://`` becomes
``http://`` and ``bridgeHost`` is the local host's ``127.0.0.1:<port>``.
"""
from __future__ import annotations

import json

import jsonschema
import pytest
import requests

from shared.events import SUBSCRIBABLE, TRIGGER_EVENTS
from tests.conftest import ROOT, sandbox_hooks, simulate
from tests.swagger import to_json_schema

SWAGGER = json.loads((ROOT / "connector" / "apiDefinition.swagger.json").read_text("utf-8"))
PROPERTIES = json.loads((ROOT / "connector" / "apiProperties.json").read_text("utf-8"))["properties"]
METHODS = {"get", "put", "post", "delete", "patch"}




class PowerAutomate:
    """The platform's side of a connection, from the connector's files alone."""

    def __init__(self, bridge_host: str, function_key: str):
        [policy] = [p for p in PROPERTIES["policyTemplateInstances"] if p["templateId"].lower() == "dynamichosturl"]
        template = policy["parameters"]["x-ms-apimTemplateParameter.urlTemplate"]
        assert "bridgeHost" in PROPERTIES["connectionParameters"]
        url = template.replace("@connectionParameters('bridgeHost')", bridge_host)
        self.base = "http://" + url.removeprefix("https://")  # the local host has no TLS (see the module doc)
        [scheme] = SWAGGER["security"][0]
        self.headers = {SWAGGER["securityDefinitions"][scheme]["name"]: function_key}

    @staticmethod
    def operation(operation_id: str) -> tuple[str, dict, dict]:
        [found] = [(path, op, item) for path, item in SWAGGER["paths"].items() for method, op in item.items()
                   if method in METHODS and op["operationId"] == operation_id]
        return found

    def subscribe_body(self, operation_id: str, callback_url: str, **maker: object) -> dict:
        """The body the designer builds when the flow is saved."""
        _, op, _ = self.operation(operation_id)
        [param] = [p for p in op["parameters"] if p["in"] == "body"]
        schema = param["schema"]
        body: dict = {}
        for name, spec in schema["properties"].items():
            if spec.get("x-ms-notification-url"):
                body[name] = callback_url
            elif name in maker:
                body[name] = maker[name]
            elif name in schema.get("required", []) and "default" in spec:
                body[name] = spec["default"]  # internal fields are sent as their default; visible required ones start there
        missing = set(schema.get("required", [])) - set(body)
        assert not missing, f"a maker must fill in {missing}"
        return body

    def subscribe(self, operation_id: str, callback_url: str, **maker: object) -> requests.Response:
        path, op, _ = self.operation(operation_id)
        return requests.post(self.base + path, json=self.subscribe_body(operation_id, callback_url, **maker),
                             headers=self.headers, timeout=30)

    def unsubscribe(self, location: str) -> requests.Response:
        return requests.delete(location, headers=self.headers, timeout=30)


@pytest.fixture
def platform(bridge):
    return PowerAutomate(bridge.url.removeprefix("http://"), "local-keys-are-not-enforced")


CALLBACK = "/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=PASECRET"


@pytest.mark.parametrize("operation_id, maker, event", [
    ("WhenInviteeCreated", {}, "invitee.created"),
    ("WhenInviteeCanceled", {"scope": "organization"}, "invitee.canceled"),
    ("WhenNoShowMarked", {}, "invitee_no_show.created"),
    ("WhenRoutingFormSubmitted", {}, "routing_form_submission.created"),
    ("WhenCalendlyEventOccurs", {"events": ["invitee.canceled", "invitee_no_show.deleted"]}, "invitee_no_show.deleted"),
])
def test_power_automate_flow_lifecycle_against_the_local_host(platform, sandbox, target, operation_id, maker, event):
    path, op, item = platform.operation(operation_id)
    callback = target.url + CALLBACK

    subscribed = platform.subscribe(operation_id, callback, **maker)
    assert subscribed.status_code == 201, subscribed.text
    jsonschema.validate(subscribed.json(), to_json_schema(op["responses"]["201"]["schema"], SWAGGER["definitions"]))
    location = subscribed.headers["Location"]
    # The Location is the connector's internal unsubscribe operation on this connection's host.
    delete_path, delete_op, _ = platform.operation("DeleteSubscription")
    assert location == platform.base + delete_path.replace("{id}", subscribed.json()["id"])
    [hook] = sandbox_hooks(sandbox)
    body = platform.subscribe_body(operation_id, callback, **maker)
    assert hook["scope"] == body["scope"] and event in hook["events"]

    simulate(sandbox, event)
    [got] = target.wait_for(1)
    jsonschema.validate(json.loads(got["body"]), to_json_schema(item["x-ms-notification-content"]["schema"], SWAGGER["definitions"]))
    assert got["query"].endswith("sig=PASECRET")

    # Saving the flow again subscribes again: 201, same Location, still one Calendly hook.
    again = platform.subscribe(operation_id, callback, **maker)
    assert again.status_code == 201 and again.headers["Location"] == location and again.json()["id"] == subscribed.json()["id"]
    assert [h["uri"] for h in sandbox_hooks(sandbox)] == [hook["uri"]]

    assert platform.unsubscribe(location).status_code == 204
    assert sandbox_hooks(sandbox) == []
    assert requests.get(location, headers=platform.headers, timeout=30).status_code == 404


def test_the_connectors_triggers_are_the_ones_the_bridge_serves():
    """connector/ and shared/events.TRIGGER_EVENTS name the same triggers and events."""
    paths = {path: item["post"] for path, item in SWAGGER["paths"].items() if item.get("post", {}).get("x-ms-trigger")}
    assert {path.removeprefix("/triggers/") for path in paths} == set(TRIGGER_EVENTS)
    for path, op in paths.items():
        fixed = TRIGGER_EVENTS[path.removeprefix("/triggers/")]
        events = op["parameters"][0]["schema"]["properties"].get("events")
        if fixed is None:
            assert set(events["items"]["enum"]) == set(SUBSCRIBABLE)
        else:
            assert events is None and all(event in op["description"] for event in fixed)


# The bridge's trigger route: what Power Automate never sends, answered clearly -------------------------
def _post(bridge, path: str, body) -> requests.Response:
    return requests.post(f"{bridge.url}/api{path}", json=body, timeout=30)


def test_an_unknown_trigger_is_a_404_json_error(bridge, sandbox):
    response = _post(bridge, "/triggers/invitee-teleported", {"url": "http://127.0.0.1:9/cb", "scope": "user"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_trigger"
    assert sandbox_hooks(sandbox) == []


def test_a_trigger_without_scope_is_a_400(bridge, sandbox, target):
    """No default applies on this route: the connector always sends scope, so a missing one is a bug."""
    response = _post(bridge, "/triggers/invitee-created", {"url": target.url + "/cb"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_subscription"
    assert "scope" in response.json()["error"]["message"]
    assert sandbox_hooks(sandbox) == []


def test_a_family_trigger_refuses_events_its_path_fixes_them(bridge, sandbox, target):
    """Refused rather than ignored: a caller sending other events would silently get the path's."""
    response = _post(bridge, "/triggers/invitee-created", {"url": target.url + "/cb", "scope": "user",
                                                            "events": ["invitee.canceled"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_subscription"
    assert "events" in response.json()["error"]["message"]
    assert sandbox_hooks(sandbox) == []


def test_the_event_trigger_needs_events(bridge, sandbox, target):
    response = _post(bridge, "/triggers/event", {"url": target.url + "/cb", "scope": "user"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_subscription"
    assert "events" in response.json()["error"]["message"]
    assert sandbox_hooks(sandbox) == []


def test_a_trigger_and_subscriptions_give_the_same_subscription(bridge, sandbox, target):
    """Idempotent across the two routes: same target + events + scope -> same id, one Calendly hook;
    /api/subscriptions keeps its own contract (200 on a repeat)."""
    url = target.url + "/cb"
    created = _post(bridge, "/triggers/invitee-created", {"url": url, "scope": "organization"})
    plain = _post(bridge, "/subscriptions", {"url": url, "events": ["invitee.created"]})  # organization is its default
    assert (created.status_code, plain.status_code) == (201, 200)
    assert plain.json()["id"] == created.json()["id"] and plain.headers["Location"] == created.headers["Location"]
    assert len(sandbox_hooks(sandbox)) == 1


def test_a_maker_filters_by_event_type_and_reads_an_answer_by_name(platform, sandbox, target):
    """The trigger's advanced fields as a maker sets them: only "Demo call" bookings, enriched payload;
    the flow runs once for the matching booking and reads an answer by its question's text."""
    from devtools import sample_events

    demo = "https://api.calendly.com/event_types/DEMOCALL"
    _, _, item = platform.operation("WhenInviteeCreated")
    subscribed = platform.subscribe("WhenInviteeCreated", target.url + CALLBACK, event_types=[demo], payload="enriched")
    assert subscribed.status_code == 201, subscribed.text
    assert subscribed.json()["filters"]["event_types"] == [demo] and subscribed.json()["payload"] == "enriched"
    for event_type in ("https://api.calendly.com/event_types/OTHER", demo):
        envelope = sample_events.envelope("invitee.created", sandbox.url)
        envelope["payload"]["scheduled_event"]["event_type"] = event_type
        simulate(sandbox, "invitee.created", envelope=envelope)
    [got] = target.wait_for(1)
    body = json.loads(got["body"])
    jsonschema.validate(body, to_json_schema(item["x-ms-notification-content"]["schema"], SWAGGER["definitions"]))
    assert body["payload"]["scheduled_event"]["event_type"] == demo
    # In the flow: triggerBody()?['enriched']?['answers']?['Anything we should know?']
    assert body["enriched"]["answers"]["Anything we should know?"] == "Ich spreche nur ein bisschen Englisch. Grüße!"
    view = requests.get(subscribed.headers["Location"], headers=platform.headers, timeout=30).json()
    assert view["filter_counts"] == {"matched": 1, "filtered_out": 1}
