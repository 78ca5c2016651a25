"""Stores: the subscription and delivery records (SQLite locally, Azure Table Storage on Azure).
Which one, with which client, is chosen by the composition root (``shared.composition.open_store``)."""
from __future__ import annotations

from .base import Store

__all__ = ["Store"]
