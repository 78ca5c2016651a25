"""Stores: pick the backend the settings configure."""
from __future__ import annotations

from ..settings import Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    """The embedded SQLite store (Azure backends plug in here)."""
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
