"""The enriched payload and the filter counts (issue 25, second part).

``payload: "enriched"`` forwards Calendly's bytes unchanged plus an ``enriched`` member (answers by
question text and position, the event's name and times, the hosts, the invitee) that a flow reads
without loops; what is stored stays Calendly's bytes. Filter counts say how many events a
subscription's filters let through and left out, batched in memory so the callback path spends no
storage request on them. In-process bridge on both stores; sandbox and target on 127.0.0.1.
"""
from __future__ import annotations

import json
import threading
import uuid

import pytest

from devtools import sample_events
from shared import enrichment
from shared.counters import FilterCounter
from shared.settings import Settings
from tests.inprocess import STORES, Caller, compose_on

DEMO = "https://api.calendly.com/event_types/DEMO"
OTHER = "https://api.calendly.com/event_types/OTHER"


def booking(sandbox, event_type: str = DEMO, questions=None) -> dict:
    envelope = sample_events.envelope("invitee.created", sandbox.url)
    envelope["payload"]["scheduled_event"]["event_type"] = event_type
    if questions is not None:
        envelope["payload"]["questions_and_answers"] = questions
    return envelope


# The enriched member --------------------------------------------------------------------------------
def test_calendlys_bytes_stay_a_prefix_and_the_answers_are_keyed_by_question(sandbox):
    envelope = booking(sandbox)
    body = json.dumps(envelope, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    enriched = enrichment.enrich(body)
    assert enriched.startswith(body.rstrip()[:-1].rstrip())  # everything Calendly sent, byte for byte
    parsed = json.loads(enriched)
    assert {k: v for k, v in parsed.items() if k != "enriched"} == envelope
    extra = parsed["enriched"]
    assert extra["answers"] == {"¿Dónde nos conocimos?": "En Málaga — luego en 東京",
                                "Anything we should know?": "Ich spreche nur ein bisschen Englisch. Grüße!"}
    assert extra["answers_by_position"] == {"0": "En Málaga — luego en 東京", "1": "Ich spreche nur ein bisschen Englisch. Grüße!"}
    scheduled = envelope["payload"]["scheduled_event"]
    assert (extra["event_name"], extra["start_time"], extra["end_time"]) == (scheduled["name"], scheduled["start_time"], scheduled["end_time"])
    assert extra["hosts"] == [{"name": sample_events.HOST_NAME, "email": sample_events.HOST_EMAIL,
                               "uri": scheduled["event_memberships"][0]["user"]}]
    assert (extra["invitee_name"], extra["invitee_email"], extra["invitee_timezone"]) == (
        "Zoë Ångström", "zoe.angstrom@example.com", "Europe/Stockholm")


@pytest.mark.parametrize("event", ["invitee.created", "invitee.canceled", "invitee_no_show.created", "routing_form_submission.created"])
def test_calendlys_published_examples_enrich_without_losing_a_byte(event):
    from tests.helpers import EXAMPLES

    body = json.dumps({"event": event, "created_at": "2020-11-23T17:51:19.000000Z", "payload": EXAMPLES[event]},
                      ensure_ascii=False).encode("utf-8")
    enriched = enrichment.enrich(body)
    assert enriched.startswith(body[:-1]) and json.loads(enriched)["payload"] == EXAMPLES[event]
    extra = json.loads(enriched)["enriched"]
    questions = EXAMPLES[event]["questions_and_answers"]
    assert extra["answers"] == {q["question"]: q["answer"] for q in questions}
    if event.startswith("invitee"):
        assert extra["event_name"] == "15 Minute Meeting" and extra["invitee_name"] == "Zoë Ångström"
        assert extra["hosts"] == [{"name": None, "email": None, "uri": "https://api.calendly.com/users/GBGBDCAADAEDCRZ2"}]
    else:  # a routing form has no scheduled event: those parts are null
        assert extra["event_name"] is None and extra["hosts"] == [] and extra["answers_by_position"] == {"0": "IT & Software"}


@pytest.mark.parametrize("questions, answers", [
    ([], {}),
    ([{"question": "Size", "answer": "1", "position": 0}, {"question": "Size", "answer": "2", "position": 3}],
     {"Size": "1", "Size (3)": "2"}),
    ([{"question": "Long", "answer": "x" * 10_000, "position": 0}], {"Long": "x" * 10_000}),
    ([{"question": "<script>alert(1)</script>\u202e", "answer": None}], {"<script>alert(1)</script>\u202e": None}),
    ([{"answer": "no question text"}, "not an object", {"question": "Q" * 500, "answer": ["a list"], "position": True}],
     {"question 0": "no question text", "Q" * 200: None}),
    ("not a list", {}),
])
def test_odd_questions_never_break_the_forward(sandbox, questions, answers):
    body = json.dumps(booking(sandbox, questions=questions), ensure_ascii=False).encode("utf-8")
    assert json.loads(enrichment.enrich(body))["enriched"]["answers"] == answers


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"event": "x", "enriched": 1}', b"{\"a\": 1", b"{}", b'{"payload": "x"}'])
def test_a_body_it_cannot_enrich_is_forwarded_as_it_came(body):
    out = enrichment.enrich(body)
    if body in (b"{}", b'{"payload": "x"}'):  # objects without the parts: an enriched member of nulls
        assert json.loads(out)["enriched"]["answers"] == {} and out.startswith(body[:-1])
    else:
        assert out == body


# Subscriptions and forwarding -------------------------------------------------------------------------
@pytest.fixture(params=STORES)
def caller(request, tmp_path, sandbox):
    bridge = compose_on(request.param, request, tmp_path, sandbox)
    yield Caller(bridge, sandbox)
    bridge.close()


def subscribe_to(caller: Caller, target, path: str, **extra) -> tuple[dict, str]:
    from shared import api

    response = caller.call(api.subscribe, "POST", "/subscriptions", {"url": f"{target.url}{path}", "events": ["invitee.created"], **extra})
    assert response.status in (200, 201), response.body
    sub = json.loads(response.body)
    return sub, caller.hook(sub)["callback_url"]


def send(caller: Caller, url: str, envelope: dict) -> dict:
    response = caller.post_event(url, json.dumps(envelope, ensure_ascii=False).encode("utf-8"))
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_an_enriched_subscription_forwards_the_member_and_stores_calendlys_bytes(caller, target, sandbox):
    plain, plain_url = subscribe_to(caller, target, "/plain")
    rich, rich_url = subscribe_to(caller, target, "/rich", payload="enriched")
    assert rich["payload"] == "enriched" and plain["payload"] == "calendly" and rich["id"] != plain["id"]
    assert subscribe_to(caller, target, "/rich", payload="enriched")[0]["id"] == rich["id"]  # idempotent
    envelope = booking(sandbox)
    raw = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    for url in (plain_url, rich_url):
        caller.post_event(url, raw)
    by_path = {r["path"]: r["body"] for r in target.delivered()}
    assert by_path["/plain"] == raw
    assert by_path["/rich"].startswith(raw[:-1]) and json.loads(by_path["/rich"])["enriched"]["answers"]["Anything we should know?"]
    [stored] = caller.deliveries(rich["id"])
    assert stored["payload"].encode("utf-8") == raw  # the log keeps what Calendly sent


def test_an_unknown_payload_format_is_a_400(caller, target):
    from shared import api

    response = caller.call(api.subscribe, "POST", "/subscriptions", {"url": f"{target.url}/x", "events": ["invitee.created"],
                                                                     "payload": "xml"})
    assert response.status == 400 and json.loads(response.body)["error"]["code"] == "invalid_subscription"
    assert "payload" in json.loads(response.body)["error"]["message"]


def test_filter_counts_show_what_the_filters_let_through_and_left_out(caller, target, sandbox):
    from shared import api

    sub, url = subscribe_to(caller, target, "/demo", event_types=[DEMO])
    plain, _ = subscribe_to(caller, target, "/all")
    statuses = [send(caller, url, booking(sandbox, t))["status"] for t in (DEMO, OTHER, OTHER, DEMO, OTHER)]
    assert statuses == ["delivered", "filtered", "filtered", "delivered", "filtered"]
    got = caller.call(api.get_subscription, "GET", f"/subscriptions/{sub['id']}", id=sub["id"])
    assert json.loads(got.body)["filter_counts"] == {"matched": 2, "filtered_out": 3}
    plain_view = json.loads(caller.call(api.get_subscription, "GET", f"/subscriptions/{plain['id']}", id=plain["id"]).body)
    assert "filter_counts" not in plain_view  # a subscription without filters has nothing to count


def test_counting_spends_no_storage_request_per_callback_and_flushes_in_batches(tmp_path):
    store = compose_on_sqlite_store(tmp_path)
    clock = [0.0]
    counter = FilterCounter(store, monotonic=lambda: clock[0], flush_seconds=60)
    writes = []
    real = store.add_filter_counts
    store.add_filter_counts = lambda *a: (writes.append(a), real(*a))[1]
    for n in range(100):
        counter.count("s1", matched=n % 4 == 0)
        clock[0] += 0.5  # 100 events over 50 s: no write yet
    assert writes == [] and store.filter_counts("s1") == (0, 0)
    clock[0] += 10
    counter.count("s1", matched=False)  # the first count is 60 s old now: one write of all 101
    assert writes == [("s1", 25, 76)] and store.filter_counts("s1") == (25, 76)
    counter.count("s1", matched=True)
    assert counter.counts("s1") == {"matched": 26, "filtered_out": 76}  # a read flushes this process's own first


def test_a_store_failure_keeps_the_counts_for_the_next_flush(tmp_path):
    from shared.errors import StoreUnavailable

    store = compose_on_sqlite_store(tmp_path)
    counter = FilterCounter(store, monotonic=lambda: 0.0)
    counter.count("s1", matched=True)
    real = store.add_filter_counts

    def down(*args):
        raise StoreUnavailable("down")

    store.add_filter_counts = down
    counter.flush()
    store.add_filter_counts = real
    counter.count("s1", matched=False)
    counter.flush()
    assert store.filter_counts("s1") == (1, 1)


@pytest.mark.parametrize("kind", STORES)
def test_instances_flushing_at_once_lose_no_count(kind, request, tmp_path):
    """Four instances (each its own store client and counter) flush one subscription's counts at the
    same moment: the store adds on a version read (Table Storage: a conditional write, retried on a
    conflict); a flush that still loses keeps its counts pending, and the next flush adds them."""
    from shared.composition import open_store
    from tests.inprocess import store_env

    env = store_env(kind, request, tmp_path)
    stores = [open_store(Settings.from_env(env)) for _ in range(4)]
    counters = [FilterCounter(store, monotonic=lambda: 0.0) for store in stores]
    for counter in counters:
        for n in range(30):
            counter.count("s1", matched=n < 10)
    barrier = threading.Barrier(4)

    def flush(counter):
        barrier.wait(timeout=30)
        counter.flush()

    threads = [threading.Thread(target=flush, args=(c,)) for c in counters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for _ in range(5):  # the next timer runs
        for counter in counters:
            counter.flush()
    assert stores[0].filter_counts("s1") == (40, 80)
    for store in stores:
        store.close()


def compose_on_sqlite_store(tmp_path):
    from shared.composition import open_store

    return open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / f"{uuid.uuid4().hex[:8]}.sqlite3")}))
