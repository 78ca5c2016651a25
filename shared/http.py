"""Framework-free request/response objects the handlers speak.

function_app.py and the local host translate to and from these, so the service
code never depends on azure.functions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from requests.structures import CaseInsensitiveDict



@dataclass
class Request:
    method: str
    url: str
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CaseInsensitiveDict):
            self.headers = CaseInsensitiveDict(self.headers or {})


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
