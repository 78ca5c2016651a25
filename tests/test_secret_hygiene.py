"""A full run with DEBUG logging: no PAT, signing key, Service Bus key or secret of a target URL
(``sig``, other query values, path tokens) appears in any log line or any response."""
from __future__ import annotations

import json

import requests

from shared.composition import open_store
from shared.settings import Settings
from tests.conftest import free_port, simulate
from tests.helpers import LOGIC_APP_URL_QS, callback_url, subscribe

PAT = "test-pat"
# Secrets in the shapes real targets carry them: Slack-style path tokens, assorted query names.
SHAPED_PATH = ("/services/T0SLACKTEAM/B0SLACKBOT/SLACKTOKEN9"
               "?api_key=APIKEY9&client_secret=CLIENTSEC9&auth=AUTHSEC9&access-token=ACCESSTOK9&x-api-key=XAPIKEY9")
SHAPED_SECRETS = ["T0SLACKTEAM", "B0SLACKBOT", "SLACKTOKEN9", "APIKEY9", "CLIENTSEC9", "AUTHSEC9", "ACCESSTOK9", "XAPIKEY9"]
SB_KEY = "SBKEYSECRET9"


def test_no_secret_reaches_logs_or_responses(make_host, sandbox, target):
    bridge = make_host(BRIDGE_LOG_LEVEL="DEBUG", SERVICEBUS_CONNECTION=(
        f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=send;SharedAccessKey={SB_KEY};UseDevelopmentEmulator=true"))
    responses: list[str] = []

    def keep(response):
        responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    sub = keep(subscribe(bridge, target)).json()
    keep(subscribe(bridge, target))                       # idempotent repeat
    keep(subscribe(bridge, target, events=("invitee.canceled",), scope="user"))
    shaped = keep(bridge.api("POST", "/subscriptions", json={"url": f"{target.url}{SHAPED_PATH}", "events": ["invitee.created"]}))
    keep(bridge.api("POST", "/subscriptions", json={"target": {"type": "servicebus", "queue": "bookings"},
                                                    "events": ["invitee.created"]}))
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
    shaped_deliveries = keep(bridge.api("GET", f"/subscriptions/{shaped.json()['id']}/deliveries")).json()["value"]
    for item in shaped_deliveries:
        keep(bridge.api("POST", f"/deliveries/{item['id']}/replay"))
    keep(requests.post(callback_url(bridge, sub), data=b"{}", headers={"Calendly-Webhook-Signature": "t=1,v1=00"}, timeout=10))
    store = open_store(Settings.from_env({"BRIDGE_SQLITE_PATH": bridge.env["BRIDGE_SQLITE_PATH"]}))  # the store's API
    try:
        records, _ = store.list_subscriptions(100)
    finally:
        store.close()
    keys = [secret for record in records for secret in (record.signing_key, record.callback_token)]
    assert len(records) >= 4 and all(keys[::2])
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated"}, timeout=5)
    keep(subscribe(bridge, target, path="/other"))         # Calendly 401
    keep(bridge.api("DELETE", "/subscriptions", params={"callbackUrl": f"{target.url}/flow{LOGIC_APP_URL_QS}"}))

    bridge.stop()
    everything = "\n".join([bridge.logs(), redeliver.stdout, redeliver.stderr, reconcile.stdout, reconcile.stderr, *responses])
    assert "DEBUG" in bridge.logs(), "the run must have logged at DEBUG to prove anything"
    assert "calendly POST /webhook_subscriptions" in everything
    assert "/services/REDACTED/REDACTED/REDACTED?api_key=REDACTED" in everything  # shown, safely
    for secret in [PAT, "LOGICSECRET123", SB_KEY, *SHAPED_SECRETS, *[k for k in keys if k]]:
        assert secret not in everything, f"a secret leaked: {secret[:4]}…"


def test_logs_are_structured_with_ids_event_and_outcome(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    result = simulate(sandbox, "invitee.created", repeat=2)
    delivery_id = json.loads(result["deliveries"][0]["response"])["delivery_id"]
    logs = bridge.logs()
    assert f"delivery outcome=delivered subscription={sub['id']} delivery={delivery_id} event=invitee.created attempt=1" in logs
    assert f"callback outcome=duplicate subscription={sub['id']} delivery={delivery_id} event=invitee.created" in logs
