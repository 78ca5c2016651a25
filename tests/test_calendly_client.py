"""The Calendly client against a real HTTP peer on 127.0.0.1: retries through urllib3,
rate limits, pagination and Calendly's errors turned into clear bridge errors."""
from __future__ import annotations

import json

import pytest

from shared.calendly import CalendlyClient, CalendlyError
from shared.secrets import EnvironmentPat


def error_body(title, message, details=()):
    return json.dumps({"title": title, "message": message, "details": list(details)}).encode()


@pytest.fixture
def client(target):
    c = CalendlyClient(target.url, EnvironmentPat("client-pat"), timeout=(1, 2), backoff_factor=0.01)
    yield c
    c.close()


ME = json.dumps({"resource": {"uri": "https://api.calendly.com/users/U", "current_organization": "https://api.calendly.com/organizations/O"}}).encode()


def test_pat_is_sent_as_bearer_token(client, target):
    target.respond((200, {}, ME))
    assert client.me()["uri"].endswith("/users/U")
    assert target.received[0]["headers"]["authorization"] == "Bearer client-pat"


def test_5xx_is_retried_then_succeeds(client, target):
    target.respond(503, 502, (200, {}, ME))
    assert client.me()["current_organization"].endswith("/O")
    assert len(target.received) == 3


def test_429_waits_for_x_ratelimit_reset(client, target):
    target.respond((429, {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"},
                    error_body("Too Many Requests", "slow down")), (200, {}, ME))
    client.me()
    assert len(target.received) == 2


def test_429_with_a_long_reset_is_handed_back_as_503_with_retry_after(client, target):
    target.respond((429, {"X-RateLimit-Reset": "45"}, error_body("Too Many Requests", "slow down")), (200, {}, ME))
    with pytest.raises(CalendlyError) as info:
        client.me()
    assert info.value.status == 503 and info.value.code == "calendly_rate_limited"
    assert info.value.headers["Retry-After"] == "45" and len(target.received) == 1


def test_retry_after_header_is_honoured(client, target):
    target.respond((503, {"Retry-After": "1"}), (200, {}, ME))
    client.me()
    assert len(target.received) == 2


def test_persistent_5xx_becomes_503_after_bounded_retries(client, target):
    target.respond(default=500)
    with pytest.raises(CalendlyError) as info:
        client.me()
    assert info.value.status == 503 and len(target.received) == 4


@pytest.mark.parametrize("status, title, code, bridge_status, hint", [
    (401, "Unauthenticated", "calendly_unauthorized", 502, "personal access token"),
    (403, "Permission Denied", "calendly_forbidden", 502, "admin"),
    (400, "Invalid Argument", "calendly_rejected", 502, "url: is invalid"),
    (404, "Resource Not Found", "calendly_not_found", 502, "Resource Not Found"),
])
def test_calendly_errors_are_mapped_to_clear_bridge_errors(client, target, status, title, code, bridge_status, hint):
    target.respond((status, {}, error_body(title, "nope", [{"parameter": "url", "message": "is invalid"}])))
    with pytest.raises(CalendlyError) as info:
        client.me()
    assert (info.value.status, info.value.code) == (bridge_status, code)
    assert hint in info.value.message and "client-pat" not in info.value.message


def test_unreachable_calendly_is_503(free_port_url):
    c = CalendlyClient(free_port_url, EnvironmentPat("x"), timeout=(0.5, 0.5), retries=1)
    with pytest.raises(CalendlyError) as info:
        c.me()
    assert info.value.status == 503 and info.value.code == "calendly_unavailable"


@pytest.fixture
def free_port_url():
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_list_follows_every_page(client, target):
    pages = [
        {"collection": [{"uri": "u1"}, {"uri": "u2"}], "pagination": {"next_page_token": "p2", "next_page": "x"}},
        {"collection": [{"uri": "u3"}], "pagination": {"next_page_token": "p3"}},
        {"collection": [{"uri": "u4"}], "pagination": {"next_page_token": None, "next_page": None}},
    ]
    target.respond(*[(200, {}, json.dumps(p).encode()) for p in pages])
    uris = [h["uri"] for h in client.list_webhooks(organization="https://api.calendly.com/organizations/O", scope="organization")]
    assert uris == ["u1", "u2", "u3", "u4"]
    assert "page_token=p3" in target.received[2]["query"] and "count=100" in target.received[0]["query"]


def test_hook_uris_are_called_on_the_configured_base_only(client, target):
    target.respond(204)
    assert client.delete_webhook("https://evil.example/webhook_subscriptions/abc") is True
    assert target.received[0]["path"] == "/webhook_subscriptions/abc"


def test_delete_of_a_missing_hook_counts_as_deleted(client, target):
    target.respond((404, {}, error_body("Resource Not Found", "gone")))
    assert client.delete_webhook("https://api.calendly.com/webhook_subscriptions/abc") is False


class RotatingPat:
    source = "test"

    def __init__(self):
        self.values = ["old", "new"]

    def get(self):
        return self.values[0]

    def invalidate(self):
        self.values.pop(0)
        return True


def test_401_rereads_a_rotated_pat_once(target):
    c = CalendlyClient(target.url, RotatingPat(), timeout=(1, 2), backoff_factor=0.01)
    target.respond((401, {}, error_body("Unauthenticated", "The access token is invalid")), (200, {}, ME))
    c.me()
    assert [r["headers"]["authorization"] for r in target.received] == ["Bearer old", "Bearer new"]


def test_list_follows_next_page_urls_when_no_token_is_given(client, target):
    pages = [
        {"collection": [{"uri": "u1"}], "pagination": {"next_page": "https://api.calendly.com/webhook_subscriptions?count=100&page_token=p2"}},
        {"collection": [{"uri": "u2"}], "pagination": {"next_page": None}},
    ]
    target.respond(*[(200, {}, json.dumps(p).encode()) for p in pages])
    uris = [h["uri"] for h in client.list_webhooks(organization="https://api.calendly.com/organizations/O", scope="organization")]
    assert uris == ["u1", "u2"]
    assert target.received[1]["path"] == "/webhook_subscriptions" and "page_token=p2" in target.received[1]["query"]
