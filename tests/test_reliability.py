"""Fault injection over real sockets: Calendly failing, targets failing, the store locked,
the bridge killed. Nothing accepted is lost; callers get clear 502/503s."""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest
import requests

from tests.conftest import sandbox_hooks, simulate
from tests.helpers import assert_error, callback_url, subscribe


def fault(sandbox, **spec):
    requests.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=5).raise_for_status()


# Calendly misbehaving --------------------------------------------------------------
@pytest.mark.parametrize("spec, status", [
    ({"status": 429, "retry_after": 1, "count": 1}, 201),          # waits and succeeds
    ({"status": 503, "count": 2}, 201),                            # retried with backoff
    ({"status": 500, "count": 20}, 503),                           # bounded, then 503
    ({"status": 429, "ratelimit_reset": 60, "count": 1}, 503),     # too long to wait inside a request
    ({"close": True, "count": 20}, 503),                           # connection dropped
])
def test_subscribe_when_calendly_misbehaves(bridge, sandbox, target, spec, status):
    subscribe(bridge, target, events=("invitee.canceled",))  # /users/me cached: faults hit the create
    fault(sandbox, method="POST", path_prefix="/webhook_subscriptions", **spec)
    response = subscribe(bridge, target)
    assert response.status_code == status, response.text
    subs = bridge.api("GET", "/subscriptions").json()["value"]
    if status == 201:
        assert len(subs) == 2
    else:
        assert_error(response, 503)
        assert len(subs) == 1, "no half-made subscription may remain"
        if spec.get("ratelimit_reset"):
            assert response.headers["Retry-After"] == "60"


def test_subscribe_when_calendly_hangs_past_the_timeout(bridge, sandbox, target):
    subscribe(bridge, target, events=("invitee.canceled",))
    fault(sandbox, method="POST", path_prefix="/webhook_subscriptions", hang_seconds=12, count=2)
    assert_error(subscribe(bridge, target), 503, "calendly_unavailable")


def test_unsubscribe_when_calendly_is_down_then_reconcile_finishes_it(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    fault(sandbox, method="DELETE", status=503, count=20)
    assert_error(bridge.api("DELETE", f"/subscriptions/{sub['id']}"), 503)
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"clear": True}, timeout=5)
    done = bridge.run("reconcile")
    assert json.loads(done.stdout)["deleted"] == 1, done.stdout + done.stderr
    assert sandbox_hooks(sandbox) == []
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").status_code == 404


# Targets misbehaving ---------------------------------------------------------------
def test_flapping_target_gets_every_event_exactly_once(bridge, sandbox, target):
    """A 503 with Retry-After is sent again within the attempt (the target asked); a bare 503 or
    502 ends the attempt (it may have reached the flow) and the retry path sends it later."""
    subscribe(bridge, target)
    target.respond((503, {"Retry-After": "0"}), 200, 503, 502, default=200)
    results = [simulate(sandbox, "invitee.created") for _ in range(3)]
    assert [d["status"] for r in results for d in r["deliveries"]] == [200, 202, 202]
    assert json.loads(bridge.run("redeliver").stdout)["delivered"] == 2
    ids = [r["headers"]["x-bridge-delivery-id"] for r in target.delivered()]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert len(target.received) == 6  # one POST per attempt, plus the one the target asked for


def test_target_down_past_the_last_attempt_is_dead_and_replayable(make_host, sandbox, target):
    bridge = make_host(DELIVERY_MAX_ATTEMPTS="2")
    sub = subscribe(bridge, target).json()
    target.respond(default=503)
    simulate(sandbox, "invitee.created")
    assert json.loads(bridge.run("redeliver").stdout)["dead"] == 1
    [delivery] = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"]
    assert delivery["status"] == "dead" and delivery["attempts"] == 2
    target.respond(default=200)
    replayed = bridge.api("POST", f"/deliveries/{delivery['id']}/replay")
    assert replayed.status_code == 200 and replayed.json()["status"] == "delivered"
    assert target.delivered()[-1]["headers"]["x-bridge-delivery-id"] == delivery["id"]


def test_replay_of_unknown_or_malformed_delivery_ids_is_404(bridge):
    assert_error(bridge.api("POST", f"/deliveries/{'a' * 32}-{'b' * 24}/replay"), 404)
    assert_error(bridge.api("POST", "/deliveries/..%2F..%2Fx/replay"), 404)


def test_delivery_log_has_no_payload_unless_asked(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    simulate(sandbox, "invitee.created")
    plain = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries").json()["value"][0]
    assert "payload" not in plain and plain["status"] == "delivered"
    full = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": "payload"}).json()["value"][0]
    assert json.loads(full["payload"])["event"] == "invitee.created"


# The store and the process -----------------------------------------------------------
def test_locked_store_answers_503_so_calendly_retries_and_the_retry_is_accepted(bridge, sandbox, target):
    subscribe(bridge, target)
    envelope = None
    with sqlite3.connect(bridge.env["BRIDGE_SQLITE_PATH"], isolation_level=None) as db:
        db.execute("BEGIN EXCLUSIVE")
        result = simulate(sandbox, "invitee.created")
        db.execute("ROLLBACK")
    envelope = result["envelope"]
    [delivery] = result["deliveries"]
    assert delivery["status"] == 503 and "store_unavailable" in delivery["response"]
    assert target.received == []
    retry = simulate(sandbox, "invitee.created", envelope=envelope)
    assert [d["status"] for d in retry["deliveries"]] == [200]
    assert len(target.delivered()) == 1


def test_killed_bridge_completes_every_pending_delivery_after_restart(make_host, sandbox, target, tmp_path):
    bridge = make_host()
    subscribe(bridge, target)
    target.respond(default=503)
    for _ in range(5):
        simulate(sandbox, "invitee.created")
    bridge.proc.send_signal(signal.SIGKILL)
    bridge.proc.wait(timeout=10)
    target.respond(default=200)
    restarted = make_host(port=bridge.port)
    done = restarted.run("redeliver")
    assert json.loads(done.stdout)["delivered"] == 5, done.stdout + done.stderr
    assert len({r["headers"]["x-bridge-delivery-id"] for r in target.delivered()}) == 5


# Reconciliation -------------------------------------------------------------------------
def test_reconcile_recreates_disabled_and_missing_hooks_and_deletes_orphans(bridge, sandbox, target):
    disabled = subscribe(bridge, target, path="/a").json()
    missing = subscribe(bridge, target, path="/b").json()
    healthy = subscribe(bridge, target, path="/c").json()
    requests.patch(f"{sandbox.url}/_sandbox/hooks/{disabled['calendly_webhook'].rsplit('/', 1)[1]}", json={"state": "disabled"}, timeout=5)
    requests.delete(f"{sandbox.url}/_sandbox/hooks/{missing['calendly_webhook'].rsplit('/', 1)[1]}", timeout=5)
    org = sandbox_hooks(sandbox)[0]["organization"]
    orphan = requests.post(f"{sandbox.url}/webhook_subscriptions", headers={"Authorization": "Bearer test-pat"}, timeout=5,
                           json={"url": f"{bridge.url}/api/calendly/events/{'e' * 32}", "events": ["invitee.created"],
                                 "organization": org, "scope": "organization"}).json()["resource"]
    foreign = requests.post(f"{sandbox.url}/webhook_subscriptions", headers={"Authorization": "Bearer test-pat"}, timeout=5,
                            json={"url": "https://someone-else.example/hook", "events": ["invitee.created"],
                                  "organization": org, "scope": "organization"}).json()["resource"]
    done = bridge.run("reconcile")
    summary = json.loads(done.stdout)
    assert (summary["recreated"], summary["healthy"], summary["orphans_deleted"]) == (2, 1, 1), summary
    hooks = {h["uri"]: h for h in sandbox_hooks(sandbox)}
    assert orphan["uri"] not in hooks and foreign["uri"] in hooks
    for sub in (disabled, missing, healthy):
        current = bridge.api("GET", f"/subscriptions/{sub['id']}").json()
        assert current["state"] == "active" and hooks[current["calendly_webhook"]]["state"] == "active"
    # The recreated hooks sign with the bridge's new keys: events flow again.
    result = simulate(sandbox, "invitee.created")
    assert sorted(d["status"] for d in result["deliveries"] if "/api/calendly/events/" in d["callback_url"]) == [200, 200, 200]


def test_reconcile_finishes_a_subscribe_interrupted_after_the_record_write(bridge, sandbox, target):
    from shared.models import SubscriptionState
    from shared.store.sqlite import SqliteStore

    sub = subscribe(bridge, target).json()
    url = callback_url(bridge, sub)
    # A crash right after the record write: the record says 'creating' (long ago) and knows no hook.
    store = SqliteStore(bridge.env["BRIDGE_SQLITE_PATH"])
    record = store.get_subscription(sub["id"])
    store.update_subscription(record.replace(state=SubscriptionState.CREATING, calendly_webhook=None,
                                             updated_at="2000-01-01T00:00:00.000000Z"))
    store.close()
    summary = json.loads(bridge.run("reconcile").stdout)
    assert summary["completed"] == 1, summary
    current = bridge.api("GET", f"/subscriptions/{sub['id']}").json()
    assert current["state"] == "active"
    [hook] = sandbox_hooks(sandbox)
    assert hook["uri"] == current["calendly_webhook"] and hook["callback_url"] == url


def test_reconcile_when_calendly_is_down_reports_errors_and_changes_nothing(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    fault(sandbox, status=500, count=100)
    done = bridge.run("reconcile")
    summary = json.loads(done.stdout)
    assert done.returncode == 1 and summary["errors"] and summary["recreated"] == 0
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"clear": True}, timeout=5)
    current = bridge.api("GET", f"/subscriptions/{sub['id']}").json()
    assert current["state"] == "active" and current["calendly_webhook"] == sub["calendly_webhook"]
    assert [h["uri"] for h in sandbox_hooks(sandbox)] == [sub["calendly_webhook"]]


def test_store_failing_after_the_record_still_answers_202_and_keeps_the_delivery(tmp_path, target):
    """Once recorded, a failed bookkeeping write must not make Calendly resend (nor be a 5xx)."""
    from shared import signatures as sig
    from shared.composition import compose
    from shared.errors import StoreUnavailable
    from shared.models import HttpEndpoint, Subscription, SubscriptionState
    from shared.settings import Settings

    bridge = compose(Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "s.sqlite3"), "CALENDLY_PAT": "x",
                                       "BRIDGE_PUBLIC_URL": "http://127.0.0.1:1", "ALLOW_INSECURE_TARGETS": "true"}))
    sub = bridge.store.create_subscription(Subscription(
        id="c" * 32, target=HttpEndpoint(f"{target.url}/flow"), events=["invitee.created"], scope="organization",
        organization="o", user=None, group=None, signing_key="k", generation="g", state=SubscriptionState.ACTIVE))

    def broken_update(delivery):
        raise StoreUnavailable()

    bridge.store.update_delivery = broken_update
    body = b'{"event": "invitee.created", "payload": {"uri": "https://api.calendly.com/x/invitees/1"}}'
    response = bridge.callbacks.receive(sub.id, {sig.HEADER: sig.sign(body, "k")}, body)
    assert response.status == 202 and json.loads(response.body)["status"] == "pending"
    [pending] = bridge.store.due_deliveries("9999-12-31T23:59:59.999999Z", 10)
    assert pending.body == body
    bridge.close()


def test_target_host_is_rechecked_at_delivery_time(tmp_path, monkeypatch):
    """A name that resolved to a public address at subscribe time but points inside later
    (DNS rebinding) is refused at delivery: no connection is attempted, the delivery stays pending."""
    import socket as socket_module

    from shared import signatures as sig
    from shared.composition import compose
    from shared.models import HttpEndpoint, Subscription, SubscriptionState
    from shared.settings import Settings
    from shared.targets.policy import check_target_url

    answers = {"flow.example": "8.8.8.8"}

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket_module, "getaddrinfo", fake_getaddrinfo)
    settings = Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "r.sqlite3"), "CALENDLY_PAT": "x",
                                  "BRIDGE_PUBLIC_URL": "https://bridge.example"})
    assert check_target_url("https://flow.example/hook", settings)  # subscribe time: public
    bridge = compose(settings)
    sub = bridge.store.create_subscription(Subscription(
        id="d" * 32, target=HttpEndpoint("https://flow.example/hook"), events=["invitee.created"], scope="organization",
        organization="o", user=None, group=None, signing_key="k", generation="g", state=SubscriptionState.ACTIVE))
    answers["flow.example"] = "169.254.169.254"  # rebinds to the metadata endpoint
    connects = []
    import urllib3.util.connection

    def no_connect(address, *args, **kwargs):
        connects.append(address)
        raise OSError("blocked in test")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", no_connect)
    body = b'{"event": "invitee.created", "payload": {"uri": "https://api.calendly.com/x/invitees/2"}}'
    response = bridge.callbacks.receive(sub.id, {sig.HEADER: sig.sign(body, "k")}, body)
    assert response.status == 202 and connects == []
    [pending] = bridge.store.due_deliveries("9999-12-31T23:59:59.999999Z", 10)
    assert "metadata endpoint" in pending.last_error
    bridge.close()
