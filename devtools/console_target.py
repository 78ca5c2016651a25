"""A local target that prints what the bridge forwards (``python -m shared serve --sandbox``)."""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping

from .servers import BackgroundServer, read_request

_REPLY = b'{"ok": true}'


class ConsoleTargetApp:
    """WSGI app: one readable line per received POST, every request kept in ``received``."""

    def __init__(self, out=None):
        self.out = out
        self.received: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = read_request(environ)
        with self._lock:
            self.received.append({"method": request.method, "path": request.path, "headers": request.headers,
                                  "body": request.body})
            if request.method == "POST":
                self._print(describe(request.headers, request.body))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_REPLY)))])
        return [_REPLY]

    def _print(self, line: str) -> None:
        out = self.out or sys.stdout
        encoding = getattr(out, "encoding", None) or "utf-8"
        # A console that cannot show "Zoë" must not turn the delivery into an error.
        print(line.encode(encoding, "backslashreplace").decode(encoding), file=out, flush=True)


def describe(headers: Mapping[str, str], body: bytes) -> str:
    """``[target] invitee.created delivery <id>: Zoë Ångström <zoe@…> at <start_time>``"""
    event = headers.get("X-Calendly-Event", "?")
    line = f"[target] {event} delivery {headers.get('X-Bridge-Delivery-Id', '?')}"
    try:
        payload = json.loads(body)["payload"]
    except (ValueError, KeyError, TypeError):
        return f"{line} ({len(body)} bytes, not a Calendly envelope)"
    if not isinstance(payload, dict):
        return line
    if event.startswith("invitee."):
        start = (payload.get("scheduled_event") or {}).get("start_time")
        return f"{line}: {payload.get('name')} <{payload.get('email')}> at {start}"
    return f"{line}: {payload.get('uri')}"


class ConsoleTarget(BackgroundServer):
    """The console target on a real socket: ``.start()``, ``.url``, ``.received``, ``.stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, out=None):
        super().__init__(ConsoleTargetApp(out), host, port, threads=4)

    @property
    def received(self) -> list[dict]:
        return self.app.received
