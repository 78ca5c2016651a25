"""Stores: the backend the settings configure."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Store

if TYPE_CHECKING:
    from ..settings import Settings


def open_store(settings: "Settings", credential: Any = None) -> Store:
    """Azure Table Storage when AzureWebJobsStorage (or its identity-based form, with ``credential``)
    is set, else the embedded SQLite store. SDKs are imported only for the backend in use."""
    if settings.table_storage:
        from .tables import TableStore, table_service

        return TableStore(table_service(settings, credential), settings.table_prefix)
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
