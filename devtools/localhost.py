"""The local host: serves exactly the HTTP functions declared in function_app.py over a
real socket (waitress), as ``func start`` would, so no Core Tools are needed locally.

It builds each function's declared request type from its annotation and reads back the
response duck-typed, so this package itself never imports azure.functions.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import typing
from dataclasses import dataclass
from http import HTTPStatus
from types import ModuleType
from typing import Any, Callable, Iterable

from .servers import BadRequest, read_request

log = logging.getLogger("devtools.localhost")

MAX_BODY_BYTES = 1024 * 1024


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


def discover_routes(module: ModuleType) -> tuple[list[Route], str]:
    """Every HTTP-triggered function ``module`` (function_app) declares, and the route prefix."""
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


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _json(start_response, status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    start_response(_status_line(status), [("Content-Type", "application/json; charset=utf-8"),
                                          ("Content-Length", str(len(body))), *headers])
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
            incoming = read_request(environ, MAX_BODY_BYTES)
        except BadRequest as exc:
            return _error(start_response, exc.status, "payload_too_large" if exc.status == 413 else "bad_request", str(exc))
        return self._invoke(route, {k: v for k, v in match.groupdict().items() if v is not None}, incoming, start_response)

    @staticmethod
    def _invoke(route: Route, route_params: dict[str, str], incoming, start_response) -> list[bytes]:
        try:
            request = route.request_type(incoming.method, incoming.url, headers=dict(incoming.headers),
                                         params=incoming.params(), route_params=route_params, body=incoming.body)
            response = route.handler(request)
            status = int(response.status_code)
            payload = response.get_body() or b""
            out_headers = [(k, v) for k, v in dict(response.headers).items() if k.lower() != "content-length"]
        except Exception:  # noqa: BLE001 - as the Functions host does: a 500, never a trace to the caller
            log.exception("function %s failed", route.name)
            return _error(start_response, 500, "internal_error", "the function failed; see the host's log")
        if status == 204:
            payload = b""
        start_response(_status_line(status), out_headers + [("Content-Length", str(len(payload)))])
        return [payload]


def make_app(module: ModuleType) -> FunctionsWsgiApp:
    routes, prefix = discover_routes(module)
    return FunctionsWsgiApp(routes, prefix)


class BackgroundWork(threading.Thread):
    """The local stand-in for the queue-triggered retry worker and the reconcile timer:
    retries due deliveries every ``redeliver_interval`` s, reconciles every ``reconcile_interval`` s."""

    def __init__(self, bridge: Callable[[], Any], redeliver_interval: float = 5.0, reconcile_interval: float = 900.0):
        super().__init__(name="background-work", daemon=True)
        self.bridge = bridge
        self.redeliver_interval = redeliver_interval
        self.reconcile_interval = reconcile_interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from shared.errors import BridgeError
        from shared.errors import SettingsError

        tick = min(i for i in (self.redeliver_interval, self.reconcile_interval) if i > 0)
        next_redeliver = next_reconcile = time.monotonic()
        while not self.stopped.wait(tick):
            now = time.monotonic()
            try:
                if self.redeliver_interval > 0 and now >= next_redeliver:
                    next_redeliver = now + self.redeliver_interval
                    summary = self.bridge().deliveries.retry_due()
                    if summary["attempted"]:
                        log.info("redelivery: %s", summary)
                if self.reconcile_interval > 0 and now >= next_reconcile:
                    next_reconcile = now + self.reconcile_interval
                    self.bridge().reconciler.reconcile()
            except (BridgeError, SettingsError) as exc:
                log.warning("background work: %s", exc)
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("background work failed")
