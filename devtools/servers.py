"""WSGI on a real socket (waitress) for the local tools, and the one reader of WSGI requests.

The local host, the sandbox, the console target and the tests' peers all start, stop and read
requests this way."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl

from requests.structures import CaseInsensitiveDict

MAX_BODY_BYTES = 8 * 1024 * 1024


class BadRequest(ValueError):
    """The request cannot be read: ``status`` 400 (an invalid Content-Length) or 413 (too large)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class WsgiRequest:
    method: str
    path: str
    query: str
    headers: CaseInsensitiveDict
    body: bytes
    url: str

    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))


def read_request(environ: dict, max_body: int = MAX_BODY_BYTES) -> WsgiRequest:
    """The request a WSGI server handed over: method, path, query, headers (case-insensitive) and body.
    A body is read only as far as ``Content-Length`` says (as the Functions host forwards it)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest(400, "invalid Content-Length") from None
    if length > max_body:
        raise BadRequest(413, f"the body is larger than {max_body} bytes")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    headers = CaseInsensitiveDict({k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")})
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["Content-Length"] = environ["CONTENT_LENGTH"]
    path, query = environ.get("PATH_INFO", "") or "/", environ.get("QUERY_STRING", "")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
    return WsgiRequest(environ.get("REQUEST_METHOD", "GET").upper(), path, query, headers, body, url)


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

    def start(self) -> BackgroundServer:
        import waitress

        server = self._server = waitress.create_server(self.app, host=self.host, port=self.port, threads=self.threads,
                                                       ident="calendly-bridge-peer")
        self.port = server.effective_port
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

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
