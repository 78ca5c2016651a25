"""The one setting the Functions host needs before anything is composed: the management routes'
auth level, read when the worker indexes function_app. Kept free of pydantic and the settings
model so indexing stays near a bare app's cold start (benchmarks/cold_start.py).

``management_auth_mode`` is the one reading of MANAGEMENT_AUTH: the settings model validates the
setting with it too, so the host's auth level and the app's own check can never disagree."""
from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import SettingsError

MANAGEMENT_AUTH_MODES = ("function_key", "entra", "both")
DEFAULT_MODE = "function_key"


def parse_mode(value: str | None) -> str:
    """The mode MANAGEMENT_AUTH names (unset or blank: function_key); ValueError for anything else."""
    mode = (value or "").strip() or DEFAULT_MODE
    if mode not in MANAGEMENT_AUTH_MODES:
        raise ValueError(f"must be one of {', '.join(MANAGEMENT_AUTH_MODES)}")
    return mode


def management_auth_mode(env: Mapping[str, str] | None = None) -> str:
    """MANAGEMENT_AUTH read from ``env`` (default: the process environment). A value that is none of
    the modes raises ``SettingsError`` naming the setting: a typo must not silently pick a mode."""
    value = (os.environ if env is None else env).get("MANAGEMENT_AUTH")
    try:
        return parse_mode(value)
    except ValueError as exc:
        raise SettingsError("MANAGEMENT_AUTH", f"is invalid: {exc} (got {(value or '').strip()!r})") from None


def management_host_auth_level(env: Mapping[str, str] | None = None) -> str:
    """FUNCTION (the host checks keys) for function_key; ANONYMOUS for entra or both, which the app
    checks itself (the host's key check would refuse a caller holding only a token). A mistyped
    value fails indexing with the setting's name (the worker starts no function on a guess)."""
    return "ANONYMOUS" if management_auth_mode(env) in ("entra", "both") else "FUNCTION"
