"""Framework-free request/response objects the handlers speak.

function_app.py and the local host translate to and from these, so the service
code never depends on azure.functions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping


class Headers(dict):
    """Case-insensitive header mapping (keys stored lower-case)."""

    def __init__(self, items: Mapping[str, str] | None = None):
        super().__init__()
        for key, value in (items or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Request:
    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> "Response":
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, payload, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def empty(cls, status: int = 204, headers: Mapping[str, str] | None = None) -> "Response":
        return cls(status, b"", dict(headers or {}))
