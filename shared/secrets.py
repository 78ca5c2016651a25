"""Where the Calendly PAT comes from: ``CALENDLY_PAT`` (local, or an App Service Key Vault
reference the platform already resolved), else Key Vault through DefaultAzureCredential."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cachetools import TTLCache

from .errors import BridgeError
from .settings import Settings


class PatProvider(Protocol):
    source: str

    def get(self) -> str:
        """The PAT; raise BridgeError(503) naming the source (never the value) when it cannot be read."""

    def invalidate(self) -> bool:
        """Drop any cache after Calendly answered 401; True when a fresh read may give another value."""


class EnvironmentPat:
    source = "environment"

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def invalidate(self) -> bool:
        return False


class MissingPat:
    source = "none"

    def get(self) -> str:
        raise BridgeError(503, "pat_not_configured",
                          "no Calendly PAT is configured: set CALENDLY_PAT, or KEY_VAULT_URL and CALENDLY_PAT_SECRET_NAME")

    def invalidate(self) -> bool:
        return False


log = logging.getLogger("shared.secrets")


class SecretMissing(BridgeError):
    """Key Vault answered that the secret does not exist (not: could not be reached)."""


class KeyVaultPat:
    """The PAT from a Key Vault secret, cached for ``ttl`` seconds; ``invalidate`` after a
    Calendly 401 forces a fresh read, so a rotated PAT is picked up without a restart."""

    source = "keyvault"

    def __init__(self, vault_url: str, secret_name: str, ttl: float, client_factory: Callable[[], Any],
                 clock: Callable[[], float] = time.monotonic):
        """``client_factory`` makes the SecretClient, on the first read (shared.azure_clients)."""
        self.vault_url = vault_url
        self.secret_name = secret_name
        self.ttl = ttl
        self._factory = client_factory
        self._client = None
        self._cache: TTLCache = TTLCache(maxsize=1, ttl=ttl, timer=clock)
        self._lock = threading.Lock()  # held while reading: concurrent callers share one vault read

    def _secret_client(self):
        if self._client is None:
            self._client = self._factory()
        return self._client

    def get(self) -> str:
        with self._lock:
            value = self._cache.get("pat")
            if value is None:
                value = self._cache["pat"] = self._read()
            return value

    def _read(self) -> str:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        where = f"secret '{self.secret_name}' from Key Vault {self.vault_url}"
        try:
            value = self._secret_client().get_secret(self.secret_name).value
        except ResourceNotFoundError:
            self._log_failure("ResourceNotFoundError")
            raise SecretMissing(503, "pat_unavailable", f"could not read {where}: the secret does not exist") from None
        except (AzureError, OSError, ValueError) as exc:
            self._log_failure(type(exc).__name__)
            raise BridgeError(503, "pat_unavailable", f"could not read {where}: {type(exc).__name__}",
                              {"Retry-After": "30"}) from None
        if not value:
            self._log_failure("EmptySecret")
            raise BridgeError(503, "pat_unavailable", f"could not read {where}: the secret is empty")
        return value

    def _log_failure(self, error: str) -> None:
        log.error("keyvault outcome=failed vault=%s secret=%s error=%s", self.vault_url, self.secret_name, error)

    def invalidate(self) -> bool:
        with self._lock:
            self._cache.clear()
        return True


def token_exists(pat: PatProvider) -> bool:
    """Whether the token is there to use: set in the settings, or a Key Vault secret that exists (a vault
    that cannot be reached counts as there: its calls then say 503 and why)."""
    if pat.source != "keyvault":
        return pat.source != "none"
    try:
        pat.get()
    except SecretMissing:
        return False
    except BridgeError:
        return True
    return True


def pat_provider(settings: Settings, secret_client: Callable[[], Any]) -> PatProvider:
    """The PAT of the settings: CALENDLY_PAT, else the Key Vault secret (``secret_client`` makes the
    vault's client when first needed), else none (every Calendly call then answers 503)."""
    if settings.calendly_pat:
        return EnvironmentPat(settings.calendly_pat)
    if settings.key_vault_url:
        return KeyVaultPat(settings.key_vault_url, settings.pat_secret_name, settings.pat_cache_seconds, secret_client)
    return MissingPat()
