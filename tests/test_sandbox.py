"""The Calendly sandbox speaks Calendly's shapes: its responses, and the requests the bridge's
client sends it, validate against Calendly's own OpenAPI export (../shared/calendly/)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30Validator

from shared import signatures
from shared.calendly import CalendlyClient
from shared.events import EVENT_TYPES
from shared.secrets import EnvironmentPat
from tests.conftest import ROOT, sandbox_requests

SPEC_PATH = ROOT.parent / "shared" / "calendly" / "calendly-api-openapi-2024.yaml"
AUTH = {"Authorization": "Bearer test-pat"}


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


def _inline(node, spec):
    """Resolve every $ref, and widen the two enums FACTS.md says the 2024 export predates:
    the `group` scope and the newer event types (meeting_recap.*, contact.*, ...)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _inline(copy.deepcopy(target), spec)
        out = {k: _inline(v, spec) for k, v in node.items()}
        if isinstance(out.get("enum"), str):  # the export writes some one-value enums as a bare string
            out["enum"] = [out["enum"]]
        enum = out.get("enum")
        if enum and "invitee.created" in enum:
            out["enum"] = list(EVENT_TYPES)
        if enum and set(enum) == {"organization", "user"}:
            out["enum"] = ["organization", "user", "group"]
        if enum == ["The resource already exists"]:  # FACTS.md: Calendly now says which resource
            out["enum"] = enum + ["Hook with this url already exists"]
        return out
    if isinstance(node, list):
        return [_inline(v, spec) for v in node]
    return node


def response_schema(spec, path, method, status):
    response = spec["paths"][path][method]["responses"][str(status)]
    return _inline(response, spec)["content"]["application/json"]["schema"]


def request_schema(spec, path, method):
    return _inline(spec["paths"][path][method]["requestBody"], spec)["content"]["application/json"]["schema"]


def check(schema, instance):
    errors = sorted(OAS30Validator(schema).iter_errors(instance), key=str)
    assert not errors, [e.message for e in errors]


def me(sandbox):
    return requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5).json()["resource"]


def create(sandbox, url="https://flow.example/hook", events=("invitee.created",), scope="organization", **extra):
    body = {"url": url, "events": list(events), "organization": me(sandbox)["current_organization"], "scope": scope,
            "signing_key": "sandbox-test-key", **extra}
    return requests.post(f"{sandbox.url}/webhook_subscriptions", json=body, headers=AUTH, timeout=5)


# Shapes against the OpenAPI export ------------------------------------------------------------
def test_users_me_matches_the_export(sandbox, spec):
    response = requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5)
    check(response_schema(spec, "/users/me", "get", 200), response.json())


def test_created_hook_matches_the_export_and_never_returns_the_key(sandbox, spec):
    response = create(sandbox)
    assert response.status_code == 201
    check(response_schema(spec, "/webhook_subscriptions", "post", 201), response.json())
    assert "sandbox-test-key" not in response.text
    got = requests.get(response.json()["resource"]["uri"].replace(sandbox.app.base_url, sandbox.url), headers=AUTH, timeout=5)
    check(response_schema(spec, "/webhook_subscriptions/{webhook_uuid}", "get", 200), got.json())
    assert "sandbox-test-key" not in got.text


def test_list_and_pagination_match_the_export(sandbox, spec):
    for i in range(5):
        create(sandbox, url=f"https://flow.example/{i}")
    org = me(sandbox)["current_organization"]
    seen, params = [], {"organization": org, "scope": "organization", "count": 2}
    while True:
        page = requests.get(f"{sandbox.url}/webhook_subscriptions", params=params, headers=AUTH, timeout=5).json()
        check(response_schema(spec, "/webhook_subscriptions", "get", 200), page)
        seen += [h["callback_url"] for h in page["collection"]]
        if not page["pagination"]["next_page"]:
            break
        params = {**params, "page_token": page["pagination"]["next_page_token"]}
    assert seen == [f"https://flow.example/{i}" for i in range(5)]


@pytest.mark.parametrize("path, method, status, call", [
    ("/webhook_subscriptions", "post", 401, lambda s: requests.post(f"{s.url}/webhook_subscriptions", json={}, timeout=5)),
    ("/webhook_subscriptions", "post", 400, lambda s: requests.post(f"{s.url}/webhook_subscriptions", json={"url": "x"}, headers=AUTH, timeout=5)),
    ("/webhook_subscriptions", "post", 409, lambda s: (create(s), create(s))[1]),
    ("/webhook_subscriptions", "get", 400, lambda s: requests.get(f"{s.url}/webhook_subscriptions", headers=AUTH, timeout=5)),
    ("/webhook_subscriptions/{webhook_uuid}", "get", 404, lambda s: requests.get(f"{s.url}/webhook_subscriptions/nope", headers=AUTH, timeout=5)),
    ("/webhook_subscriptions/{webhook_uuid}", "delete", 404, lambda s: requests.delete(f"{s.url}/webhook_subscriptions/nope", headers=AUTH, timeout=5)),
    ("/users/me", "get", 401, lambda s: requests.get(f"{s.url}/users/me", headers={"Authorization": "Bearer wrong"}, timeout=5)),
])
def test_errors_match_the_export(sandbox, spec, path, method, status, call):
    response = call(sandbox)
    assert response.status_code == status
    schema = spec["paths"][path][method]["responses"][str(status)]
    schema = _inline(schema, spec)["content"]["application/json"]["schema"] if "content" in _inline(schema, spec) else \
        _inline({"$ref": "#/components/schemas/ErrorResponse"}, spec)
    check(schema, response.json())


def test_requests_the_bridge_client_sends_match_the_export(sandbox, spec):
    client = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"))
    identity = client.me()
    client.create_webhook(url="https://flow.example/a", events=["invitee.created", "invitee.canceled"],
                          organization=identity["current_organization"], scope="organization", user=None, group=None,
                          signing_key="k")
    client.create_webhook(url="https://flow.example/b", events=["invitee.created"], organization=identity["current_organization"],
                          scope="user", user=identity["uri"], group=None, signing_key="k")
    client.close()
    schema = request_schema(spec, "/webhook_subscriptions", "post")
    bodies = [r["body"] for r in sandbox_requests(sandbox) if r["method"] == "POST"]
    assert len(bodies) == 2
    for body in bodies:
        check(schema, body)


# Behaviour ---------------------------------------------------------------------------------------
def test_wrong_token_is_401_and_rotation_takes_effect(sandbox):
    assert requests.get(f"{sandbox.url}/users/me", timeout=5).status_code == 401
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated"}, timeout=5)
    assert requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5).status_code == 401
    assert requests.get(f"{sandbox.url}/users/me", headers={"Authorization": "Bearer rotated"}, timeout=5).status_code == 200


def test_same_url_in_another_scope_is_not_a_conflict(sandbox):
    assert create(sandbox).status_code == 201
    assert create(sandbox, scope="user", user=me(sandbox)["uri"]).status_code == 201
    assert create(sandbox).status_code == 409


@pytest.mark.parametrize("body, status", [
    ({"events": ["routing_form_submission.created"], "scope": "user"}, 400),
    ({"events": ["meeting.booked"]}, 400),
    ({"events": ["invitee.created", "invitee.created"]}, 400),
    ({"scope": "group"}, 400),
    ({"organization": "https://api.calendly.com/organizations/SOMEONE-ELSE"}, 403),
])
def test_invalid_creates_are_refused_like_calendly(sandbox, body, status):
    data = {"url": "https://flow.example/x", "events": ["invitee.created"], "organization": me(sandbox)["current_organization"],
            "scope": "organization", **body}
    if data["scope"] == "user":
        data["user"] = me(sandbox)["uri"]
    response = requests.post(f"{sandbox.url}/webhook_subscriptions", json=data, headers=AUTH, timeout=5)
    assert response.status_code == status and response.json()["title"]


def test_faults_status_retry_after_rate_limit_and_drop(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"status": 503, "retry_after": 2, "count": 1}, timeout=5)
    first = requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5)
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"ratelimit_reset": 7}, timeout=5)
    limited = requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5)
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Remaining"] == "0" and limited.headers["X-RateLimit-Reset"] == "7"
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"close": True}, timeout=5)
    with pytest.raises(requests.RequestException):
        requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5)
    assert requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=5).status_code == 200


def test_hang_fault_delays_the_answer(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"hang_seconds": 2, "status": 500}, timeout=5)
    with pytest.raises(requests.Timeout):
        requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=0.5)


class Receiver:
    def __init__(self):
        self.bodies, self.headers = [], []

    def __call__(self, environ, start_response):
        self.bodies.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        self.headers.append(environ.get("HTTP_CALENDLY_WEBHOOK_SIGNATURE"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


@pytest.fixture
def receiver():
    from shared.wsgi_server import BackgroundServer

    app = Receiver()
    with BackgroundServer(app) as server:
        yield app, server.url


def test_simulated_events_are_signed_realistic_and_byte_exact(sandbox, receiver, spec):
    app, url = receiver
    create(sandbox, url=f"{url}/hook", events=EVENT_TYPES[:2])
    result = requests.post(f"{sandbox.url}/_sandbox/simulate", json={"event": "invitee.canceled"}, timeout=30).json()
    assert [d["status"] for d in result["deliveries"]] == [200]
    [body] = app.bodies
    assert body == json.dumps(result["envelope"], ensure_ascii=False).encode("utf-8")
    assert "Zoë".encode() in body
    signatures.verify(body, app.headers[0], "sandbox-test-key", 180)
    envelope = json.loads(body)
    assert envelope["payload"]["cancellation"]["canceler_type"] == "invitee"
    check(_inline({"$ref": "#/components/schemas/WebhookPayload"}, spec), envelope)


def test_repeat_sends_identical_bytes_and_disabled_hooks_get_nothing(sandbox, receiver):
    app, url = receiver
    hook = create(sandbox, url=f"{url}/hook").json()["resource"]
    requests.post(f"{sandbox.url}/_sandbox/simulate", json={"event": "invitee.created", "repeat": 2}, timeout=30)
    assert len(app.bodies) == 2 and app.bodies[0] == app.bodies[1]
    requests.patch(f"{sandbox.url}/_sandbox/hooks/{hook['uri'].rsplit('/', 1)[1]}", json={"state": "disabled"}, timeout=5)
    result = requests.post(f"{sandbox.url}/_sandbox/simulate", json={"event": "invitee.created"}, timeout=30).json()
    assert result["deliveries"] == [] and len(app.bodies) == 2


@pytest.mark.parametrize("event", EVENT_TYPES)
def test_sample_webhook_data_for_every_event(sandbox, event):
    org = me(sandbox)["current_organization"]
    response = requests.get(f"{sandbox.url}/sample_webhook_data", params={"event": event, "organization": org, "scope": "organization"},
                            headers=AUTH, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["event"] == event and body["payload"]["uri"].startswith(sandbox.app.base_url)


def test_simulate_command_reports_an_unreachable_sandbox_clearly():
    from tests.conftest import free_port

    done = subprocess.run([sys.executable, "-m", "shared", "simulate", "invitee.created", "--sandbox-url",
                           f"http://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not reachable" in done.stderr and "Traceback" not in done.stderr
