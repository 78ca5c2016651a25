"""Property-based tests (hypothesis): signatures and the handlers never crash on hostile input."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shared import signatures
from shared.events import TRIGGER_EVENTS
from shared.http import Request
from shared.redaction import render_url, scrub_text
from shared.signatures import SignatureError

KEY = "property-key"
NOW = 1_764_000_000


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_signature_error(header):
    try:
        signatures.parse(header)
    except SignatureError:
        pass


@given(st.binary(max_size=2000), st.text(min_size=1, max_size=64))
def test_any_signed_body_verifies_with_its_key(body, key):
    assert signatures.verify(body, signatures.sign(body, key, NOW), key, 180, now=NOW) == NOW


@given(st.binary(max_size=500), st.binary(min_size=1, max_size=500))
def test_any_change_to_the_body_is_rejected(body, suffix):
    header = signatures.sign(body, KEY, NOW)
    try:
        signatures.verify(body + suffix, header, KEY, 180, now=NOW)
        raise AssertionError("a changed body verified")
    except SignatureError:
        pass


@given(st.binary(max_size=300), st.integers(min_value=-10**6, max_value=10**6).filter(lambda d: d != 0))
def test_any_change_to_the_timestamp_is_rejected(body, delta):
    good = signatures.sign(body, KEY, NOW).split(",v1=")[1]
    try:
        signatures.verify(body, f"t={NOW + delta},v1={good}", KEY, 10**7, now=NOW)
        raise AssertionError("a changed timestamp verified")
    except SignatureError:
        pass


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=63), st.sampled_from("0123456789abcdef"))
def test_any_change_to_the_signature_is_rejected(body, position, char):
    header = signatures.sign(body, KEY, NOW)
    digest = header.split(",v1=")[1]
    if digest[position] == char:
        return
    changed = digest[:position] + char + digest[position + 1:]
    try:
        signatures.verify(body, f"t={NOW},v1={changed}", KEY, 180, now=NOW)
        raise AssertionError("a changed signature verified")
    except SignatureError:
        pass


@given(st.text(max_size=500))
def test_redaction_never_raises(url):
    assert isinstance(render_url(url), str) and isinstance(scrub_text(url), str)


@pytest.fixture(scope="module")
def in_process_bridge(tmp_path_factory):
    from shared.composition import compose
    from shared.settings import Settings
    from tests.conftest import free_port

    bridge = compose(Settings.from_env({
        "BRIDGE_SQLITE_PATH": str(tmp_path_factory.mktemp("props") / "b.sqlite3"),
        "CALENDLY_API_BASE": f"http://127.0.0.1:{free_port()}",  # nothing listens: no Calendly
        "CALENDLY_PAT": "property-pat", "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071"}))
    yield lambda: bridge
    bridge.close()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)


def nested(depth: int, kind: str) -> bytes:
    """``depth`` levels of arrays or objects, alone or inside a subscribe-shaped body."""
    inner = b"[" * depth + b"]" * depth if kind != "object" else b'{"a":' * depth + b"1" + b"}" * depth
    return inner if kind != "in-body" else b'{"url": "https://example.com/x", "events": ' + inner + b', "event": ' + inner + b"}"


deep_bodies = st.builds(nested, st.integers(min_value=1, max_value=200_000), st.sampled_from(["array", "object", "in-body"]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300), deep_bodies),
       st.dictionaries(st.sampled_from(["limit", "cursor", "callbackUrl", "url", "include"]), st.text(max_size=40)),
       st.text(max_size=40), st.sampled_from([*TRIGGER_EVENTS, "invitee-rescheduled", ""]))
def test_management_handlers_answer_json_4xx_or_success_never_5xx_for_bad_input(in_process_bridge, body, params, route_id,
                                                                                 trigger):
    """In-process, with the store but no Calendly (a bad body must be refused before any call)."""
    from shared import api

    for handler, method in ((api.subscribe, "POST"), (api.subscribe_trigger, "POST"), (api.list_subscriptions, "GET"),
                            (api.get_subscription, "GET"), (api.unsubscribe_by_callback, "DELETE"),
                            (api.list_deliveries, "GET"), (api.replay_delivery, "POST"), (api.calendly_event, "POST"),
                            (api.send_test_event, "POST")):
        request = Request(method, "http://127.0.0.1/api/x", {}, params,
                          {"id": route_id, "delivery_id": route_id, "trigger": trigger}, body)
        response = handler(in_process_bridge, request)
        assert response.status < 500 or json.loads(response.body)["error"]["code"] in {
            "calendly_unavailable", "calendly_unauthorized", "configuration_error"}, (handler.__name__, response.body)
        if response.body:
            json.loads(response.body)
