"""The Calendly sandbox over real sockets: Calendly's behaviour, with its responses, the request
bodies and queries it accepts and the events it sends checked against the project's own Calendly
contract (tests/contracts/calendly_v2.json, written from Calendly's published reference)."""
from __future__ import annotations

import io
import json
import time

import pytest
import requests

from devtools import sample_events
from devtools.console_target import ConsoleTarget
from devtools.sandbox import Sandbox, main_simulate
from shared import signatures
from shared.events import EVENT_TYPES, ORGANIZATION_ONLY, SCOPES
from tests.contracts import calendly as contract
from tests.peers import free_port, serve_wsgi

PAT = "test-pat"
AUTH = {"Authorization": f"Bearer {PAT}"}
TIMEOUT = 5
KEY = "sandbox-test-key"
# Differences between the sandbox and Calendly's published shapes, reported to the sandbox's owner;
# strict, so the mark must go when the sandbox is fixed.
NO_SHOW_PAYLOAD = pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="the sandbox sends the no-show resource {uri, invitee, created_at}; Calendly's webhook "
                        "reference sends the invitee payload with no_show set for invitee_no_show.* events")
KNOWN_DIFFERENCES = {"invitee_no_show.created": NO_SHOW_PAYLOAD, "invitee_no_show.deleted": NO_SHOW_PAYLOAD}


def check(schema, instance):
    contract.check(schema, instance)


def error_schema(name):
    """One of the contract's shared error responses (NotFound, Unknown, ...)."""
    return contract.at(contract.pointer("components", "responses", name, "content", "application/json", "schema"))


def test_the_contract_knows_every_event_and_scope_the_bridge_does():
    schemas = contract.contract()["components"]["schemas"]
    assert schemas["EventName"]["enum"] == list(EVENT_TYPES)
    assert schemas["Scope"]["enum"] == list(SCOPES)
    assert list(contract.contract()["webhooks"]) == list(EVENT_TYPES)
    organization_only = {event for event, item in contract.contract()["webhooks"].items()
                         if item["post"]["x-scopes"] == ["organization"]}
    assert organization_only == set(ORGANIZATION_ONLY)


# Servers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running():
    with Sandbox(pat=PAT) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running):
    running.app.reset()
    running.app.pat = PAT
    return running


class Receiver:
    """A webhook receiver: records raw bodies and headers, answers ``status``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status, self.headers = 200, []

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.requests.append({"path": environ["PATH_INFO"], "body": body, "content_type": environ.get("CONTENT_TYPE"),
                              "signature": environ.get("HTTP_CALENDLY_WEBHOOK_SIGNATURE")})
        start_response(f"{self.status} X", [("Content-Type", "application/json"), *self.headers])
        return [b'{"ok": true}']


@pytest.fixture
def receiver():
    app = Receiver()
    server, app.url = serve_wsgi(app)
    yield app
    server.close()


# Client helpers -----------------------------------------------------------------------------------
def api(sandbox, method, path, **kwargs):
    kwargs.setdefault("headers", AUTH)
    return requests.request(method, f"{sandbox.url}{path}", timeout=TIMEOUT, **kwargs)


def me(sandbox):
    return api(sandbox, "GET", "/users/me").json()["resource"]


def hook_body(sandbox, url="https://flow.example/hook", events=("invitee.created",), scope="organization", **extra):
    return {"url": url, "events": list(events), "organization": sandbox.app.organization_uri, "scope": scope,
            "signing_key": KEY, **extra}


def create(sandbox, validate=False, **kwargs):
    body = hook_body(sandbox, **kwargs)
    if validate:
        check(contract.request_schema("/webhook_subscriptions", "post"), body)
    return api(sandbox, "POST", "/webhook_subscriptions", json=body)


def uuid_of(uri):
    return uri.rsplit("/", 1)[1]


def control(sandbox, method, path, **kwargs):
    response = requests.request(method, f"{sandbox.url}/_sandbox/{path}", timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


# Shapes -------------------------------------------------------------------------------------------
def test_users_me_matches_the_contract(sandbox):
    response = api(sandbox, "GET", "/users/me")
    check(contract.response_schema("/users/me", "get", 200), response.json())
    resource = response.json()["resource"]
    assert resource["uri"].startswith(f"{sandbox.url}/users/")
    assert resource["current_organization"].startswith(f"{sandbox.url}/organizations/")
    assert not resource["name"].isascii() and me(sandbox) == resource


def test_created_hook_matches_the_contract_and_the_signing_key_is_never_returned(sandbox):
    created = create(sandbox, validate=True)
    assert created.status_code == 201
    check(contract.response_schema("/webhook_subscriptions", "post", 201), created.json())
    hook = created.json()["resource"]
    assert hook["uri"] == f"{sandbox.url}/webhook_subscriptions/{uuid_of(hook['uri'])}"
    assert (hook["state"], hook["retry_started_at"], hook["user"], hook["group"]) == ("active", None, None, None)
    got = api(sandbox, "GET", f"/webhook_subscriptions/{uuid_of(hook['uri'])}")
    check(contract.response_schema("/webhook_subscriptions/{webhook_uuid}", "get", 200), got.json())
    listed = api(sandbox, "GET", "/webhook_subscriptions",
                 params={"organization": hook["organization"], "scope": "organization"})
    check(contract.response_schema("/webhook_subscriptions", "get", 200), listed.json())
    hooks = requests.get(f"{sandbox.url}/_sandbox/hooks", timeout=TIMEOUT)
    log = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=TIMEOUT)
    for response in (created, got, listed, hooks, log):
        assert KEY not in response.text
    assert hooks.json()["hooks"][0]["has_signing_key"] is True
    assert [r["body"]["signing_key"] for r in log.json()["requests"] if r["method"] == "POST"] == ["***"]


def test_list_must_be_followed_through_next_page(sandbox):
    urls = [f"https://flow.example/{i:02d}" for i in range(25)]
    for url in urls:
        assert create(sandbox, url=url).status_code == 201
    page = api(sandbox, "GET", "/webhook_subscriptions",
               params={"organization": sandbox.app.organization_uri, "scope": "organization"}).json()
    assert len(page["collection"]) == page["pagination"]["count"] == 20  # Calendly's default count
    seen, pages = [], 0
    next_page = f"{sandbox.url}/webhook_subscriptions?organization={sandbox.app.organization_uri}&scope=organization&count=7"
    while next_page:
        response = requests.get(next_page, headers=AUTH, timeout=TIMEOUT)
        check(contract.response_schema("/webhook_subscriptions", "get", 200), response.json())
        page, pages = response.json(), pages + 1
        seen += [hook["callback_url"] for hook in page["collection"]]
        next_page = page["pagination"]["next_page"]
    assert seen == urls and pages == 4
    back = requests.get(page["pagination"]["previous_page"], headers=AUTH, timeout=TIMEOUT).json()
    assert [h["callback_url"] for h in back["collection"]] == urls[14:21]


def test_deleting_hooks_while_paging_skips_none(sandbox):
    uris = [create(sandbox, url=f"https://flow.example/{i}").json()["resource"]["uri"] for i in range(6)]
    query = {"organization": sandbox.app.organization_uri, "scope": "organization", "count": 2}
    first = api(sandbox, "GET", "/webhook_subscriptions", params=query).json()
    for hook in first["collection"]:
        api(sandbox, "DELETE", f"/webhook_subscriptions/{uuid_of(hook['uri'])}")
    second = requests.get(first["pagination"]["next_page"], headers=AUTH, timeout=TIMEOUT).json()
    assert [h["uri"] for h in second["collection"]] == uris[2:4]


@pytest.mark.parametrize("path, method, status, call", [
    ("/users/me", "get", 401, lambda s: api(s, "GET", "/users/me", headers={})),
    ("/users/me", "get", 401, lambda s: api(s, "GET", "/users/me", headers={"Authorization": "Bearer wrong"})),
    ("/webhook_subscriptions", "post", 401, lambda s: api(s, "POST", "/webhook_subscriptions", json={}, headers={})),
    ("/webhook_subscriptions", "post", 400, lambda s: api(s, "POST", "/webhook_subscriptions", json={"url": "x"})),
    ("/webhook_subscriptions", "post", 403, lambda s: create(s, organization="https://api.calendly.com/organizations/X")),
    ("/webhook_subscriptions", "post", 409, lambda s: (create(s), create(s))[1]),
    ("/webhook_subscriptions", "get", 400, lambda s: api(s, "GET", "/webhook_subscriptions")),
    ("/webhook_subscriptions/{webhook_uuid}", "get", 404, lambda s: api(s, "GET", "/webhook_subscriptions/nope")),
    ("/webhook_subscriptions/{webhook_uuid}", "delete", 404, lambda s: api(s, "DELETE", "/webhook_subscriptions/nope")),
])
def test_errors_match_the_contract(sandbox, path, method, status, call):
    response = call(sandbox)
    assert response.status_code == status
    check(contract.response_schema(path, method, status), response.json())


def test_unknown_routes_are_404_and_handler_bugs_500_without_a_traceback(sandbox, monkeypatch):
    for method, path in (("GET", "/nope"), ("PUT", "/users/me"), ("GET", "/webhook_subscriptions/a/b")):
        response = api(sandbox, method, path)
        assert response.status_code == 404
        check(error_schema("NotFound"), response.json())
    monkeypatch.setattr(sandbox.app, "_me", lambda: 1 / 0)
    response = api(sandbox, "GET", "/users/me")
    assert response.status_code == 500 and "Traceback" not in response.text
    check(error_schema("Unknown"), response.json())


def test_requests_the_bridge_client_sends_are_valid(sandbox):
    """Every call the bridge's Calendly client makes is an operation of the contract, with a valid
    query and (for the create) a valid body, in each of the three scopes."""
    from shared.calendly import CalendlyClient
    from shared.secrets import EnvironmentPat

    client = CalendlyClient(sandbox.url, EnvironmentPat(PAT))
    try:
        identity = client.me()
        organization = identity["current_organization"]
        hooks = []
        for url, scope, user, group in (("https://flow.example/a", "organization", None, None),
                                        ("https://flow.example/b", "user", identity["uri"], None),
                                        ("https://flow.example/c", "group", None, f"{sandbox.url}/groups/g1")):
            hooks.append(client.create_webhook(url=url, events=["invitee.created", "invitee.canceled"], scope=scope,
                                               user=user, group=group, organization=organization, signing_key="k"))
            assert [h["uri"] for h in client.list_webhooks(organization=organization, scope=scope, user=user,
                                                           group=group)] == [hooks[-1]["uri"]]
            client.sample_webhook_data(event="invitee.created", organization=organization, scope=scope, user=user,
                                       group=group)
        assert client.get_webhook(hooks[0]["uri"])["uri"] == hooks[0]["uri"]
        assert client.delete_webhook(hooks[0]["uri"]) is True
    finally:
        client.close()
    log = sandbox.app.requests_log()
    assert {r["method"] for r in log} == {"GET", "POST", "DELETE"} and len(log) == 12
    bodies = 0
    for request in log:
        template = contract.template_for(request["path"])
        assert template is not None, request["path"]
        contract.operation(template, request["method"])
        assert contract.query_errors(template, request["method"], request["query"]) == [], request
        if request["method"] == "POST":
            bodies += 1
            check(contract.request_schema(template, "post"), request["body"] | {"signing_key": "k"})  # the log masks it
    assert bodies == 3


@pytest.mark.parametrize("event", [pytest.param(e, marks=KNOWN_DIFFERENCES.get(e, ())) for e in EVENT_TYPES])
def test_sample_webhook_data_for_every_event_matches_the_contract(sandbox, event):
    response = api(sandbox, "GET", "/sample_webhook_data",
                   params={"event": event, "organization": sandbox.app.organization_uri, "scope": "organization"})
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["event"] == event and envelope["payload"]["uri"].startswith(sandbox.url)
    if event.startswith("invitee."):
        assert ("cancellation" in envelope["payload"]) == (event == "invitee.canceled")
    check(contract.response_schema("/sample_webhook_data", "get", 200), envelope)
    check(contract.webhook_schema(event), envelope)


# Behaviour ----------------------------------------------------------------------------------------
def test_a_rotated_token_takes_effect(sandbox):
    control(sandbox, "POST", "token", json={"pat": "rotated"})
    assert api(sandbox, "GET", "/users/me").status_code == 401
    assert api(sandbox, "GET", "/users/me", headers={"Authorization": "Bearer rotated"}).status_code == 200


def test_get_and_delete_a_hook(sandbox):
    path = f"/webhook_subscriptions/{uuid_of(create(sandbox).json()['resource']['uri'])}"
    assert api(sandbox, "GET", path).status_code == 200
    deleted = api(sandbox, "DELETE", path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api(sandbox, "GET", path).status_code == 404
    assert api(sandbox, "DELETE", path).status_code == 404


def test_same_callback_is_409_in_the_same_scope_only(sandbox):
    user, other_user = sandbox.app.user_uri, f"{sandbox.url}/users/someone-else"
    group = f"{sandbox.url}/groups/g1"
    for scoped in ({}, {"scope": "user", "user": user}, {"scope": "user", "user": other_user},
                   {"scope": "group", "group": group}):
        assert create(sandbox, **scoped).status_code == 201
        conflict = create(sandbox, **scoped)
        assert conflict.status_code == 409
        assert conflict.json() == {"title": "Already Exists", "message": "Hook with this url already exists"}
        check(contract.response_schema("/webhook_subscriptions", "post", 409), conflict.json())
    assert create(sandbox, url="https://flow.example/other").status_code == 201


@pytest.mark.parametrize("change, status, parameter", [
    ({"url": None}, 400, "url"),
    ({"events": None}, 400, "events"),
    ({"organization": None}, 400, "organization"),
    ({"scope": None}, 400, "scope"),
    ({"events": ["meeting.booked"]}, 400, "events"),
    ({"events": ["invitee.created", "invitee.created"]}, 400, "events"),
    ({"scope": "user"}, 400, "user"),
    ({"scope": "group"}, 400, "group"),
    ({"events": ["routing_form_submission.created"], "scope": "user", "user": "U"}, 400, "events"),
    ({"events": ["routing_form_submission.created"], "scope": "group", "group": "G"}, 400, "events"),
    ({"organization": "https://api.calendly.com/organizations/SOMEONE-ELSE"}, 403, None),
])
def test_invalid_creates_are_refused_like_calendly(sandbox, change, status, parameter):
    body = {k: v for k, v in (hook_body(sandbox) | change).items() if v is not None}
    response = api(sandbox, "POST", "/webhook_subscriptions", json=body)
    assert response.status_code == status
    assert [d["parameter"] for d in response.json().get("details", [])] == ([parameter] if parameter else [])
    check(contract.response_schema("/webhook_subscriptions", "post", status), response.json())
    assert sandbox.app.hooks() == []


def test_routing_form_submissions_are_accepted_in_organization_scope(sandbox):
    assert create(sandbox, events=["routing_form_submission.created"]).status_code == 201


def test_each_event_is_accepted_in_exactly_the_scopes_the_contract_documents(sandbox):
    scoped = {"organization": {}, "user": {"user": sandbox.app.user_uri}, "group": {"group": f"{sandbox.url}/groups/g1"}}
    checked = 0
    for event, item in contract.contract()["webhooks"].items():
        documented = item["post"]["x-scopes"]
        if not isinstance(documented, list):  # Calendly documents no scope rule for it
            continue
        for scope, extra in scoped.items():
            body = hook_body(sandbox, url=f"https://flow.example/{event}/{scope}", events=[event], scope=scope, **extra)
            check(contract.request_schema("/webhook_subscriptions", "post"), body)
            response = api(sandbox, "POST", "/webhook_subscriptions", json=body)
            assert (response.status_code == 201) == (scope in documented), (event, scope, response.text)
            checked += 1
    assert checked == 3 * 8  # invitee, invitee_no_show, routing_form_submission and event_type events


@pytest.mark.parametrize("query, parameter", [
    ({"scope": "organization"}, "organization"),
    ({"organization": "ORG"}, "scope"),
    ({"organization": "ORG", "scope": "user"}, "user"),
    ({"organization": "ORG", "scope": "organization", "count": "0"}, "count"),
    ({"organization": "ORG", "scope": "organization", "count": "101"}, "count"),
    ({"organization": "ORG", "scope": "organization", "count": "many"}, "count"),
    ({"organization": "ORG", "scope": "organization", "page_token": "not-a-token"}, "page_token"),
])
def test_invalid_list_queries_are_400(sandbox, query, parameter):
    params = {k: sandbox.app.organization_uri if v == "ORG" else v for k, v in query.items()}
    response = api(sandbox, "GET", "/webhook_subscriptions", params=params)
    assert response.status_code == 400
    assert [d["parameter"] for d in response.json()["details"]] == [parameter]
    check(contract.response_schema("/webhook_subscriptions", "get", 400), response.json())


# Faults -------------------------------------------------------------------------------------------
def test_status_fault_with_retry_after_hits_only_matching_requests_count_times(sandbox):
    control(sandbox, "POST", "faults", json={"method": "POST", "path_prefix": "/webhook_subscriptions", "status": 503,
                                             "retry_after": 2, "count": 2})
    assert api(sandbox, "GET", "/users/me").status_code == 200
    for _ in range(2):
        failed = create(sandbox)
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "2" and failed.json()["title"]
    assert create(sandbox).status_code == 201


def test_rate_limit_fault_is_429_with_calendly_headers(sandbox):
    control(sandbox, "POST", "faults", json={"ratelimit_reset": 7})
    limited = api(sandbox, "GET", "/users/me")
    assert limited.status_code == 429
    assert (limited.headers["X-RateLimit-Limit"], limited.headers["X-RateLimit-Remaining"],
            limited.headers["X-RateLimit-Reset"]) == ("500", "0", "7")
    assert contract.response_header_errors("/users/me", "get", 429, limited.headers) == []
    check(contract.response_schema("/users/me", "get", 429), limited.json())
    assert api(sandbox, "GET", "/users/me").status_code == 200


def test_hang_fault_delays_the_answer(sandbox):
    control(sandbox, "POST", "faults", json={"hang_seconds": 0.5, "count": 2})
    with pytest.raises(requests.Timeout):
        requests.get(f"{sandbox.url}/users/me", headers=AUTH, timeout=0.2)
    started = time.monotonic()
    assert api(sandbox, "GET", "/users/me").status_code == 200  # outlives the first: no request is left running
    assert time.monotonic() - started >= 0.5


def test_close_fault_drops_the_connection_without_an_answer(sandbox):
    control(sandbox, "POST", "faults", json={"close": True})
    with pytest.raises(requests.ConnectionError, match="without response"):
        api(sandbox, "GET", "/users/me")
    assert api(sandbox, "GET", "/users/me").status_code == 200


def test_reset_clears_hooks_log_and_faults(sandbox):
    create(sandbox)
    control(sandbox, "POST", "faults", json={"status": 500, "count": 5})
    control(sandbox, "POST", "reset")
    assert control(sandbox, "GET", "hooks") == {"hooks": []} and control(sandbox, "GET", "requests") == {"requests": []}
    assert api(sandbox, "GET", "/users/me").status_code == 200


# Simulated events ---------------------------------------------------------------------------------
def test_simulated_event_is_signed_and_byte_exact(sandbox, receiver):
    create(sandbox, url=f"{receiver.url}/hook", events=["invitee.created", "invitee.canceled"])
    result = control(sandbox, "POST", "simulate",
                     json={"event": "invitee.canceled", "payload": {"text_reminder_number": "+46 70"}})
    assert [(d["status"], d["error"], d["response"]) for d in result["deliveries"]] == [(200, None, '{"ok": true}')]
    [received] = receiver.requests
    body = received["body"]
    assert body == json.dumps(result["envelope"], ensure_ascii=False).encode("utf-8")
    assert "Zoë Ångström".encode() in body and "¿Dónde".encode() in body
    assert received["content_type"] == "application/json" and received["path"] == "/hook"
    signatures.verify(body, received["signature"], KEY, tolerance=180)
    check(contract.signature_header_schema(), received["signature"])
    envelope = json.loads(body)
    check(contract.webhook_schema("invitee.canceled"), envelope)
    assert envelope["payload"]["text_reminder_number"] == "+46 70"
    assert envelope["created_by"] == sandbox.app.user_uri and envelope["payload"]["cancellation"]


def test_repeat_sends_identical_bytes(sandbox, receiver):
    create(sandbox, url=receiver.url)
    control(sandbox, "POST", "simulate", json={"event": "invitee.created", "repeat": 2})
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert receiver.requests[0]["signature"] == receiver.requests[1]["signature"]


def test_only_active_subscribed_or_named_hooks_receive(sandbox, receiver):
    disabled = create(sandbox, url=f"{receiver.url}/disabled").json()["resource"]
    named = create(sandbox, url=f"{receiver.url}/named").json()["resource"]
    create(sandbox, url=f"{receiver.url}/other-event", events=["invitee.canceled"])
    control(sandbox, "PATCH", f"hooks/{uuid_of(disabled['uri'])}", json={"state": "disabled"})
    shown = api(sandbox, "GET", f"/webhook_subscriptions/{uuid_of(disabled['uri'])}").json()["resource"]
    assert (shown["state"], bool(shown["retry_started_at"])) == ("disabled", True)
    control(sandbox, "POST", "simulate", json={"event": "invitee.created"})
    control(sandbox, "POST", "simulate", json={"event": "invitee.created", "webhook": uuid_of(named["uri"])})
    assert [r["path"] for r in receiver.requests] == ["/named", "/named"]


def test_unsigned_hook_gets_an_unsigned_event_and_redirects_are_not_followed(sandbox, receiver):
    body = hook_body(sandbox, url=f"{receiver.url}/hook")
    del body["signing_key"]
    api(sandbox, "POST", "/webhook_subscriptions", json=body)
    receiver.status, receiver.headers = 302, [("Location", f"{receiver.url}/elsewhere")]
    result = control(sandbox, "POST", "simulate", json={"event": "invitee.created"})
    assert [d["status"] for d in result["deliveries"]] == [302]
    assert [(r["path"], r["signature"]) for r in receiver.requests] == [("/hook", None)]


def test_a_vanished_hook_is_gone_from_the_api_and_gets_nothing(sandbox, receiver):
    hook = create(sandbox, url=receiver.url).json()["resource"]
    control(sandbox, "DELETE", f"hooks/{uuid_of(hook['uri'])}")
    assert api(sandbox, "GET", f"/webhook_subscriptions/{uuid_of(hook['uri'])}").status_code == 404
    assert control(sandbox, "POST", "simulate", json={"event": "invitee.created"})["deliveries"] == []


def test_unreachable_callback_is_reported_not_raised(sandbox):
    create(sandbox, url=f"http://127.0.0.1:{free_port()}/gone")
    [delivery] = control(sandbox, "POST", "simulate", json={"event": "invitee.created"})["deliveries"]
    assert delivery["status"] is None and "ConnectionError" in delivery["error"]


def test_reschedule_links_old_and_new_invitee():
    canceled, created = sample_events.reschedule("https://api.calendly.com")
    check(contract.webhook_schema("invitee.canceled"), canceled)
    check(contract.webhook_schema("invitee.created"), created)
    assert canceled["payload"]["rescheduled"] is True
    assert canceled["payload"]["new_invitee"] == created["payload"]["uri"]
    assert created["payload"]["old_invitee"] == canceled["payload"]["uri"]


def test_sample_payloads_have_fresh_uris_unless_overridden():
    first, second = (sample_events.build("invitee.created", "https://x") for _ in range(2))
    assert first["uri"] != second["uri"] and first["event"] != second["event"]
    assert sample_events.build("invitee.created", "https://x", uri="https://x/fixed")["uri"] == "https://x/fixed"


# Commands and the console target ------------------------------------------------------------------
def test_simulate_command_prints_each_delivery(sandbox, receiver, capsys):
    create(sandbox, url=receiver.url)
    assert main_simulate(["invitee.created", "--sandbox-url", sandbox.url]) == 0
    assert f"invitee.created -> {receiver.url}: 200" in capsys.readouterr().out


def test_simulate_command_reports_an_unreachable_sandbox_clearly(capsys):
    assert main_simulate(["invitee.created", "--sandbox-url", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "not reachable" in capsys.readouterr().err


def test_console_target_prints_one_line_per_event():
    out = io.StringIO()
    envelope = sample_events.envelope("invitee.created", "https://api.calendly.com")
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    with ConsoleTarget(out=out) as target:
        response = requests.post(f"{target.url}/flow", data=body, timeout=TIMEOUT,
                                 headers={"X-Calendly-Event": "invitee.created", "X-Bridge-Delivery-Id": "sub-1-abc"})
        assert response.json() == {"ok": True}
        assert target.received[0]["body"] == body and target.received[0]["path"] == "/flow"
    start = envelope["payload"]["scheduled_event"]["start_time"]
    expected = f"[target] invitee.created delivery sub-1-abc: Zoë Ångström <zoe.angstrom@example.com> at {start}\n"
    assert out.getvalue() == expected
