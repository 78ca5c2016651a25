"""The Azure SDK clients the bridge uses, made in one place for the composition root
(``shared.composition``): the one credential, the Table service, the retry queue, the Service Bus
client and the Key Vault secret client. The modules that use a client take it (or a factory for
it) as a parameter, so a test or a second Calendly account can pass its own. Each SDK is imported
only when its client is made, and every client is bounded (connect/read timeouts, few retries):
a hung Azure endpoint fails a request within Calendly's 15 s, not after the SDK's minutes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import BridgeError, SettingsError

if TYPE_CHECKING:
    from .settings import Settings

# The SDK defaults are 10 retries and 300 s socket timeouts (Key Vault: 3 retries of each kind),
# which could hold a callback or a management call for minutes when an endpoint hangs.
TABLE_CLIENT_OPTIONS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 5, "retry_total": 2, "retry_backoff_factor": 0.2}
VAULT_CLIENT_OPTIONS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 5, "retry_total": 2,
                                        "retry_backoff_factor": 0.5, "retry_backoff_max": 2}
SERVICEBUS_NOT_CONFIGURED = ("this bridge has no Service Bus namespace: set SERVICEBUS_FULLY_QUALIFIED_NAMESPACE "
                             "(managed identity) or SERVICEBUS_CONNECTION")


def azure_credential(settings: Settings) -> Any:
    """The app's one Azure credential (managed identity on Azure, a developer login locally),
    shared by Key Vault, Table, Queue and Service Bus clients."""
    from azure.identity import DefaultAzureCredential

    client_id = settings.managed_identity_client_id
    return DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()


def needs_credential(settings: Settings) -> bool:
    return bool((settings.key_vault_url and not settings.calendly_pat)
                or (settings.table_storage and not settings.storage_connection)
                or (settings.servicebus_namespace and not settings.servicebus_connection))


def table_service(settings: Settings, credential: Any = None) -> Any:
    """The Table service of ``AzureWebJobsStorage`` (a connection string, or identity-based with ``credential``)."""
    from azure.data.tables import TableServiceClient

    if settings.storage_connection:
        # "UseDevelopmentStorage=true" is understood by the SDK: Azurite on 127.0.0.1:10002.
        return TableServiceClient.from_connection_string(settings.storage_connection, **TABLE_CLIENT_OPTIONS)
    # As the Functions host does for AzureWebJobsStorage__accountName alone: the public cloud's endpoint.
    endpoint = settings.table_service_uri or f"https://{settings.storage_account}.table.core.windows.net"
    return TableServiceClient(endpoint=endpoint, credential=credential, **TABLE_CLIENT_OPTIONS)


def queue_client(settings: Settings, credential: Any = None) -> Any:
    """A QueueClient for ``DELIVERY_QUEUE`` on the same storage account as the Table store."""
    from azure.storage.queue import LinearRetry, QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    options: dict[str, Any] = {
        # The Functions queue trigger expects base64 message text (host.json messageEncoding).
        "message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy(),
        # Bounded like the Table client: the SDK default backs off 15 s+ between retries.
        # random_jitter_range is typed int in the SDK but used as a float (random.uniform): half a second.
        "retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=0.5),  # type: ignore[arg-type]
        "connection_timeout": 3, "read_timeout": 5,
    }
    if settings.storage_connection:
        return QueueClient.from_connection_string(settings.storage_connection, settings.delivery_queue, **options)
    endpoint = settings.queue_service_uri
    if not endpoint and settings.storage_account:  # as the Functions host does: the public cloud's endpoint
        endpoint = f"https://{settings.storage_account}.queue.core.windows.net"
    table_uri = settings.table_service_uri or ""
    if not endpoint and ".table." in table_uri:
        endpoint = table_uri.replace(".table.", ".queue.", 1)
    if not endpoint:
        raise SettingsError("AzureWebJobsStorage__queueServiceUri", "must be set (or AzureWebJobsStorage__accountName) "
                            "for the retry queue when storage is identity-based")
    return QueueClient(endpoint, settings.delivery_queue, credential=credential, **options)


def servicebus_client(settings: Settings, credential: Any = None) -> Any:
    """The Service Bus client of SERVICEBUS_CONNECTION or, with ``credential``, of the namespace."""
    from azure.servicebus import ServiceBusClient

    if settings.servicebus_connection:
        return ServiceBusClient.from_connection_string(settings.servicebus_connection)
    if not settings.servicebus_namespace:
        raise BridgeError(400, "servicebus_not_configured", SERVICEBUS_NOT_CONFIGURED)
    return ServiceBusClient(settings.servicebus_namespace, credential)


def secret_client(vault_url: str | None, credential: Any, **options: Any) -> Any:
    """A Key Vault SecretClient (``options`` over the bounded defaults, e.g. ``connection_verify``)."""
    from azure.keyvault.secrets import SecretClient

    if not vault_url:
        raise SettingsError("KEY_VAULT_URL", "must be set to read the PAT from Key Vault")
    return SecretClient(vault_url, credential, **{**VAULT_CLIENT_OPTIONS, **options})
