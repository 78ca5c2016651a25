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


# Calendly's published webhook payload examples (tests/test_connector_definition.py, tests/test_enrichment.py)
def _invitee(status: str) -> dict:
    # Calendly's example invitee payload (API reference, webhook payload examples), plus the fields
    # the live service adds and non-ASCII text as real invitees write it.
    base = "https://api.calendly.com"
    return {
        "cancel_url": "https://calendly.com/cancellations/AAAAAAAAAAAAAAAA", "created_at": "2020-11-23T17:51:18.327602Z",
        "email": "zoe@example.com", "event": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA", "name": "Zoë Ångström",
        "first_name": None, "last_name": None, "new_invitee": None, "old_invitee": None,
        "questions_and_answers": [{"question": "¿Dónde?", "answer": "東京", "position": 0}],
        "reschedule_url": "https://calendly.com/reschedulings/AAAAAAAAAAAAAAAA", "rescheduled": False, "status": status,
        "text_reminder_number": None, "timezone": "America/New_York",
        "tracking": {"utm_campaign": None, "utm_source": None, "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "updated_at": "2020-11-23T17:51:18.341657Z", "uri": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA",
        "routing_form_submission": None, "payment": None, "no_show": None, "reconfirmation": None,
        "scheduled_event": {
            "uri": f"{base}/scheduled_events/AAAAAAAAAAAAAAAA", "name": "15 Minute Meeting", "status": "active",
            "start_time": "2019-08-24T14:15:22.123456Z", "end_time": "2019-08-24T14:30:22.123456Z",
            "event_type": f"{base}/event_types/GBGBDCAADAEDCRZ2",
            "location": {"type": "physical", "location": "Calendly Office"},
            "invitees_counter": {"total": 1, "active": 1, "limit": 1},
            "created_at": "2019-01-02T03:04:05.678123Z", "updated_at": "2019-01-02T03:04:05.678123Z",
            "event_memberships": [{"user": f"{base}/users/GBGBDCAADAEDCRZ2"}], "event_guests": [],
        },
    }


EXAMPLES = {
    "invitee.created": _invitee("active"),
    "invitee.canceled": dict(_invitee("canceled"), cancellation={"canceled_by": "Zoë Ångström",
                                                                  "reason": "Meeting Conflict", "canceler_type": "invitee"}),
    # No-show events carry the invitee, with no_show set (Calendly's webhook payload reference).
    "invitee_no_show.created": dict(_invitee("active"), no_show={
        "uri": "https://api.calendly.com/invitee_no_shows/6ee96ed4-83a3-4966-a278-cd19b3c02e09",
        "created_at": "2020-11-23T17:51:18.341657Z"}),
    "invitee_no_show.deleted": _invitee("active"),
    "routing_form_submission.created": {
        "uri": "https://api.calendly.com/routing_form_submissions/AAAAAAAAAAAAAAAA",
        "routing_form": "https://api.calendly.com/routing_forms/AAAAAAAAAAAAAAAA",
        "questions_and_answers": [{"question_uuid": "123e4567-e89b-12d3-a456-426614174000",
                                   "question": "What is your industry?", "answer": "IT & Software"}],
        "tracking": {"utm_campaign": None, "utm_source": None, "utm_medium": None, "utm_content": None,
                     "utm_term": None, "salesforce_uuid": None},
        "result": {"type": "event_type", "value": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2"},
        "submitter": "https://calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA",
        "submitter_type": "Invitee", "created_at": "2022-05-15T03:04:05.678Z", "updated_at": "2022-05-15T06:05:04.321Z"},
}
