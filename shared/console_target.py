"""A local target that prints what the bridge forwards (``python -m shared serve --sandbox``)."""
from __future__ import annotations

import json
import sys
import threading

from .wsgi_server import BackgroundServer


class ConsoleTargetApp:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.received: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        with self._lock:
            self.received.append({"path": environ.get("PATH_INFO"), "headers": headers, "body": body})
        print(self.describe(headers, body), file=self.out, flush=True)
        reply = b'{"ok": true}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(reply)))])
        return [reply]

    @staticmethod
    def describe(headers: dict, body: bytes) -> str:
        event = headers.get("X-Calendly-Event", "?")
        line = f"[target] {event} delivery {headers.get('X-Bridge-Delivery-Id', '?')}"
        try:
            payload = json.loads(body).get("payload") or {}
        except (ValueError, AttributeError):
            return f"{line} ({len(body)} bytes, not JSON)"
        if event.startswith("invitee.") and isinstance(payload, dict):
            start = (payload.get("scheduled_event") or {}).get("start_time")
            line += f": {payload.get('name')} <{payload.get('email')}> at {start}"
        return line


class ConsoleTarget(BackgroundServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, out=None):
        super().__init__(ConsoleTargetApp(out), host, port, threads=4)

    @property
    def received(self) -> list[dict]:
        return self.app.received
