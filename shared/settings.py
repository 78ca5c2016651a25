"""App settings: one typed declaration each, with its name, default, description and
validation. Names are identical in code, local.settings.sample.json, Bicep and the README.

This is the only module that reads the environment (Azure app settings, or what the local
host loads from local.settings.json). Plain pydantic, already a dependency: pydantic-settings
would add ~33 ms of import to every cold start for nothing the bridge uses (measured with
``python -X importtime``; see the README's performance section).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from .errors import SettingsError
from .hostauth import MANAGEMENT_AUTH_MODES, parse_mode

__all__ = ["Settings", "SettingsError", "local_environment"]

DEFAULTS_FILE = "local.settings.json"


def _base_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an absolute http(s) URL without query")
    return value


def _host_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(h.strip().lower().lstrip(".") for h in value or () if h.strip())


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _retention_hours(value: int) -> int:
    if value < 25:
        raise ValueError("must be at least 25 hours, so duplicate detection still covers Calendly's 24-hour retry window")
    return value


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _guid(value: str | None) -> str | None:
    if value is not None and not _GUID.fullmatch(value):
        raise ValueError("must be a GUID (00000000-0000-0000-0000-000000000000)")
    return value.lower() if value else value


def _guid_list(value: Any) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value or ()) if v.strip())
    return tuple(str(_guid(v)) for v in items)


def _issuer_list(value: Any) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value or ()) if v.strip())
    for item in items:
        if "{tenant}" not in item or not item.startswith(("https://", "http://")):
            raise ValueError("each issuer must be an http(s) URL containing {tenant}")
    return items


BaseUrl = Annotated[str, AfterValidator(_base_url)]
OptionalBaseUrl = Annotated[str | None, AfterValidator(_base_url)]
HostSuffixes = Annotated[tuple[str, ...], BeforeValidator(_host_list)]
Guids = Annotated[tuple[str, ...], BeforeValidator(_guid_list)]
Issuers = Annotated[tuple[str, ...], BeforeValidator(_issuer_list)]


def setting(name: str, default: Any, description: str, *, platform: bool = False, local_only: bool = False,
            secret: bool = False, **constraints: Any) -> Any:
    """Declare one setting: its app-setting name, default and what it does.
    ``platform``: set by Azure itself; ``local_only``: never set in Azure (Bicep leaves it out);
    ``secret``: an invalid value is named, never echoed."""
    return Field(default, validation_alias=name, description=description,
                 json_schema_extra={"platform": platform, "local_only": local_only, "secret": secret}, **constraints)


def _extra(field: FieldInfo) -> dict[str, Any]:
    """What ``setting`` recorded about a field (platform, local_only, secret)."""
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    calendly_api_base: BaseUrl = setting(
        "CALENDLY_API_BASE", "https://api.calendly.com", "Calendly API v2 base URL (the sandbox sets its own).")
    calendly_pat: str | None = setting(
        "CALENDLY_PAT", None, "Calendly personal access token: local development, or an App Service Key Vault reference.",
        local_only=True)
    key_vault_url: OptionalBaseUrl = setting(
        "KEY_VAULT_URL", None, "Key Vault holding the PAT, read with the app's managed identity.")
    pat_secret_name: str = setting("CALENDLY_PAT_SECRET_NAME", "calendly-pat", "Name of the Key Vault secret holding the PAT.")
    pat_cache_seconds: int = setting(
        "CALENDLY_PAT_CACHE_SECONDS", 300, "How long the PAT is cached; a 401 from Calendly re-reads it at once.",
        ge=0, le=86400)
    azure_client_id: str | None = setting(
        "AZURE_CLIENT_ID", None, "Client id of the user-assigned managed identity (the one Azure credential of the app).")
    bridge_public_url: OptionalBaseUrl = setting(
        "BRIDGE_PUBLIC_URL", None,
        "Base URL Calendly calls back and Location headers use, e.g. https://<app>.azurewebsites.net "
        "(default on Azure: https://$WEBSITE_HOSTNAME).")
    website_hostname: str | None = setting(
        "WEBSITE_HOSTNAME", None, "Set by Azure: the app's default host name.", platform=True)
    sqlite_path: str = setting(
        "BRIDGE_SQLITE_PATH", ".bridge/bridge.sqlite3", "Embedded SQLite store, used when no Azure storage is configured.",
        local_only=True)
    signature_tolerance: int = setting(
        "SIGNATURE_TOLERANCE_SECONDS", 180, "Accepted age/skew of Calendly-Webhook-Signature timestamps.", ge=1, le=86400)
    allow_insecure_targets: bool = setting(
        "ALLOW_INSECURE_TARGETS", False, "Allow http:// and loopback/private targets (local development only).")
    allowed_target_hosts: HostSuffixes = setting(
        "ALLOWED_TARGET_HOSTS", (), "Optional comma-separated host suffixes targets must match.")
    delivery_max_attempts: int = setting(
        "DELIVERY_MAX_ATTEMPTS", 8, "Delivery attempts (in-request and durable retries) before a delivery is dead.",
        ge=1, le=100)
    delivery_retention_hours: Annotated[int, AfterValidator(_retention_hours)] = setting(
        "DELIVERY_RETENTION_HOURS", 72,
        "Hours a delivered (or discarded) event's record and payload are kept after its last attempt, then purged; "
        "at least 25, so duplicate detection covers Calendly's 24-hour retry window.", le=24 * 366)
    dead_delivery_retention_days: int = setting(
        "DEAD_DELIVERY_RETENTION_DAYS", 14, "Days a dead delivery keeps its payload for replay, then it is purged.",
        ge=1, le=366)
    servicebus_namespace: str | None = setting(
        "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE", None,
        "Service Bus namespace (<name>.servicebus.windows.net) for servicebus targets, with managed identity.")
    servicebus_connection: str | None = setting(
        "SERVICEBUS_CONNECTION", None, "Service Bus connection string (local development).", local_only=True)
    storage_connection: str | None = setting(
        "AzureWebJobsStorage", None,
        "Storage connection string (UseDevelopmentStorage=true for Azurite); set: Table Storage store + retry queue.",
        local_only=True)
    storage_account: str | None = setting(
        "AzureWebJobsStorage__accountName", None,
        "Identity-based storage: the account name (local or manual use: the host then builds public-cloud endpoints; "
        "Azure gets the service URIs).", local_only=True)
    table_service_uri: str | None = setting(
        "AzureWebJobsStorage__tableServiceUri", None, "Identity-based storage: the Table service URI (Bicep: from the account).")
    queue_service_uri: str | None = setting(
        "AzureWebJobsStorage__queueServiceUri", None, "Identity-based storage: the Queue service URI (Bicep: from the account).")
    storage_client_id: str | None = setting(
        "AzureWebJobsStorage__clientId", None,
        "Identity-based storage: the user-assigned identity's client id (used when AZURE_CLIENT_ID is not set).")
    table_prefix: Annotated[str, _matching(r"[A-Za-z][A-Za-z0-9]{0,40}", "letters and digits, starting with a letter")] = \
        setting("BRIDGE_TABLE_PREFIX", "calendlybridge",
                "Prefix of the bridge's tables (subscriptions, targets, callbacks, deliveries).")
    delivery_queue: Annotated[str, _matching(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]",
                                             "a Storage queue name: 3-63 lower-case letters, digits and single hyphens")] = \
        setting("DELIVERY_QUEUE", "calendly-deliveries", "Storage queue of deliveries awaiting a retry (the queue trigger's queueName).")
    log_level: Annotated[str, _matching(r"(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)", "DEBUG, INFO, WARNING, ERROR or CRITICAL")] = \
        setting("BRIDGE_LOG_LEVEL", "INFO", "Log level of the local host and CLI commands (host.json rules on Azure).",
                local_only=True)
    reconcile_schedule: str = setting(
        "RECONCILE_SCHEDULE", "0 */15 * * * *", "NCRONTAB schedule of the reconciliation timer (the timer trigger's schedule).")
    reconcile_rate_share: int = setting(
        "RECONCILE_RATE_SHARE_PERCENT", 20,
        "Percent of Calendly's per-minute rate limit (500 on paid plans, 50 on Free; the PAT's budget, shared with "
        "subscribes) one reconcile run may use: it pauses while less than the rest of Calendly's window is left and "
        "makes at most that many repair calls (recreates, deletes) per run; the remainder waits for the next run.",
        ge=1, le=100)

    # Who may call the management API (docs: README "Who can do what") ------------------
    # Literal over the modes' tuple: pydantic reads it, mypy cannot (it wants the values spelled out).
    management_auth: Annotated[Literal[MANAGEMENT_AUTH_MODES], BeforeValidator(parse_mode)] = setting(  # type: ignore[valid-type]
        "MANAGEMENT_AUTH", "function_key",
        "Management API authentication: function_key (the host checks function keys), entra (Microsoft Entra ID "
        "bearer tokens, checked by the app) or both (either a token or MANAGEMENT_KEY). Chosen when the app starts; any "
        "other value stops the worker indexing its functions, naming this setting.")
    management_key: str | None = setting(
        "MANAGEMENT_KEY", None,
        "MANAGEMENT_AUTH=both only: the key callers without a token send as x-functions-key (or ?code=); "
        "on Azure a Key Vault reference.", secret=True, min_length=32)
    max_subscriptions_per_owner: int = setting(
        "MAX_SUBSCRIPTIONS_PER_OWNER", 50,
        "Subscriptions one signed-in owner may hold (admins and key holders: no limit); one more is a 403.",
        ge=1, le=100000)
    calendly_calls_per_caller_per_minute: int = setting(
        "CALENDLY_CALLS_PER_CALLER_PER_MINUTE", 30,
        "Management calls that spend the PAT's Calendly rate limit (subscribe, unsubscribe, test) one signed-in maker "
        "(not an admin or key holder) may make per minute and worker; past it a 429 with Retry-After. 0: no limit.",
        ge=0, le=100000)
    entra_tenant_id: Annotated[str | None, AfterValidator(_guid)] = setting(
        "ENTRA_TENANT_ID", None, "Directory (tenant) id of the bridge's app registration; its tokens are accepted.")
    entra_allowed_tenants: Guids = setting(
        "ENTRA_ALLOWED_TENANTS", (),
        "Optional comma-separated further tenant ids whose tokens are accepted; their users are makers at most "
        "(app roles and user names count only from ENTRA_TENANT_ID).")
    entra_allowed_client_apps: Guids = setting(
        "ENTRA_ALLOWED_CLIENT_APPS", (),
        "Optional comma-separated client application ids (a token's azp/appid) allowed to call: e.g. the custom "
        "connector's, the Azure CLI's, a Logic App identity's. Empty: any client with a valid token.")
    entra_client_id: Annotated[str | None, AfterValidator(_guid)] = setting(
        "ENTRA_CLIENT_ID", None, "Application (client) id of the bridge's app registration: the audience of v2 tokens.")
    entra_app_id_uri: str | None = setting(
        "ENTRA_APP_ID_URI", None, "Application ID URI of the registration, the audience of v1 tokens (default api://<ENTRA_CLIENT_ID>).")
    entra_issuers: Issuers = setting(
        "ENTRA_ISSUERS", ("https://login.microsoftonline.com/{tenant}/v2.0", "https://sts.windows.net/{tenant}/"),
        "Comma-separated issuer templates ({tenant} = each accepted tenant id); the default covers v2 and v1 tokens "
        "of the public cloud.")
    entra_jwks_url: BaseUrl = setting(
        "ENTRA_JWKS_URL", "https://login.microsoftonline.com/common/discovery/v2.0/keys",
        "Where Entra ID publishes its token signing keys (JWKS).")
    entra_admin_role: str = setting(
        "ENTRA_ADMIN_ROLE", "Bridge.Admin", "App role whose holders see and manage every subscription.", min_length=1)
    entra_organization_role: str = setting(
        "ENTRA_ORGANIZATION_ROLE", "Calendly.Organization",
        "App role needed to subscribe at organization or group scope.", min_length=1)

    # Loading ------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default: the process environment); empty values count as unset."""
        source = os.environ if env is None else env
        values = {name: value for name, value in source.items() if isinstance(value, str) and value.strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = str(first["loc"][0]) if first.get("loc") else "settings"
            reason = first["msg"].removeprefix("Value error, ")
            field = next((f for f in cls.model_fields.values() if f.validation_alias == name), None)
            secret = bool(field and _extra(field).get("secret"))
            got = "" if secret else f" (got {values.get(name)!r})"
            raise SettingsError(name, f"is invalid: {reason}{got}") from None

    @classmethod
    def local(cls, defaults: Mapping[str, str] | None = None, path: str = DEFAULTS_FILE) -> Settings:
        """As ``func start`` sees them: the environment over local.settings.json ``Values`` over ``defaults``."""
        return cls.from_env(local_environment(defaults, path))

    @classmethod
    def declared(cls) -> dict[str, dict[str, Any]]:
        """Every setting by its app-setting name: default, description, platform, local_only."""
        return {str(f.validation_alias): {"default": f.default, "description": f.description, **_extra(f)}
                for f in cls.model_fields.values()}

    # Derived ------------------------------------------------------------------------
    @property
    def public_url(self) -> str | None:
        if self.bridge_public_url:
            return self.bridge_public_url
        return f"https://{self.website_hostname}" if self.website_hostname else None

    def require_public_url(self) -> str:
        if not self.public_url:
            raise SettingsError("BRIDGE_PUBLIC_URL", "is not set: Calendly needs the bridge's public base URL to call back")
        return self.public_url

    @property
    def table_storage(self) -> bool:
        """Azure storage (Table store + retry queue) is configured; otherwise the SQLite store."""
        return bool(self.storage_connection or self.storage_account or self.table_service_uri)

    @property
    def managed_identity_client_id(self) -> str | None:
        return self.azure_client_id or self.storage_client_id

    # Management API authentication --------------------------------------------------------
    @property
    def entra_tenants(self) -> tuple[str, ...]:
        """Tenant ids whose tokens are accepted: the bridge's own, then the allow-list."""
        own = (self.entra_tenant_id,) if self.entra_tenant_id else ()
        return tuple(dict.fromkeys(own + self.entra_allowed_tenants))

    @property
    def entra_audiences(self) -> tuple[str, ...]:
        """Accepted ``aud`` values: the client id (v2 tokens) and the application ID URI (v1 tokens)."""
        if not self.entra_client_id:
            return ()
        return tuple(dict.fromkeys((self.entra_client_id, self.entra_app_id_uri or f"api://{self.entra_client_id}")))

    def require_entra(self) -> None:
        """MANAGEMENT_AUTH=entra|both needs the app registration, and both needs the key."""
        if self.management_auth == "function_key":
            return
        for name, value in (("ENTRA_TENANT_ID", self.entra_tenant_id), ("ENTRA_CLIENT_ID", self.entra_client_id)):
            if not value:
                raise SettingsError(name, f"is required when MANAGEMENT_AUTH={self.management_auth}")
        if self.management_auth == "both" and not self.management_key:
            raise SettingsError("MANAGEMENT_KEY", "is required when MANAGEMENT_AUTH=both (callers without a token send it)")


# Written by the local demo (``serve --sandbox``) while it runs: the settings it runs with that
# differ from local.settings.json (the sandbox's URL and PAT, the demo's store), so the product's
# commands run from the same folder act on the running demo. Removed when the demo stops; ignored
# when the process that wrote it is gone.
RUNNING_DEMO_FILE = os.path.join(".bridge", "running-demo.json")


def running_demo(path: str = RUNNING_DEMO_FILE) -> dict[str, str]:
    """The running demo's settings, or {} when no demo runs from this folder."""
    try:
        with open(path, encoding="utf-8") as fh:
            running = json.load(fh)
        os.kill(int(running["pid"]), 0)  # still alive? (signal 0 only checks)
        return {str(k): str(v) for k, v in running["settings"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def local_environment(defaults: Mapping[str, str] | None = None, path: str = DEFAULTS_FILE,
                      demo: str = RUNNING_DEMO_FILE) -> dict[str, str]:
    """The environment over a running demo's settings over local.settings.json ``Values`` over
    ``defaults`` (what ``func start`` gives the worker, plus what the running demo changed)."""
    merged = dict(defaults or {})
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            merged.update({k: str(v) for k, v in ((json.load(fh) or {}).get("Values") or {}).items() if v is not None})
    merged.update(running_demo(demo))
    merged.update(os.environ)
    return merged
