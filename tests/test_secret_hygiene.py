"""A full run with DEBUG logging: no PAT, signing key or callback-URL ``sig`` value appears in
any log line or any response."""
from __future__ import annotations

import json
import sqlite3

import requests

from tests.conftest import simulate
from tests.test_bridge_e2e import LOGIC_APP_URL_QS, callback_url, subscribe

PAT = "test-pat"


def test_no_secret_reaches_logs_or_responses(make_host, sandbox, target):
    bridge = make_host(BRIDGE_LOG_LEVEL="DEBUG")
    responses: list[str] = []

    def keep(response):
        responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    sub = keep(subscribe(bridge, target)).json()
    keep(subscribe(bridge, target))                       # idempotent repeat
    keep(subscribe(bridge, target, events=("invitee.canceled",), scope="user"))
    keep(bridge.api("GET", "/subscriptions"))
    keep(bridge.api("GET", f"/subscriptions/{sub['id']}"))
    keep(bridge.api("GET", "/health"))
    result = simulate(sandbox, "invitee.created")          # delivered
    responses += [d["response"] or "" for d in result["deliveries"]]
    target.respond(default=503)
    result = simulate(sandbox, "invitee.created", repeat=2)  # pending, then duplicate
    responses += [d["response"] or "" for d in result["deliveries"]]
    target.respond(default=200)
    redeliver = bridge.run("redeliver")
    reconcile = bridge.run("reconcile")
    keep(bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries"))
    keep(requests.post(callback_url(bridge, sub), data=b"{}", headers={"Calendly-Webhook-Signature": "t=1,v1=00"}, timeout=10))
    with sqlite3.connect(bridge.env["BRIDGE_SQLITE_PATH"]) as db:
        records = [json.loads(row[0]) for row in db.execute("SELECT data FROM subscriptions")]
    keys = [secret for record in records for secret in (record["signing_key"], record.get("callback_token"))]
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated"}, timeout=5)
    keep(subscribe(bridge, target, path="/other"))         # Calendly 401
    keep(bridge.api("DELETE", "/subscriptions", params={"callbackUrl": f"{target.url}/flow{LOGIC_APP_URL_QS}"}))

    bridge.stop()
    everything = "\n".join([bridge.logs(), redeliver.stdout, redeliver.stderr, reconcile.stdout, reconcile.stderr, *responses])
    assert "DEBUG" in bridge.logs(), "the run must have logged at DEBUG to prove anything"
    assert "calendly POST /webhook_subscriptions" in everything
    for secret in [PAT, "LOGICSECRET123", *[k for k in keys if k]]:
        assert secret not in everything, f"a secret leaked: {secret[:4]}…"


def test_logs_are_structured_with_ids_event_and_outcome(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    result = simulate(sandbox, "invitee.created", repeat=2)
    delivery_id = json.loads(result["deliveries"][0]["response"])["delivery_id"]
    logs = bridge.logs()
    assert f"delivery outcome=delivered subscription={sub['id']} delivery={delivery_id} event=invitee.created attempt=1" in logs
    assert f"callback outcome=duplicate subscription={sub['id']} delivery={delivery_id} event=invitee.created" in logs
