"""Pure pieces: redaction, event keys, settings, request validation, target policy."""
import pytest

from shared.errors import BridgeError
from shared.events import delivery_id, event_key, scope_conflicts
from shared.http import Request
from shared.redaction import fingerprint, render_url, scrub_text
from shared.schemas import parse_subscribe
from shared.settings import Settings, SettingsError
from shared.targets.policy import TargetRefused, check_target_url


# Redaction -----------------------------------------------------------------
LOGIC_APP = ("https://prod-01.westus.logic.azure.com:443/workflows/abc123/triggers/manual/paths/invoke"
             "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=TOPSECRET")


@pytest.mark.parametrize("url, shown", [
    (LOGIC_APP, "https://prod-01.westus.logic.azure.com:443/workflows/REDACTED/REDACTED/REDACTED/REDACTED/REDACTED"
                "?api-version=REDACTED&sp=REDACTED&sv=REDACTED&sig=REDACTED"),
    ("https://hooks.slack.com/services/T0SECRET/B0SECRET/XYZSECRET", "https://hooks.slack.com/services/REDACTED/REDACTED/REDACTED"),
    ("https://user:pw@example.com/api/x?code=KEY123&a=1", "https://example.com/api/REDACTED?code=REDACTED&a=REDACTED"),
    ("https://example.com/hook?api_key=K&client_secret=C&auth=A&access-token=T",
     "https://example.com/hook?api_key=REDACTED&client_secret=REDACTED&auth=REDACTED&access-token=REDACTED"),
    ("https://EXAMPLE.com/a#frag-secret", "https://example.com/a"),
    ("https://[2001:db8::1]:8443/x/y", "https://[2001:db8::1]:8443/x/REDACTED"),
    ("https://example.com", "https://example.com"),
    ("not a url", "REDACTED"),
    ("https://example.com:99999/x", "REDACTED"),
])
def test_a_target_is_shown_as_scheme_host_and_a_redacted_path(url, shown):
    assert render_url(url) == shown


def test_fingerprints_tell_targets_apart_and_stay_stable():
    other = LOGIC_APP.replace("TOPSECRET", "OTHERSECRET")
    assert render_url(LOGIC_APP) == render_url(other)  # rendering alone cannot tell them apart...
    assert fingerprint(LOGIC_APP) != fingerprint(other)  # ...the fingerprint does
    assert fingerprint(LOGIC_APP) == fingerprint(LOGIC_APP) and len(fingerprint(LOGIC_APP)) == 16


def test_text_from_libraries_is_scrubbed_of_urls_paths_and_key_values():
    text = ('POST /services/T1/B2/X3?sig=S HTTP/1.1 then https://a.example/p/q?x=1 failed: Max retries exceeded with '
            'url: /hook/TOKEN?auth=A; Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=n;SharedAccessKey=KEY=')
    scrubbed = scrub_text(text)
    for secret in ("T1", "B2", "X3", "sig=S ", "x=1", "TOKEN", "auth=A", "KEY="):
        assert secret not in scrubbed, secret
    assert "https://a.example/p/REDACTED?x=REDACTED" in scrubbed and "SharedAccessKey=REDACTED" in scrubbed


# Event keys ------------------------------------------------------------------
def _envelope(event, uri="https://api.calendly.com/scheduled_events/E/invitees/I", **payload):
    return {"event": event, "created_at": "2026-11-24T10:00:00.000000Z", "payload": {"uri": uri, **payload}}


def test_same_invitee_event_has_same_key_even_if_bytes_differ():
    assert event_key(_envelope("invitee.created"), b"a") == event_key(_envelope("invitee.created", status="active"), b"b")


def test_created_and_canceled_of_one_invitee_have_different_keys():
    assert event_key(_envelope("invitee.created"), b"") != event_key(_envelope("invitee.canceled"), b"")


def test_updated_events_key_on_updated_at():
    first = event_key(_envelope("event_type.updated", updated_at="2026-01-01T00:00:00Z"), b"")
    second = event_key(_envelope("event_type.updated", updated_at="2026-01-02T00:00:00Z"), b"")
    assert first != second


def test_event_without_uri_is_keyed_by_body():
    env = {"event": "contact.deleted", "payload": {}}
    assert event_key(env, b"one") != event_key(env, b"two")
    assert event_key(env, b"one") == event_key(env, b"one")


def test_delivery_id_is_stable_and_scoped_to_subscription_generation():
    key = "invitee.created|uri"
    assert delivery_id("a" * 32, "g1", key) == delivery_id("a" * 32, "g1", key)
    assert delivery_id("a" * 32, "g1", key) != delivery_id("a" * 32, "g2", key)
    assert delivery_id("a" * 32, "g1", key).startswith("a" * 32 + "-")


def test_routing_form_submission_is_organization_only():
    assert scope_conflicts(["routing_form_submission.created", "invitee.created"], "user") == ["routing_form_submission.created"]
    assert scope_conflicts(["routing_form_submission.created"], "organization") == []


# Settings ----------------------------------------------------------------------
def test_settings_defaults():
    s = Settings.from_env({})
    assert s.calendly_api_base == "https://api.calendly.com"
    assert s.signature_tolerance == 180 and s.allow_insecure_targets is False and s.public_url is None


@pytest.mark.parametrize("env, name", [
    ({"SIGNATURE_TOLERANCE_SECONDS": "soon"}, "SIGNATURE_TOLERANCE_SECONDS"),
    ({"SIGNATURE_TOLERANCE_SECONDS": "0"}, "SIGNATURE_TOLERANCE_SECONDS"),
    ({"ALLOW_INSECURE_TARGETS": "maybe"}, "ALLOW_INSECURE_TARGETS"),
    ({"BRIDGE_PUBLIC_URL": "bridge.example.com"}, "BRIDGE_PUBLIC_URL"),
    ({"CALENDLY_API_BASE": "ftp://x"}, "CALENDLY_API_BASE"),
])
def test_invalid_setting_error_names_the_setting(env, name):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert info.value.setting == name and name in str(info.value)


def test_missing_public_url_error_names_the_setting():
    with pytest.raises(SettingsError, match="BRIDGE_PUBLIC_URL"):
        Settings.from_env({}).require_public_url()


def test_public_url_falls_back_to_azure_hostname():
    assert Settings.from_env({"WEBSITE_HOSTNAME": "app.azurewebsites.net"}).public_url == "https://app.azurewebsites.net"


# Subscribe body validation ------------------------------------------------------
@pytest.mark.parametrize("body, fragment", [
    ([], "JSON object"),
    ({"events": ["invitee.created"]}, "target URL is missing"),
    ({"url": "https://x.example/cb", "events": []}, "events"),
    ({"url": "https://x.example/cb", "events": ["invitee.created", "invitee.created"]}, "unique"),
    ({"url": "https://x.example/cb", "events": ["meeting.booked"]}, "unknown Calendly event"),
    ({"url": "https://x.example/cb", "events": ["invitee.created"], "scope": "team"}, "scope"),
    ({"url": "https://a.example", "callbackUrl": "https://b.example", "events": ["invitee.created"]}, "once"),
    ({"url": "https://a.example", "events": ["invitee.created"], "target": {"type": "servicebus", "queue": "q"}}, "not both"),
    ({"events": ["invitee.created"], "target": {"type": "servicebus"}}, "exactly one"),
    ({"url": "https://a.example", "events": "invitee.created"}, "events"),
])
def test_bad_subscribe_bodies_are_400_with_a_reason(body, fragment):
    with pytest.raises(BridgeError) as info:
        parse_subscribe(body)
    assert info.value.status == 400 and fragment in info.value.message


@pytest.mark.parametrize("field", ["url", "callbackUrl", "notificationUrl"])
def test_target_url_is_accepted_under_every_platform_name(field):
    assert parse_subscribe({field: "https://x.example/cb", "events": ["invitee.created"]}).target_url == "https://x.example/cb"


# Target policy (SSRF) --------------------------------------------------------------
SECURE = Settings.from_env({})


@pytest.mark.parametrize("url", [
    "http://prod-01.westus.logic.azure.com/workflows/x",  # not https
    "https://127.0.0.1/x", "https://[::1]/x", "https://10.1.2.3/x", "https://192.168.0.1/x",
    "https://169.254.169.254/metadata", "https://[::ffff:127.0.0.1]/x", "https://localhost/x",
    "https://0.0.0.0/x", "ftp://example.com/x", "https://user:pw@example.com/x", "not a url",
])
def test_unsafe_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        check_target_url(url, SECURE, resolve=False)


def test_public_https_target_is_allowed_and_insecure_mode_allows_loopback():
    assert check_target_url("https://8.8.8.8/x", SECURE, resolve=False)
    assert check_target_url("http://127.0.0.1:7090/x", Settings.from_env({"ALLOW_INSECURE_TARGETS": "true"}))


def test_limit_with_unicode_digits_is_a_400_not_a_crash():
    from shared import api
    from shared.http import Request

    with pytest.raises(BridgeError) as info:
        api._limit(Request("GET", "http://x/api/subscriptions", params={"limit": "²"}))
    assert info.value.status == 400


def test_request_header_names_match_in_any_case_however_they_were_set():
    req = Request("POST", "http://127.0.0.1/api/x", {"Calendly-Webhook-Signature": "t=1,v1=a"})
    req.headers.update({"X-Functions-Key": "k"})
    req.headers.setdefault("content-type", "application/json")
    assert req.headers.get("calendly-webhook-signature") == "t=1,v1=a"
    assert req.headers["x-functions-key"] == "k" and req.headers["Content-Type"] == "application/json"
    assert req.headers.setdefault("CONTENT-TYPE", "text/plain") == "application/json"


# Service Bus entity names ----------------------------------------------------------
@pytest.mark.parametrize("name, ok", [
    ("orders", True), ("a", True), ("Orders.Booked-2026_x", True), ("tenants/contoso/bookings", True), ("x" * 260, True),
    ("", False), ("x" * 261, False), ("/orders", False), ("orders/", False), ("a//b", False), ("a/./b", False),
    ("a/../b", False), ("..", False), (".hidden", False), ("-orders", False), ("orders_", False), ("a b", False),
    ("a~b", False), ("$DeadLetterQueue", False), ("orders/$deadletterqueue", False), ("a?b", False), ("a#b", False),
    ("a@b", False), ("a*b", False), ("a\\b", False), ("bücher", False), ("a%2Fb", False), ("a\nb", False),
])
def test_service_bus_names_follow_azures_rules(name, ok):
    body = {"target": {"type": "servicebus", "queue": name}, "events": ["invitee.created"]}
    topic = {"target": {"type": "servicebus", "topic": name}, "events": ["invitee.created"]}
    if ok:
        assert parse_subscribe(body).target.queue == name and parse_subscribe(topic).target.topic == name
    else:
        for candidate in (body, topic):
            with pytest.raises(BridgeError) as refused:
                parse_subscribe(candidate)
            assert refused.value.status == 400 and refused.value.code == "invalid_subscription"
