"""The one exception type that becomes the bridge's JSON error body."""
from __future__ import annotations


class BridgeError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "bad_request") -> BridgeError:
    return BridgeError(400, code, message)


def not_found(message: str, code: str = "not_found") -> BridgeError:
    return BridgeError(404, code, message)


class StoreUnavailable(BridgeError):
    """The store could not be reached; callers answer 503 so the peer retries."""

    def __init__(self, message: str = "the subscription store is unavailable"):
        super().__init__(503, "store_unavailable", message, {"Retry-After": "30"})


class ConcurrencyConflict(BridgeError):
    """An optimistic-concurrency write lost the race (ETag or insert-if-absent)."""

    def __init__(self, message: str = "the record was changed concurrently; retry"):
        super().__init__(409, "conflict", message, {"Retry-After": "1"})


class SettingsError(ValueError):
    """A setting is missing or invalid; ``setting`` names it (never its value, unless harmless)."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting} {message}")
        self.setting = setting
