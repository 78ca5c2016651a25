"""The local host: serves exactly the HTTP functions declared in function_app.py over a
real socket (waitress), as ``func start`` would, so no Core Tools are needed locally.

It builds each function's declared request type from its annotation and reads back the
response duck-typed, so this package itself never imports azure.functions.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import threading
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

log = logging.getLogger("shared.localhost")

MAX_BODY_BYTES = 1024 * 1024
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def load_local_settings(path: str = "local.settings.json") -> list[str]:
    """Copy local.settings.json ``Values`` into the environment (the environment wins)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        values = (json.load(fh) or {}).get("Values") or {}
    loaded = []
    for key, value in values.items():
        if key not in os.environ and value is not None:
            os.environ[key] = str(value)
            loaded.append(key)
    return loaded


def apply_local_defaults() -> None:
    """What every local command shares with ``func start``: local.settings.json Values,
    and insecure (http, loopback) targets allowed unless told otherwise."""
    load_local_settings()
    os.environ.setdefault("ALLOW_INSECURE_TARGETS", "true")


def _route_regex(template: str) -> re.Pattern:
    pattern = ""
    for literal, name, optional in re.findall(r"([^{]*)(?:\{(\w+)(?::[^}?]*)?(\?)?\})?", template):
        pattern += re.escape(literal)
        if name:
            pattern += f"(?P<{name}>[^/]+)" + ("?" if optional else "")
    return re.compile(f"^{pattern.rstrip('/')}/?$")


@dataclass
class Route:
    name: str
    regex: re.Pattern
    methods: frozenset[str]
    handler: Callable
    request_type: type


def discover_routes(module_name: str = "function_app") -> tuple[list[Route], str]:
    """Every HTTP-triggered function function_app declares, and the route prefix."""
    module = importlib.import_module(module_name)
    routes: list[Route] = []
    for function in module.app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is None or not hasattr(trigger, "methods"):
            continue
        handler = function.get_user_function()
        # function_app uses postponed annotations: resolve the declared request type in its module.
        request_type = next(iter(typing.get_type_hints(handler).values()))
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ["GET", "POST", "PUT", "DELETE", "PATCH"]))
        routes.append(Route(function.get_function_name(), _route_regex(trigger.route), methods, handler, request_type))
    prefix = "api"
    if os.path.exists("host.json"):
        with open("host.json", encoding="utf-8") as fh:
            prefix = (json.load(fh).get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")
    return routes, prefix


def _json(start_response, status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    start_response(f"{status} {_REASONS.get(status, '')}".strip(),
                   [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _error(start_response, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    return _json(start_response, status, {"error": {"code": code, "message": message}}, headers)


class FunctionsWsgiApp:
    def __init__(self, routes: list[Route], prefix: str = "api"):
        self.routes = routes
        self.prefix = "/" + prefix if prefix else ""

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if not path.startswith(self.prefix + "/"):
            return _error(start_response, 404, "not_found", "no function serves this path")
        local = path[len(self.prefix) + 1:]
        matched = [(r, m) for r in self.routes if (m := r.regex.match(local))]
        if not matched:
            return _error(start_response, 404, "not_found", "no function serves this path")
        chosen = next(((r, m) for r, m in matched if method in r.methods), None)
        if chosen is None:
            allowed = ", ".join(sorted({x for r, _ in matched for x in r.methods}))
            return _error(start_response, 405, "method_not_allowed", f"use one of: {allowed}", [("Allow", allowed)])
        route, match = chosen
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(start_response, 400, "bad_request", "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            return _error(start_response, 413, "payload_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        query = environ.get("QUERY_STRING", "")
        url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
        params = dict(parse_qsl(query, keep_blank_values=True))
        route_params = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            request = route.request_type(method, url, headers=headers, params=params, route_params=route_params, body=body)
            response = route.handler(request)
            status = int(response.status_code)
            payload = response.get_body() or b""
            out_headers = [(k, v) for k, v in dict(response.headers).items() if k.lower() != "content-length"]
        except Exception:  # noqa: BLE001 - as the Functions host does: a 500, never a trace to the caller
            log.exception("function %s failed", route.name)
            return _error(start_response, 500, "internal_error", "the function failed; see the host's log")
        if status == 204:
            payload = b""
        start_response(f"{status} {_REASONS.get(status, '')}".strip(), out_headers + [("Content-Length", str(len(payload)))])
        return [payload]


def make_app() -> FunctionsWsgiApp:
    routes, prefix = discover_routes()
    return FunctionsWsgiApp(routes, prefix)


class BackgroundWork(threading.Thread):
    """The local stand-in for the queue-triggered retry worker and the reconcile timer:
    drains the outbox every ``redeliver_interval`` s, reconciles every ``reconcile_interval`` s."""

    def __init__(self, redeliver_interval: float = 5.0, reconcile_interval: float = 900.0):
        super().__init__(name="background-work", daemon=True)
        self.redeliver_interval = redeliver_interval
        self.reconcile_interval = reconcile_interval
        self.stopped = threading.Event()

    def run(self) -> None:
        import time

        from .bridge import get_bridge
        from .errors import BridgeError
        from .reconcile import reconcile
        from .settings import SettingsError

        tick = min(i for i in (self.redeliver_interval, self.reconcile_interval) if i > 0)
        next_redeliver = next_reconcile = time.monotonic()
        while not self.stopped.wait(tick):
            now = time.monotonic()
            try:
                if self.redeliver_interval > 0 and now >= next_redeliver:
                    next_redeliver = now + self.redeliver_interval
                    summary = get_bridge().deliveries.redeliver(due_only=True)
                    if summary["attempted"]:
                        log.info("redelivery: %s", summary)
                if self.reconcile_interval > 0 and now >= next_reconcile:
                    next_reconcile = now + self.reconcile_interval
                    reconcile(get_bridge())
            except (BridgeError, SettingsError) as exc:
                log.warning("background work: %s", exc)
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("background work failed")
