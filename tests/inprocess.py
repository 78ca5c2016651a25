"""The bridge composed in-process on either store (SQLite, or Table Storage on Azurite), wired to
the Calendly sandbox, driven through the same handlers function_app calls. For tests that need an
injected clock or a hand on the services while still using real Calendly calls and a real store."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from shared import api, signatures
from shared.composition import Bridge, compose
from shared.http import Request, Response
from shared.settings import Settings

PUBLIC_URL = "http://127.0.0.1:7071"
STORES = ["sqlite", pytest.param("tables", marks=pytest.mark.azurite)]


def store_env(kind: str, request, tmp_path) -> dict[str, str]:
    """Settings selecting ``kind`` of store: a fresh SQLite file, or fresh tables and queue on Azurite."""
    if kind == "sqlite":
        return {"BRIDGE_SQLITE_PATH": str(tmp_path / f"{uuid.uuid4().hex[:8]}.sqlite3")}
    return {"AzureWebJobsStorage": request.getfixturevalue("azurite"), "BRIDGE_TABLE_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "DELIVERY_QUEUE": f"q{uuid.uuid4().hex[:12]}"}


def compose_on(kind: str, request, tmp_path, sandbox, **kwargs: Any) -> Bridge:
    env = {"CALENDLY_API_BASE": sandbox.url, "CALENDLY_PAT": "test-pat", "BRIDGE_PUBLIC_URL": PUBLIC_URL,
           "ALLOW_INSECURE_TARGETS": "true", **store_env(kind, request, tmp_path)}
    env.update(kwargs.pop("env", {}))
    return compose(Settings.from_env(env), **kwargs)


@dataclass
class Caller:
    """Calls the bridge's handlers as function_app does, and Calendly's side as the sandbox would."""

    bridge: Bridge
    sandbox: Any

    def call(self, handler, method: str, path: str = "/", body: Any = None, params: dict | None = None,
             headers: dict | None = None, **route) -> Response:
        data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        return handler(lambda: self.bridge, Request(method, f"{PUBLIC_URL}/api{path}", headers or {}, params or {}, route, data))

    def subscribe(self, url: str, events=("invitee.created",)) -> Response:
        return self.call(api.subscribe, "POST", "/subscriptions", {"url": url, "events": list(events)})

    def subscribed(self, target, path: str = "/flow") -> tuple[dict, str]:
        """Subscribe ``target``+``path``; the subscription and the callback URL Calendly was given."""
        response = self.subscribe(f"{target.url}{path}")
        assert response.status == 201, response.body
        sub = json.loads(response.body)
        return sub, self.hook(sub)["callback_url"]

    def unsubscribe(self, sub_id: str) -> Response:
        return self.call(api.unsubscribe, "DELETE", f"/subscriptions/{sub_id}", id=sub_id)

    def deliveries(self, sub_id: str) -> list[dict]:
        response = self.call(api.list_deliveries, "GET", f"/subscriptions/{sub_id}/deliveries", params={"include": "payload"},
                             id=sub_id)
        assert response.status == 200, response.body
        return json.loads(response.body)["value"]

    def hook(self, sub: dict) -> dict:
        """The sandbox's hook of the subscription (what Calendly holds: callback URL, state)."""
        [hook] = [h for h in self.sandbox.app.hooks() if h["uri"] == sub["calendly_webhook"]]
        return hook

    def post_event(self, callback_url: str, body: bytes, key: str | None = None) -> Response:
        """POST ``body`` to ``callback_url`` as Calendly would, signed with ``key`` (default: the key
        Calendly holds for that URL)."""
        key = key or self.sandbox.app.signing_key(callback_url)
        path_token = callback_url.rsplit("/", 1)[1]
        return self.call(api.calendly_event, "POST", f"/calendly/events/{path_token}", body,
                         headers={signatures.HEADER: signatures.sign(body, key)} if key else {}, id=path_token)


def event(n: int = 0, name: str = "invitee.created") -> bytes:
    return json.dumps({"event": name, "created_at": "2026-03-01T00:00:00.000000Z",
                       "payload": {"uri": f"https://api.calendly.com/scheduled_events/E/invitees/{n}",
                                   "name": "Zoë Ångström", "email": "zoe@example.com"}}, ensure_ascii=False).encode()


def sandbox_hooks_calling(sandbox, prefix: str) -> list[dict]:
    return [h for h in requests.get(f"{sandbox.url}/_sandbox/hooks", timeout=5).json()["hooks"]
            if h["callback_url"].startswith(prefix)]
