"""Stores: pick the backend the settings configure."""
from __future__ import annotations

from ..settings import Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    """Azure Table Storage when AzureWebJobsStorage (or its identity-based form) is set,
    else the embedded SQLite store. SDKs are imported only for the backend in use."""
    from .tables import storage_configured

    if storage_configured(settings):
        from .tables import TableStore, table_service

        return TableStore(table_service(settings), settings.env.get("BRIDGE_TABLE_PREFIX") or "calendlybridge")
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
