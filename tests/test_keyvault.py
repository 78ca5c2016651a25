"""The PAT from Key Vault: the real azure-keyvault-secrets SDK against a local HTTPS fake that
speaks the secrets REST API and its bearer challenge."""
from __future__ import annotations

import json
import logging
import time

import pytest
import requests

from shared.calendly import CalendlyClient
from shared.errors import BridgeError
from shared.azure_clients import secret_client
from shared.secrets import EnvironmentPat, KeyVaultPat, pat_provider
from shared.settings import Settings
from tests.fake_keyvault import FakeKeyVault, StaticCredential


@pytest.fixture
def vault(tmp_path):
    kv = FakeKeyVault(tmp_path).start()
    kv.secrets["calendly-pat"] = "test-pat"
    yield kv
    kv.stop()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def vault_client(url: str, credential=None, **options):
    """The real SecretClient, made as the composition root makes it, for the loopback vault."""
    credential = credential or StaticCredential()
    client = secret_client(url, credential, **options)
    client.test_credential = credential
    return client


def provider(vault, clock=None, ttl=300, name="calendly-pat"):
    return KeyVaultPat(vault.url, name, ttl, lambda: vault_client(vault.url, connection_verify=str(vault.cert_path),
                                                                  verify_challenge_resource=False), clock=clock or Clock())


def test_secret_is_read_through_the_bearer_challenge_and_cached(vault):
    pat = provider(vault)
    assert pat.get() == "test-pat" and pat.get() == "test-pat"
    assert vault.reads == 1
    assert pat._client.test_credential.scopes and "vault.azure.net" in pat._client.test_credential.scopes[0][0]


def test_cache_expires_after_the_ttl(vault):
    clock = Clock()
    pat = provider(vault, clock, ttl=300)
    pat.get()
    vault.secrets["calendly-pat"] = "rotated"
    clock.now += 299
    assert pat.get() == "test-pat"
    clock.now += 2
    assert pat.get() == "rotated" and vault.reads == 2


def test_calendly_401_rereads_a_rotated_pat_once(vault, sandbox):
    pat = provider(vault)
    client = CalendlyClient(sandbox.url, pat)
    assert client.me()["uri"]
    vault.secrets["calendly-pat"] = "rotated-pat"
    requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated-pat"}, timeout=5)
    assert client.me()["uri"]  # 401 with the cached PAT, re-read, success
    assert vault.reads == 2
    client.close()


@pytest.mark.parametrize("breakage, fragment", [("503", "HttpResponseError"), ("drop", "ServiceResponseError"),
                                               ("missing", "does not exist")])
def test_vault_down_or_secret_missing_is_a_503_naming_vault_and_secret(vault, caplog, breakage, fragment):
    if breakage == "missing":
        vault.secrets.clear()
    else:
        vault.mode = breakage
    pat = provider(vault)
    with caplog.at_level(logging.DEBUG), pytest.raises(BridgeError) as info:
        pat.get()
    assert info.value.status == 503 and info.value.code == "pat_unavailable"
    assert vault.url in info.value.message and "calendly-pat" in info.value.message and fragment in info.value.message
    assert "test-pat" not in caplog.text


def test_a_hanging_vault_fails_within_a_bounded_time(vault):
    """azure-core's own defaults would wait 300 s per attempt; the provider's bound is a few."""
    vault.mode = "hang"
    pat = KeyVaultPat(vault.url, "calendly-pat", 300, lambda: vault_client(
        vault.url, connection_verify=str(vault.cert_path), verify_challenge_resource=False, read_timeout=1))  # retries: the defaults
    started = time.monotonic()
    with pytest.raises(BridgeError) as info:
        pat.get()
    assert info.value.status == 503 and "ServiceResponseTimeoutError" in info.value.message
    assert time.monotonic() - started < 8


def test_challenge_resource_is_verified_unless_disabled_for_the_loopback_vault(vault):
    """The SDK checks the challenge's resource (vault.azure.net) against the vault host; a vault on
    127.0.0.1 can only pass with verify_challenge_resource=False, which production never sets."""
    strict = KeyVaultPat(vault.url, "calendly-pat", 300, lambda: vault_client(vault.url, connection_verify=str(vault.cert_path)))
    with pytest.raises(BridgeError) as info:
        strict.get()
    assert info.value.status == 503 and vault.reads == 0 and vault.challenges == 1
    assert provider(vault).get() == "test-pat"


def test_pat_and_vault_token_never_reach_logs(vault, sandbox, caplog):
    from shared.redaction import install_log_redaction

    install_log_redaction()  # as composing the bridge does (this test builds its parts by hand)
    pat = provider(vault)
    client = CalendlyClient(sandbox.url, pat)
    with caplog.at_level(logging.DEBUG):
        client.me()
        vault.secrets["calendly-pat"] = "rotated-pat"
        requests.post(f"{sandbox.url}/_sandbox/token", json={"pat": "rotated-pat"}, timeout=5)
        client.me()
    client.close()
    assert vault.reads == 2 and "/secrets/REDACTED" in caplog.text  # the SDK did log its requests (path shown redacted)
    for secret in ("test-pat", "rotated-pat", FakeKeyVault.TOKEN):
        assert secret not in caplog.text


def test_unreachable_vault_is_a_503(tmp_path):
    from tests.conftest import free_port

    url = f"https://127.0.0.1:{free_port()}"
    pat = KeyVaultPat(url, "calendly-pat", 300, lambda: vault_client(url, connection_verify=False,
                                                                     verify_challenge_resource=False, retry_total=0))
    with pytest.raises(BridgeError) as info:
        pat.get()
    assert info.value.status == 503 and "calendly-pat" in info.value.message


def test_plain_pat_wins_over_key_vault_and_key_vault_is_used_otherwise():
    both = Settings.from_env({"CALENDLY_PAT": "plain", "KEY_VAULT_URL": "https://kv.vault.azure.net"})
    made: list = []
    assert isinstance(pat_provider(both, lambda: made.append("client")), EnvironmentPat)
    vault_only = pat_provider(Settings.from_env({"KEY_VAULT_URL": "https://kv.vault.azure.net", "CALENDLY_PAT_SECRET_NAME": "pat"}),
                              lambda: made.append("client"))
    assert isinstance(vault_only, KeyVaultPat) and vault_only.secret_name == "pat" and vault_only.ttl == 300
    assert made == []  # the vault's client is made on the first read, not when composing


def test_management_is_503_but_calendly_events_are_accepted_while_the_vault_is_down(make_host, sandbox, target, tmp_path):
    """The callback path never needs the PAT: signing keys live with the subscriptions."""
    from tests.helpers import subscribe

    bridge = make_host()
    sub = subscribe(bridge, target).json()
    bridge.stop()
    # Nothing listens at that vault address: the SDK fails on its first (unauthenticated,
    # challenge) request, before any credential would be asked for a token.
    unreachable = make_host(port=bridge.port, CALENDLY_PAT="", KEY_VAULT_URL="https://127.0.0.1:9", AZURE_CLIENT_ID="")
    response = subscribe(unreachable, target, path="/second")
    assert response.status_code == 503 and response.json()["error"]["code"] == "pat_unavailable"
    from tests.conftest import simulate

    result = simulate(sandbox, "invitee.created")
    assert [d["status"] for d in result["deliveries"]] == [200]
    assert len(target.wait_for(1)) == 1 and sub["id"]


def test_in_process_management_is_503_json_health_stays_quiet_and_events_flow_while_the_vault_is_down(
        vault, sandbox, target, tmp_path):
    from shared import api, signatures
    from shared.composition import compose
    from shared.http import Request

    settings = Settings.from_env({"KEY_VAULT_URL": vault.url, "CALENDLY_API_BASE": sandbox.url, "ALLOW_INSECURE_TARGETS": "true",
                                  "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071", "BRIDGE_SQLITE_PATH": str(tmp_path / "b.sqlite3")})
    pat = provider(vault)
    bridge = compose(settings, pat=pat, calendly=CalendlyClient(sandbox.url, pat))

    def subscribe(path):
        body = json.dumps({"url": f"{target.url}{path}", "events": ["invitee.created"]}).encode()
        return api.subscribe(lambda: bridge, Request("POST", "http://127.0.0.1:7071/api/subscriptions", body=body))

    created = subscribe("/first")
    assert created.status == 201, created.body
    sub_id = json.loads(created.body)["id"]

    vault.mode = "503"
    pat.invalidate()
    refused = subscribe("/second")
    assert refused.status == 503 and refused.headers["Content-Type"].startswith("application/json")
    error = json.loads(refused.body)["error"]
    assert error["code"] == "pat_unavailable" and vault.url in error["message"] and "test-pat" not in error["message"]

    health = api.health(lambda: bridge, Request("GET", "http://127.0.0.1:7071/api/health"))
    assert json.loads(health.body)["checks"]["calendly_pat"] == "configured"
    assert vault.url not in health.body.decode() and "calendly-pat" not in health.body.decode()

    asked = vault.requests
    event = json.dumps({"event": "invitee.created", "created_at": "2026-01-01T00:00:00.000000Z",
                        "payload": {"uri": "https://api.calendly.com/scheduled_events/E/invitees/I"}}).encode()
    record = bridge.store.get_subscription(sub_id)
    url = bridge.subscriptions.callback_url(record)
    accepted = api.calendly_event(lambda: bridge, Request("POST", url, headers={signatures.HEADER: signatures.sign(event, record.signing_key)},
                                                          route_params={"id": url.rsplit("/", 1)[1]}, body=event))
    assert accepted.status == 200 and json.loads(accepted.body)["status"] == "delivered"
    assert target.wait_for(1)[0]["body"] == event and vault.requests == asked  # the callback never asked for the PAT
    bridge.close()
