"""Peers for tests: any WSGI app on a real socket on 127.0.0.1, in a background thread."""
from __future__ import annotations

import socket

from devtools.servers import BackgroundServer


class PeerServer(BackgroundServer):
    """A started background waitress server; ``stop()`` (or waitress's ``close()``) ends it."""

    def close(self) -> None:
        self.stop()


def serve_wsgi(app, host: str = "127.0.0.1", port: int = 0) -> tuple[PeerServer, str]:
    """Serve ``app`` on ``host:port`` (0: an ephemeral port); returns the server and its base URL."""
    server = PeerServer(app, host, port).start()
    return server, server.url


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for processes that must be told their port up front)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class FakeClock:
    """An injectable clock (``clock()`` -> aware UTC datetime) that moves only when told to."""

    def __init__(self, start=None):
        from datetime import datetime, timezone

        self.now = start or datetime.now(timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)
