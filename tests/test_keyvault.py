"""The PAT from Key Vault: the real azure-keyvault-secrets SDK against a local HTTPS fake that
speaks the secrets REST API and its bearer challenge."""
from __future__ import annotations

import logging

import pytest
import requests

from shared.calendly import CalendlyClient
from shared.errors import BridgeError
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


def provider(vault, clock=None, ttl=300, name="calendly-pat"):
    return KeyVaultPat(vault.url, name, ttl, credential=StaticCredential(), clock=clock or Clock(),
                       connection_verify=str(vault.cert_path), verify_challenge_resource=False)


def test_secret_is_read_through_the_bearer_challenge_and_cached(vault):
    pat = provider(vault)
    assert pat.get() == "test-pat" and pat.get() == "test-pat"
    assert vault.reads == 1
    assert pat._credential.scopes and "vault.azure.net" in pat._credential.scopes[0][0]


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


@pytest.mark.parametrize("breakage, fragment", [("down", "HttpResponseError"), ("missing", "does not exist")])
def test_vault_down_or_secret_missing_is_a_503_naming_vault_and_secret(vault, caplog, breakage, fragment):
    if breakage == "down":
        vault.down = True
    else:
        vault.secrets.clear()
    pat = provider(vault)
    with caplog.at_level(logging.DEBUG), pytest.raises(BridgeError) as info:
        pat.get()
    assert info.value.status == 503 and info.value.code == "pat_unavailable"
    assert vault.url in info.value.message and "calendly-pat" in info.value.message and fragment in info.value.message
    assert "test-pat" not in caplog.text


def test_unreachable_vault_is_a_503(tmp_path):
    from tests.conftest import free_port

    pat = KeyVaultPat(f"https://127.0.0.1:{free_port()}", "calendly-pat", 300, credential=StaticCredential(),
                      connection_verify=False, verify_challenge_resource=False, retry_total=0)
    with pytest.raises(BridgeError) as info:
        pat.get()
    assert info.value.status == 503 and "calendly-pat" in info.value.message


def test_plain_pat_wins_over_key_vault_and_key_vault_is_used_otherwise():
    both = Settings.from_env({"CALENDLY_PAT": "plain", "KEY_VAULT_URL": "https://kv.vault.azure.net"})
    assert isinstance(pat_provider(both), EnvironmentPat)
    vault_only = pat_provider(Settings.from_env({"KEY_VAULT_URL": "https://kv.vault.azure.net", "CALENDLY_PAT_SECRET_NAME": "pat"}))
    assert isinstance(vault_only, KeyVaultPat) and vault_only.secret_name == "pat" and vault_only.ttl == 300


def test_management_is_503_but_calendly_events_are_accepted_while_the_vault_is_down(make_host, sandbox, target, tmp_path):
    """The callback path never needs the PAT: signing keys live with the subscriptions."""
    from tests.test_bridge_e2e import subscribe

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
