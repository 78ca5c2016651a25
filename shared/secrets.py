"""Where the Calendly PAT comes from: the environment locally (Key Vault plugs in here)."""
from __future__ import annotations

from typing import Protocol

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


def pat_provider(settings: Settings) -> PatProvider:
    if settings.calendly_pat:
        return EnvironmentPat(settings.calendly_pat)
    return MissingPat()
