"""The one setting the Functions host needs before anything is composed: the management routes'
auth level, read when the worker indexes function_app. Kept free of pydantic and the settings
model so indexing stays near a bare app's cold start (benchmarks/cold_start.py)."""
from __future__ import annotations

import os
from typing import Mapping

MANAGEMENT_AUTH_MODES = ("function_key", "entra", "both")


def management_host_auth_level(env: Mapping[str, str] | None = None) -> str:
    """FUNCTION (the host checks keys) unless MANAGEMENT_AUTH is entra or both, which the app checks
    itself (the host's key check would refuse a caller holding only a token). An unknown value
    keeps FUNCTION (closed); composing the bridge then names the bad setting."""
    source = os.environ if env is None else env
    mode = (source.get("MANAGEMENT_AUTH") or "").strip()
    return "ANONYMOUS" if mode in ("entra", "both") else "FUNCTION"
