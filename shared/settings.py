"""App settings: one home, one name each (identical in code, local.settings.sample.json,
Bicep and the README). Read from the environment (Azure app settings or the local host,
which loads local.settings.json ``Values`` into it)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

DEFAULT_CALENDLY_API_BASE = "https://api.calendly.com"
DEFAULT_RECONCILE_SCHEDULE = "0 */15 * * * *"

# name -> (default, what it does). The README's settings table mirrors this.
SETTINGS: dict[str, tuple[str | None, str]] = {
    "CALENDLY_API_BASE": (DEFAULT_CALENDLY_API_BASE, "Calendly API v2 base URL (the sandbox sets its own)."),
    "CALENDLY_PAT": (None, "Calendly personal access token, plain (local) or an App Service Key Vault reference."),
    "KEY_VAULT_URL": (None, "Key Vault holding the PAT, read with DefaultAzureCredential."),
    "CALENDLY_PAT_SECRET_NAME": ("calendly-pat", "Name of the Key Vault secret holding the PAT."),
    "CALENDLY_PAT_CACHE_SECONDS": ("300", "How long the PAT read from Key Vault is cached in memory."),
    "AZURE_CLIENT_ID": (None, "Client id of the user-assigned managed identity DefaultAzureCredential uses."),
    "BRIDGE_PUBLIC_URL": (None, "Base URL Calendly calls back and Location headers use, e.g. https://<app>.azurewebsites.net."),
    "BRIDGE_SQLITE_PATH": (".bridge/bridge.sqlite3", "Embedded SQLite store file, used when no Azure storage is configured."),
    "SIGNATURE_TOLERANCE_SECONDS": ("180", "Accepted clock skew for Calendly-Webhook-Signature timestamps."),
    "ALLOW_INSECURE_TARGETS": ("false", "Allow http:// and loopback/private targets (local development only)."),
    "ALLOWED_TARGET_HOSTS": (None, "Optional comma-separated host suffixes targets must match."),
    "DELIVERY_MAX_ATTEMPTS": ("8", "Delivery attempts (in-request and durable retries) before a delivery is dead."),
    "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": (None, "Service Bus namespace (e.g. <name>.servicebus.windows.net) for servicebus targets, with managed identity."),
    "SERVICEBUS_CONNECTION": (None, "Service Bus connection string (local development; prefer the namespace + identity on Azure)."),
    "AzureWebJobsStorage": (None, "Storage connection string (UseDevelopmentStorage=true for Azurite); set: Table Storage store + retry queue."),
    "AzureWebJobsStorage__accountName": (None, "Identity-based storage: the account name (Azure sets this instead of a connection string)."),
    "AzureWebJobsStorage__tableServiceUri": (None, "Identity-based storage: explicit Table service URI (optional)."),
    "AzureWebJobsStorage__queueServiceUri": (None, "Identity-based storage: explicit Queue service URI (optional)."),
    "AzureWebJobsStorage__clientId": (None, "Identity-based storage: client id of the user-assigned identity."),
    "BRIDGE_TABLE_PREFIX": ("calendlybridge", "Prefix of the bridge's table names (subscriptions, targets, deliveries)."),
    "DELIVERY_QUEUE": ("calendly-deliveries", "Storage queue of failed deliveries awaiting a retry."),
    "BRIDGE_LOG_LEVEL": ("INFO", "Log level of the local host and CLI commands (the Functions host uses host.json)."),
    "RECONCILE_SCHEDULE": (DEFAULT_RECONCILE_SCHEDULE, "NCRONTAB schedule of the reconciliation timer (recreates lost or disabled hooks, deletes orphans)."),
}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.setting = message.split(" ", 1)[0]


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, SETTINGS[name][0] or "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int:
    raw = env.get(name) or SETTINGS[name][0] or ""
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _base_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = (env.get(name) or default or "").strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"{name} must be an absolute http(s) URL without query, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    calendly_api_base: str
    calendly_pat: str | None
    key_vault_url: str | None
    pat_secret_name: str
    pat_cache_seconds: int
    public_url: str | None
    sqlite_path: str
    signature_tolerance: int
    allow_insecure_targets: bool
    allowed_target_hosts: tuple[str, ...]
    delivery_max_attempts: int
    env: Mapping[str, str]
    servicebus_namespace: str | None = None
    servicebus_connection: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        public_url = _base_url(env, "BRIDGE_PUBLIC_URL", None)
        if public_url is None and env.get("WEBSITE_HOSTNAME"):
            # Azure sets WEBSITE_HOSTNAME; a sensible default when BRIDGE_PUBLIC_URL is not set.
            public_url = f"https://{env['WEBSITE_HOSTNAME']}"
        hosts = tuple(h.strip().lower().lstrip(".") for h in (env.get("ALLOWED_TARGET_HOSTS") or "").split(",") if h.strip())
        return cls(
            calendly_api_base=_base_url(env, "CALENDLY_API_BASE", DEFAULT_CALENDLY_API_BASE) or DEFAULT_CALENDLY_API_BASE,
            calendly_pat=(env.get("CALENDLY_PAT") or "").strip() or None,
            key_vault_url=_base_url(env, "KEY_VAULT_URL", None),
            pat_secret_name=(env.get("CALENDLY_PAT_SECRET_NAME") or "calendly-pat").strip(),
            pat_cache_seconds=_int(env, "CALENDLY_PAT_CACHE_SECONDS", 0, 86400),
            public_url=public_url,
            sqlite_path=(env.get("BRIDGE_SQLITE_PATH") or SETTINGS["BRIDGE_SQLITE_PATH"][0] or "").strip(),
            signature_tolerance=_int(env, "SIGNATURE_TOLERANCE_SECONDS", 1, 86400),
            allow_insecure_targets=_flag(env, "ALLOW_INSECURE_TARGETS"),
            allowed_target_hosts=hosts,
            delivery_max_attempts=_int(env, "DELIVERY_MAX_ATTEMPTS", 1, 100),
            env=env,
            servicebus_namespace=(env.get("SERVICEBUS_FULLY_QUALIFIED_NAMESPACE") or "").strip() or None,
            servicebus_connection=(env.get("SERVICEBUS_CONNECTION") or "").strip() or None,
        )

    def require_public_url(self) -> str:
        if not self.public_url:
            raise SettingsError("BRIDGE_PUBLIC_URL is not set: Calendly needs the bridge's public base URL to call back")
        return self.public_url
