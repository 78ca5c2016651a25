"""The project's Calendly contract (tests/contracts/calendly_v2.json) itself: a valid OpenAPI 3.1
document, accepting Calendly's published examples, documented in its README, and not vacuous: real
sandbox answers pass, and each of them broken in one way Calendly never would fails, for that reason."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from openapi_spec_validator import validate as validate_openapi

from shared import signatures
from shared.events import EVENT_TYPES
from devtools.sandbox import Sandbox
from tests.contracts import calendly as contract

PAT = "contract-pat"
AUTH = {"Authorization": f"Bearer {PAT}"}
TIMEOUT = 5
README = Path(contract.__file__).resolve().with_name("README.md")


def test_the_contract_is_a_valid_openapi_31_document():
    document = contract.contract()
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_the_contract_covers_what_the_bridge_and_the_sandbox_rely_on():
    operations = {(method.upper(), path) for path, item in contract.contract()["paths"].items()
                  for method in item if method in ("get", "post", "delete")}
    assert operations == {("GET", "/users/me"), ("POST", "/webhook_subscriptions"), ("GET", "/webhook_subscriptions"),
                          ("GET", "/webhook_subscriptions/{webhook_uuid}"),
                          ("DELETE", "/webhook_subscriptions/{webhook_uuid}"), ("GET", "/sample_webhook_data"),
                          ("GET", "/organization_memberships")}
    assert list(contract.contract()["webhooks"]) == list(EVENT_TYPES)
    for path, item in contract.contract()["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "delete"):
                assert {"401", "404", "429", "500"} <= set(op["responses"]), (method, path)


@pytest.mark.parametrize("where, schema, value", [pytest.param(w, s, v, id=w.split("/", 2)[-1])
                                                  for w, s, v in contract.examples()])
def test_calendly_published_examples_are_accepted(where, schema, value):
    assert contract.errors(schema, value) == [], where


def test_examples_cover_every_payload_family_calendly_publishes_one_for():
    wheres = [where for where, _, _ in contract.examples()]
    for event in ("invitee.created", "invitee.canceled", "invitee_no_show.created", "routing_form_submission.created",
                  "event_type.created", "meeting_recap.deleted", "contact.deleted"):
        assert any(where.startswith(contract.pointer("webhooks", event)) for where in wheres), event
    assert len(wheres) >= 20


def test_the_readme_names_every_operation_and_its_check_date():
    readme = README.read_text("utf-8")
    for path in contract.contract()["paths"]:
        assert path.split("?")[0] in readme, path
    for name in ("WebhookSubscription", "Pagination", "ErrorBody", "WebhookEnvelope", "InviteePayload",
                 "RoutingFormSubmissionPayload", "EventTypePayload", "Tombstone", "OrganizationMembership"):
        assert f"`{name}" in readme, name
    assert f"**{contract.contract()['info']['version']}**" in readme


# Not vacuous: real sandbox answers, each broken one way ------------------------------------------
@pytest.fixture(scope="module")
def samples():
    """Real answers of the sandbox, the body the bridge sends, and real header values."""
    with Sandbox(pat=PAT) as sandbox:
        base = sandbox.url
        org = sandbox.app.organization_uri

        def call(method, path, **kwargs):
            kwargs.setdefault("headers", AUTH)
            return requests.request(method, f"{base}{path}", timeout=TIMEOUT, **kwargs)

        body = {"url": "https://flow.example/hook", "events": ["invitee.created"], "organization": org,
                "scope": "organization", "signing_key": "k"}
        out = {"me": call("GET", "/users/me").json(), "body": body,
               "hook": call("POST", "/webhook_subscriptions", json=body).json(),
               "409": call("POST", "/webhook_subscriptions", json=body).json(),
               "400": call("POST", "/webhook_subscriptions", json={"url": "x"}).json(),
               "401": call("GET", "/users/me", headers={}).json(),
               "404": call("GET", "/webhook_subscriptions/nope").json()}
        for i in range(5):
            call("POST", "/webhook_subscriptions", json=body | {"url": f"https://flow.example/{i}"})
        first = call("GET", "/webhook_subscriptions", params={"organization": org, "scope": "organization", "count": 2})
        out["page"] = requests.get(first.json()["pagination"]["next_page"], headers=AUTH, timeout=TIMEOUT).json()
        out["query"] = urlencode({"organization": org, "scope": "organization", "count": 20,
                                  "page_token": first.json()["pagination"]["next_page_token"], "sort": "created_at:asc"})
        for event in EVENT_TYPES:
            out[event] = call("GET", "/sample_webhook_data",
                              params={"event": event, "organization": org, "scope": "organization"}).json()
        sandbox.app.add_fault(ratelimit_reset=30)
        limited = call("GET", "/users/me")
        out["429"], out["429-headers"] = limited.json(), dict(limited.headers)
    out["signature"] = signatures.sign(b'{"event": "invitee.created"}', "k")
    assert out["page"]["pagination"]["next_page"] and out["page"]["pagination"]["previous_page"]
    return out


def _set(path, value):
    """A mutation setting the (dotted) path to value; the value DELETE removes it."""
    def mutate(instance):
        *parents, last = path.split(".")
        node = instance
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return instance
    return mutate


DELETE = object()
CREATED = lambda: contract.response_schema("/webhook_subscriptions", "post", 201)  # noqa: E731
PAGE = lambda: contract.response_schema("/webhook_subscriptions", "get", 200)  # noqa: E731
BODY = lambda: contract.request_schema("/webhook_subscriptions", "post")  # noqa: E731
ME = lambda: contract.response_schema("/users/me", "get", 200)  # noqa: E731


def sample_envelope(event):
    return lambda: contract.webhook_schema(event)


def error(status, path="/webhook_subscriptions", method="post"):
    return lambda: contract.response_schema(path, method, status)


MUTATIONS = [
    # (id, sample, schema, mutation, expected error text)
    ("me-without-uri", "me", ME, _set("resource.uri", DELETE), "'uri' is a required property"),
    ("me-organization-not-a-uri", "me", ME, _set("resource.current_organization", "ORG-1"), "does not match"),
    ("me-created-at-not-a-time", "me", ME, _set("resource.created_at", "yesterday"), "is not a 'date-time'"),
    ("hook-without-uri", "hook", CREATED, _set("resource.uri", DELETE), "'uri' is a required property"),
    ("hook-uri-elsewhere", "hook", CREATED, _set("resource.uri", "https://api.calendly.com/hooks/1"), "does not match"),
    ("hook-state-paused", "hook", CREATED, _set("resource.state", "paused"), "'paused' is not one of"),
    ("hook-scope-team", "hook", CREATED, _set("resource.scope", "team"), "'team' is not one of"),
    ("hook-without-group", "hook", CREATED, _set("resource.group", DELETE), "'group' is a required property"),
    ("hook-user-scope-without-user", "hook", CREATED,
     lambda h: _set("resource.user", None)(_set("resource.scope", "user")(h)), "None is not of type 'string'"),
    ("hook-returns-signing-key", "hook", CREATED, _set("resource.signing_key", "k"), "should not be valid"),
    ("hook-unknown-event", "hook", CREATED, _set("resource.events", ["meeting.booked"]), "is not one of"),
    ("hook-repeated-event", "hook", CREATED, _set("resource.events", ["invitee.created"] * 2), "non-unique"),
    ("hook-retry-started-not-a-time", "hook", CREATED, _set("resource.retry_started_at", "soon"), "is not valid under any"),
    ("page-next-page-not-a-url", "page", PAGE, _set("pagination.next_page", "page=2"), "is not valid under any"),
    ("page-count-as-text", "page", PAGE, _set("pagination.count", "2"), "is not of type 'integer'"),
    ("page-count-over-100", "page", PAGE, _set("pagination.count", 101), "greater than the maximum"),
    ("page-next-page-without-token", "page", PAGE, _set("pagination.next_page_token", None), "None is not of type 'string'"),
    ("page-token-without-next-page", "page", PAGE, _set("pagination.next_page", None), "is not of type 'null'"),
    ("page-without-previous-token", "page", PAGE, _set("pagination.previous_page_token", DELETE), "required property"),
    ("page-collection-not-a-list", "page", PAGE, _set("collection", {}), "is not of type 'array'"),
    ("page-hook-without-uri", "page", PAGE, _set("collection.0.uri", DELETE), "'uri' is a required property"),
    ("409-other-message", "409", error(409), _set("message", "Conflict"), "was expected"),
    ("401-without-title", "401", error(401, "/users/me", "get"), _set("title", DELETE), "'title' is a required property"),
    ("400-detail-without-message", "400", error(400), _set("details.0.message", DELETE), "'message' is a required"),
    ("404-other-title", "404", error(404), _set("title", "Not Found"), "was expected"),
    ("429-without-message", "429", error(429, "/users/me", "get"), _set("message", DELETE), "'message' is a required"),
    ("envelope-without-created-by", "invitee.created", sample_envelope("invitee.created"), _set("created_by", DELETE),
     "'created_by' is a required property"),
    ("envelope-unknown-event", "invitee.created", sample_envelope("invitee.created"), _set("event", "invitee.booked"),
     "is not one of"),
    ("invitee-without-scheduled-event", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.scheduled_event", DELETE), "'scheduled_event' is a required property"),
    ("invitee-meeting-without-start", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.scheduled_event.start_time", DELETE), "'start_time' is a required property"),
    ("invitee-tracking-without-utm-source", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.tracking.utm_source", DELETE), "'utm_source' is a required property"),
    ("invitee-answer-position-negative", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.questions_and_answers.0.position", -1), "less than the minimum"),
    ("invitee-payment-in-sek", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.payment", {"external_id": "ch_1", "provider": "stripe", "amount": 10.5, "currency": "SEK",
                              "terms": None, "successful": True}), "is not valid under any"),
    ("invitee-rescheduled-without-new-invitee", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.rescheduled", True), "None is not of type 'string'"),
    ("invitee-uri-not-an-invitee", "invitee.created", sample_envelope("invitee.created"),
     _set("payload.uri", "https://api.calendly.com/scheduled_events/AAA"), "does not match"),
    ("canceled-without-cancellation", "invitee.canceled", sample_envelope("invitee.canceled"),
     _set("payload.cancellation", DELETE), "'cancellation' is a required property"),
    ("canceled-but-active", "invitee.canceled", sample_envelope("invitee.canceled"), _set("payload.status", "active"),
     "'canceled' was expected"),
    ("canceled-by-a-bot", "invitee.canceled", sample_envelope("invitee.canceled"),
     _set("payload.cancellation.canceler_type", "bot"), "'bot' is not one of"),
    ("routing-question-uuid-not-a-uuid", "routing_form_submission.created", sample_envelope("routing_form_submission.created"),
     _set("payload.questions_and_answers.0.question_uuid", "q1"), "is not a 'uuid'"),
    ("routing-without-form", "routing_form_submission.created", sample_envelope("routing_form_submission.created"),
     _set("payload.routing_form", DELETE), "'routing_form' is a required property"),
    ("event-type-colour-by-name", "event_type.updated", sample_envelope("event_type.updated"), _set("payload.color", "red"),
     "does not match"),
    ("event-type-kind-pair", "event_type.created", sample_envelope("event_type.created"), _set("payload.kind", "pair"),
     "'pair' is not one of"),
    ("event-type-deleted-without-time", "event_type.deleted", sample_envelope("event_type.deleted"),
     _set("payload.deleted_at", None), "None is not of type 'string'"),
    ("recap-tombstone-without-time", "meeting_recap.deleted", sample_envelope("meeting_recap.deleted"),
     _set("payload.deleted_at", DELETE), "'deleted_at' is a required property"),
    ("contact-tombstone-with-more", "contact.deleted", sample_envelope("contact.deleted"), _set("payload.email", "a@b.example"),
     "Additional properties are not allowed"),
    ("contact-uri-elsewhere", "contact.created", sample_envelope("contact.created"),
     _set("payload.uri", "https://api.calendly.com/users/AAA"), "does not match"),
    ("body-without-scope", "body", BODY, _set("scope", DELETE), "'scope' is a required property"),
    ("body-user-scope-without-user", "body", BODY, _set("scope", "user"), "'user' is a required property"),
    ("body-group-scope-without-group", "body", BODY, _set("scope", "group"), "'group' is a required property"),
    ("body-scope-everyone", "body", BODY, _set("scope", "everyone"), "'everyone' is not one of"),
    ("body-no-events", "body", BODY, _set("events", []), "should be non-empty"),
    ("body-repeated-event", "body", BODY, _set("events", ["invitee.created"] * 2), "non-unique"),
    ("body-empty-signing-key", "body", BODY, _set("signing_key", ""), "should be non-empty"),
    ("body-url-without-scheme", "body", BODY, _set("url", "flow.example/hook"), "does not match"),
    ("body-undocumented-field", "body", BODY, _set("name", "my hook"), "Additional properties are not allowed"),
]


@pytest.mark.parametrize("sample, schema, mutate, expected", [pytest.param(*case[1:], id=case[0]) for case in MUTATIONS])
def test_a_broken_sandbox_answer_fails_validation(samples, sample, schema, mutate, expected):
    original = samples[sample]
    assert contract.errors(schema(), original) == []
    problems = contract.errors(schema(), mutate(copy.deepcopy(original)))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("header, expected", [
    (None, []),
    ("v1={digest},t={t}", ["does not match"]),
    ("t={t},v1={upper}", ["does not match"]),
    ("t={t}", ["does not match"]),
    ("t=soon,v1={digest}", ["does not match"]),
])
def test_the_signature_header_format_is_pinned(samples, header, expected):
    t, digest = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", samples["signature"]).groups()
    value = samples["signature"] if header is None else header.format(t=t, digest=digest, upper=digest.upper())
    problems = contract.errors(contract.signature_header_schema(), value)
    assert all(any(e in p for p in problems) for e in expected) and bool(problems) == bool(expected), problems


@pytest.mark.parametrize("change, expected", [
    ({}, []),
    ({"X-RateLimit-Remaining": "3"}, ["X-RateLimit-Remaining: <root>: 0 was expected"]),
    ({"X-RateLimit-Reset": "soon"}, ["X-RateLimit-Reset: <root>: 'soon' is not of type 'integer'"]),
    ({"X-RateLimit-Limit": None}, ["X-RateLimit-Limit: missing"]),
])
def test_the_rate_limit_headers_are_pinned(samples, change, expected):
    headers = {k.lower(): v for k, v in samples["429-headers"].items()} | {k.lower(): v for k, v in change.items()}
    headers = {k: v for k, v in headers.items() if v is not None}
    assert contract.response_header_errors("/users/me", "get", 429, headers) == expected


@pytest.mark.parametrize("change, expected", [
    ({}, []),
    ({"scope": None}, ["scope: required"]),
    ({"count": "0"}, ["count='0': <root>: 0 is less than the minimum of 1"]),
    ({"count": "many"}, ["count='many': <root>: 'many' is not of type 'integer'"]),
    ({"sort": "name:asc"}, ["sort='name:asc': <root>: 'name:asc' does not match '^created_at:(asc|desc)$'"]),
    ({"limit": "5"}, ["limit: not a parameter of GET /webhook_subscriptions"]),
    ({"organization": "ORG-1"}, ["organization='ORG-1': <root>: 'ORG-1' does not match '^https?://[^\\\\s/?#]+[^\\\\s]*$'"]),
])
def test_list_queries_are_checked(samples, change, expected):
    from urllib.parse import parse_qsl

    query = {k: v for k, v in (dict(parse_qsl(samples["query"])) | change).items() if v is not None}
    assert contract.query_errors("/webhook_subscriptions", "get", urlencode(query)) == expected
