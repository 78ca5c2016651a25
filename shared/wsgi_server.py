"""Run a WSGI app on a real socket in a background thread (waitress): the sandbox, the
console target and test peers all start and stop this way."""
from __future__ import annotations

import threading


class BackgroundServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 8):
        self.app = app
        self.host = host
        self.port = port
        self.threads = threads
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        import waitress

        self._server = waitress.create_server(self.app, host=self.host, port=self.port, threads=self.threads,
                                              ident="calendly-bridge-peer")
        self.port = self._server.effective_port
        self._stopping = False
        self._thread = threading.Thread(target=self._run, args=(self._server,), name=f"wsgi:{self.port}", daemon=True)
        self._thread.start()
        return self

    def _run(self, server) -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not self._stopping:  # closing the sockets under the poll loop is how waitress stops
                raise

    def stop(self) -> None:
        if self._server is not None:
            self._stopping = True
            self._server.close()
            self._server = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
