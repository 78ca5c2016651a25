"""Helpers shared by the test modules (one home: test modules import from here, never from each
other). End-to-end helpers talk to a running local host (tests/conftest.py ``LocalHost``) and the
Calendly sandbox; ``legacy_subscription`` works on an in-process bridge (tests/inprocess.py)."""
from __future__ import annotations

import json

import requests

from shared import signatures
from shared.models import HttpEndpoint, Subscription, SubscriptionState
from shared.subscriptions import subscription_id
from tests.inprocess import PUBLIC_URL, Caller

LOGIC_APP_URL_QS = "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=LOGICSECRET123"


def subscribe(bridge, target, events=("invitee.created",), path="/flow", field="url", **extra):
    body = {field: f"{target.url}{path}{LOGIC_APP_URL_QS}", "events": list(events), **extra}
    return bridge.api("POST", "/subscriptions", json=body)


def callback_url(bridge, sub: dict) -> str:
    """The URL Calendly calls for the subscription: its hook's, as the sandbox (Calendly) knows it."""
    hooks = requests.get(f"{bridge.env['CALENDLY_API_BASE']}/_sandbox/hooks", timeout=5).json()["hooks"]
    [url] = [h["callback_url"] for h in hooks if h["uri"] == sub["calendly_webhook"]]
    return url


def signing_key(bridge, sub: dict, sandbox) -> str:
    """The key Calendly holds for the subscription's hook: the test signs as Calendly would."""
    return sandbox.app.signing_key(callback_url(bridge, sub))


def post_event(bridge, sub: dict | str, body: bytes, key: str | None = None, header: str | None = None, **kwargs):
    """POST an event as Calendly would to the subscription's callback URL (or to the path segment ``sub``)."""
    url = callback_url(bridge, sub) if isinstance(sub, dict) else f"{bridge.url}/api/calendly/events/{sub}"
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[signatures.HEADER] = header
    elif key is not None:
        headers[signatures.HEADER] = signatures.sign(body, key)
    kwargs.setdefault("timeout", 30)
    return requests.post(url, data=body, headers=headers, **kwargs)


def envelope(event="invitee.created", uri="https://api.calendly.com/scheduled_events/E1/invitees/I1", **payload) -> bytes:
    data = {"event": event, "created_at": "2026-11-24T10:00:00.000000Z", "created_by": "https://api.calendly.com/users/U",
            "payload": {"uri": uri, "name": "Zoë Ångström", "email": "zoe@example.com", **payload}}
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def legacy_subscription(caller: Caller, target) -> tuple[Subscription, str]:
    """A record as an older bridge wrote it (no token), with its hook calling the id path."""
    bridge = caller.bridge
    endpoint = HttpEndpoint(f"{target.url}/legacy")
    identity = bridge.subscriptions.identity()
    record = bridge.store.create_subscription(Subscription(
        id=subscription_id(endpoint, ["invitee.created"], "organization", None, None), target=endpoint,
        events=["invitee.created"], scope="organization", organization=identity["organization"], user=None, group=None,
        signing_key="legacy-key", generation="g1"))
    old_url = f"{PUBLIC_URL}/api/calendly/events/{record.id}"
    assert bridge.subscriptions.callback_url(record) == old_url
    hook = bridge.calendly.create_webhook(url=old_url, events=record.events, organization=record.organization,
                                          scope="organization", user=None, group=None, signing_key=record.signing_key)
    record = bridge.store.update_subscription(record.replace(state=SubscriptionState.ACTIVE, calendly_webhook=hook["uri"]))
    return record, old_url


def a_record(n=0, url="https://flow.example/a", **kw) -> Subscription:
    """A stored subscription record with id ``f"{n:032x}"`` (for store-level tests)."""
    fields = dict(id=f"{n:032x}", target=HttpEndpoint(url), events=["invitee.created"], scope="organization",
                  organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="key", generation="g")
    fields.update(kw)
    return Subscription(**fields)
