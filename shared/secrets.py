"""Where the Calendly PAT comes from: ``CALENDLY_PAT`` (local, or an App Service Key Vault
reference the platform already resolved), else Key Vault through DefaultAzureCredential."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

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

# azure-core's defaults (300 s read timeout, 3 retries of each kind) could hold a management call
# for many minutes when the vault hangs; a secret read answers in milliseconds when all is well.
VAULT_CLIENT_DEFAULTS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 5, "retry_total": 2,
                                         "retry_backoff_factor": 0.5, "retry_backoff_max": 2}


class KeyVaultPat:
    """The PAT from a Key Vault secret, cached for ``ttl`` seconds; ``invalidate`` after a
    Calendly 401 forces a fresh read, so a rotated PAT is picked up without a restart."""

    source = "keyvault"

    def __init__(self, vault_url: str, secret_name: str, ttl: float, credential: Any,
                 clock: Callable[[], float] = time.monotonic, **client_kwargs: Any):
        self.vault_url = vault_url
        self.secret_name = secret_name
        self.ttl = ttl
        self._credential = credential
        self._client_kwargs = {**VAULT_CLIENT_DEFAULTS, **client_kwargs}
        self._client = None
        self._cache: TTLCache = TTLCache(maxsize=1, ttl=ttl, timer=clock)
        self._lock = threading.Lock()  # held while reading: concurrent callers share one vault read

    def _secret_client(self):
        if self._client is None:
            from azure.keyvault.secrets import SecretClient  # imported only when Key Vault is configured

            self._client = SecretClient(self.vault_url, self._credential, **self._client_kwargs)
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
            raise BridgeError(503, "pat_unavailable", f"could not read {where}: the secret does not exist") from None
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


def pat_provider(settings: Settings, credential: Any = None) -> PatProvider:
    if settings.calendly_pat:
        return EnvironmentPat(settings.calendly_pat)
    if settings.key_vault_url:
        return KeyVaultPat(settings.key_vault_url, settings.pat_secret_name, settings.pat_cache_seconds, credential)
    return MissingPat()
