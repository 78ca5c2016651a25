"""The local host: serves exactly the HTTP functions declared in function_app.py over a
real socket (waitress), as ``func start`` would, so no Core Tools are needed locally.

It hands requests over the way the real Functions host does (azure-functions-host's routing and
its conversion for the Python worker), so what works here works after ``func start`` or deploy:
- route literals match case-insensitively; literal segments win over parameter segments whatever
  the registration order; ``%2F`` inside a route value is matched as part of the value, not split;
- a path no function serves, or a method no function on that path accepts, is an empty 404 (no 405);
  a function that raises is an empty 500;
- repeated query keys arrive joined with ``,``, keys merge case-insensitively, empty values are dropped;
- up to 100 MiB of body is accepted, so the app's own size limits are what answer. One difference
  is left (README): the host forwards a body only with ``Content-Length``, so a chunked request
  arrives empty there, whereas waitress de-chunks before the app could tell;
- header names reach the function lower-cased; a response without a content type gets
  ``text/plain; charset=utf-8``.
It builds each function's declared request type from its annotation and reads back the response
duck-typed, so this package itself never imports azure.functions. Function keys are not enforced
(neither does ``func start``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from .servers import BadRequest, read_request

log = logging.getLogger("devtools.localhost")

MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's own request limit
PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Segment:
    text: str  # a literal, or a parameter's name
    parameter: bool = False
    optional: bool = False


def parse_template(template: str) -> tuple[Segment, ...]:
    """``subscriptions/{id}/deliveries`` -> literal, parameter, literal (constraints like ``{id:int}`` ignored)."""
    segments = []
    for part in template.strip("/").split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1].split(":", 1)[0]
            segments.append(Segment(name.rstrip("?"), parameter=True, optional=name.endswith("?") or part.endswith("?}")))
        else:
            segments.append(Segment(part))
    return tuple(segments)


@dataclass
class Route:
    name: str
    segments: tuple[Segment, ...]
    methods: frozenset[str]
    handler: Callable
    request_type: type

    @property
    def precedence(self) -> tuple[int, ...]:
        """Lower wins: at each position a literal (0) beats a parameter (1)."""
        return tuple(int(s.parameter) for s in self.segments)

    def match(self, raw_segments: list[str]) -> dict[str, str] | None:
        """Route values for the raw (still percent-encoded) path segments, or None."""
        required = [s for s in self.segments if not s.optional]
        if not len(required) <= len(raw_segments) <= len(self.segments):
            return None
        values = {}
        for segment, raw in zip(self.segments, raw_segments, strict=True):
            text = unquote(raw)
            if not segment.parameter:
                if text.casefold() != segment.text.casefold():
                    return None
            elif not text:
                return None
            else:
                values[segment.text] = text
        return values


def discover_routes(app: Any) -> tuple[list[Route], str]:
    """Every HTTP-triggered function ``app`` (a FunctionApp of function_app.build_app) declares,
    and the route prefix."""
    routes: list[Route] = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is None or not hasattr(trigger, "methods"):
            continue
        handler = function.get_user_function()
        # function_app uses postponed annotations: resolve the declared request type in its module.
        request_type = next(iter(typing.get_type_hints(handler).values()))
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ["GET", "POST", "PUT", "DELETE", "PATCH"]))
        routes.append(Route(function.get_function_name(), parse_template(trigger.route), methods, handler, request_type))
    prefix = "api"
    if os.path.exists("host.json"):
        with open("host.json", encoding="utf-8") as fh:
            prefix = (json.load(fh).get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")
    return routes, prefix


def host_query(query: str) -> dict[str, str]:
    """The query as the host hands it to the worker: empty values dropped, keys merged
    case-insensitively (the first spelling kept), repeated values joined with ','."""
    merged: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=False):
        folded = key.casefold()
        spelling.setdefault(folded, key)
        merged.setdefault(folded, []).append(value)
    return {spelling[k]: ",".join(v) for k, v in merged.items()}


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _empty(start_response, status: int) -> list[bytes]:
    """The host's own answers (no function, no method, a function that failed) have no body."""
    start_response(_status_line(status), [("Content-Length", "0")])
    return [b""]


class FunctionsWsgiApp:
    def __init__(self, routes: list[Route], prefix: str = "api"):
        self.routes = routes
        self.prefix = prefix.strip("/")

    def resolve(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """The function serving ``method raw_path`` and its route values, or None (the host's 404)."""
        parts = raw_path.strip("/").split("/")
        if self.prefix:
            if not parts or unquote(parts[0]).casefold() != self.prefix.casefold():
                return None
            parts = parts[1:]
        candidates = [(r.precedence, r, values) for r in self.routes
                      if method in r.methods and (values := r.match(parts)) is not None]
        if not candidates:
            return None
        _, route, values = min(candidates, key=lambda c: c[0])
        return route, values

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_path = (environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/").split("?", 1)[0]
        resolved = self.resolve(method, raw_path)
        if resolved is None:
            return _empty(start_response, 404)
        try:
            incoming = read_request(environ, MAX_BODY_BYTES)
        except BadRequest as exc:
            return _empty(start_response, exc.status)
        return self._invoke(*resolved, incoming, start_response)

    @staticmethod
    def _invoke(route: Route, route_params: dict[str, str], incoming, start_response) -> list[bytes]:
        try:
            request = route.request_type(incoming.method, incoming.url,
                                         headers={k.lower(): v for k, v in incoming.headers.items()},
                                         params=host_query(incoming.query), route_params=route_params, body=incoming.body)
            response = route.handler(request)
            status = int(response.status_code)
            payload = response.get_body() or b""
            out_headers = [(k, v) for k, v in dict(response.headers).items() if k.lower() != "content-length"]
        except Exception:  # noqa: BLE001 - as the Functions host does: an empty 500, never a trace to the caller
            log.exception("function %s failed", route.name)
            return _empty(start_response, 500)
        if status == 204:
            payload = b""
        elif not any(k.lower() == "content-type" for k, _ in out_headers):
            out_headers.append(("Content-Type", PLAIN_TEXT))
        start_response(_status_line(status), out_headers + [("Content-Length", str(len(payload)))])
        return [payload]


def make_app(app: Any) -> FunctionsWsgiApp:
    routes, prefix = discover_routes(app)
    return FunctionsWsgiApp(routes, prefix)


class BackgroundWork(threading.Thread):
    """The local stand-in for the queue-triggered retry worker and the reconcile timer:
    retries due deliveries every ``redeliver_interval`` s; every ``reconcile_interval`` s purges
    expired deliveries and reconciles, as the timer does."""

    def __init__(self, bridge: Callable[[], Any], redeliver_interval: float = 5.0, reconcile_interval: float = 900.0):
        super().__init__(name="background-work", daemon=True)
        self.bridge = bridge
        self.redeliver_interval = redeliver_interval
        self.reconcile_interval = reconcile_interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from shared.errors import BridgeError, SettingsError

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
                    self.bridge().retention.purge()
                    self.bridge().callbacks.counter.flush()
                    self.bridge().reconciler.reconcile()
            except (BridgeError, SettingsError) as exc:
                log.warning("background work: %s", exc)
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("background work failed")
