"""Framework-free request/response objects the handlers speak.

function_app.py and the local host translate to and from these, so the service
code never depends on azure.functions.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from requests.structures import CaseInsensitiveDict


def _case_insensitive(items: Mapping[str, str] | None = None) -> CaseInsensitiveDict:
    # requests' mapping, imported on the first request rather than when the worker indexes the
    # functions (importing requests costs ~90 ms of cold start; composing the bridge imports it anyway).
    from requests.structures import CaseInsensitiveDict

    return items if isinstance(items, CaseInsensitiveDict) else CaseInsensitiveDict(items or {})


@dataclass
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=_case_insensitive)  # made case-insensitive
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        self.headers = _case_insensitive(self.headers)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, payload, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def empty(cls, status: int = 204, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, b"", dict(headers or {}))
