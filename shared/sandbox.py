"""A local stand-in for the part of Calendly API v2 the bridge uses, with Calendly's
shapes and errors (checked against Calendly's OpenAPI export by tests/test_sandbox.py),
plus control endpoints under ``/_sandbox/`` to fire signed events and inject faults.

    python -m shared sandbox [--port 7080] [--pat sandbox-pat]
    python -m shared simulate invitee.created [--sandbox-url http://127.0.0.1:7080]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode

from . import sample_events, signatures
from .events import EVENT_TYPES, ORGANIZATION_ONLY, SCOPES
from .wsgi_server import BackgroundServer

DEFAULT_PAT = "sandbox-pat"
_STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
                502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_ERRORS = {400: ("Invalid Argument", "The supplied parameters are invalid."),
           401: ("Unauthenticated", "The access token is invalid"),
           403: ("Permission Denied", "You do not have permission to access this resource."),
           404: ("Resource Not Found", "The server could not find the requested resource."),
           409: ("Already Exists", "Hook with this url already exists"),
           429: ("Too Many Requests", "You have exceeded the rate limit."),
           500: ("Internal Server Error", "The server encountered an unexpected condition that prevented it from fulfilling the request.")}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Reply(Exception):
    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str | None = None, details: list | None = None, headers: dict | None = None) -> _Reply:
    title, default = _ERRORS.get(status, ("Error", "Something went wrong."))
    body = {"title": title, "message": message or default}
    if details:
        body["details"] = details
    return _Reply(status, body, headers)


class SandboxApp:
    """The WSGI app. Thread-safe; also usable from Python (``simulate``, ``hooks``, ...)."""

    def __init__(self, pat: str = DEFAULT_PAT, base_url: str = "http://127.0.0.1:7080"):
        self.pat = pat
        self.base_url = base_url.rstrip("/")
        self._lock = threading.Lock()
        self._user_id = str(uuid.uuid4())
        self._org_id = str(uuid.uuid4())
        self._hooks: dict[str, dict] = {}  # uuid -> resource + "_signing_key"
        self._log: list[dict] = []
        self._faults: list[dict] = []
        self._epoch = 0  # bumped by reset(): requests begun before it change nothing
        self._local = threading.local()

    @property
    def user_uri(self) -> str:
        return f"{self.base_url}/users/{self._user_id}"

    @property
    def organization_uri(self) -> str:
        return f"{self.base_url}/organizations/{self._org_id}"

    # Python control surface ---------------------------------------------------------
    def reset(self, keep_hooks: bool = False) -> None:
        with self._lock:
            self._epoch += 1
            if not keep_hooks:
                self._hooks.clear()
            self._log.clear()
            self._faults.clear()

    def hooks(self) -> list[dict]:
        with self._lock:
            return [self._public(h) | {"has_signing_key": bool(h.get("_signing_key"))} for h in self._hooks.values()]

    def requests_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def add_fault(self, **spec) -> None:
        spec.setdefault("count", 1)
        with self._lock:
            self._faults.append(spec)

    def simulate(self, event: str, webhook: str | None = None, payload: dict | None = None,
                 envelope: dict | None = None, repeat: int = 1) -> dict:
        """Send a signed event to every active hook subscribed to it (or to one named hook)."""
        import requests

        if envelope is None:
            if event not in EVENT_TYPES:
                raise ValueError(f"unknown Calendly event {event!r}")
            envelope = sample_events.envelope(event, self.base_url, self.user_uri, self.organization_uri)
            if payload:
                envelope["payload"].update(payload)
        event = envelope.get("event", event)
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        with self._lock:
            targets = [dict(h) for key, h in self._hooks.items()
                       if (key == webhook if webhook else (h["state"] == "active" and event in h["events"]))]
        deliveries = []
        for hook in targets:
            for _ in range(max(1, int(repeat))):
                headers = {"Content-Type": "application/json", "User-Agent": "Calendly-Webhook-Sandbox"}
                if hook.get("_signing_key"):
                    headers[signatures.HEADER] = signatures.sign(body, hook["_signing_key"])
                entry = {"webhook": hook["uri"], "callback_url": hook["callback_url"], "status": None, "error": None, "response": None}
                try:
                    # Calendly's own limits: 10 s to connect, 15 s to read, redirects are failures.
                    response = requests.post(hook["callback_url"], data=body, headers=headers, timeout=(10, 15), allow_redirects=False)
                    entry["status"], entry["response"] = response.status_code, response.text[:2048]
                except requests.RequestException as exc:
                    entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
                deliveries.append(entry)
        return {"deliveries": deliveries, "envelope": envelope}

    # WSGI -----------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = (environ.get("PATH_INFO") or "/").rstrip("/") or "/"
        self._local.epoch = self._epoch
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            if path.startswith("/_sandbox"):
                status, body, headers = self._control(method, path, raw)
            else:
                status, body, headers = self._api(environ, method, path, query, raw)
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        except _Drop:
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")])
            return [b'{"resource":']  # fewer bytes than promised: the client sees a dropped connection
        except Exception:  # noqa: BLE001 - never leak a traceback, as Calendly doesn't
            status, body, headers = 500, {"title": "Internal Server Error", "message": "Unexpected sandbox error."}, {}
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        out = [("Content-Length", str(len(payload))), *headers.items()]
        if body is not None:
            out.append(("Content-Type", "application/json; charset=utf-8"))
        start_response(f"{status} {_STATUS_TEXT.get(status, '')}".strip(), out)
        return [payload]

    def _json(self, raw: bytes) -> dict:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise _error(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise _error(400, "The request body must be a JSON object.")
        return data

    # Control endpoints -----------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes):
        parts = path.split("/")[2:]
        if parts == ["simulate"] and method == "POST":
            spec = self._json(raw)
            try:
                result = self.simulate(str(spec.get("event", "")), spec.get("webhook"), spec.get("payload"),
                                       spec.get("envelope"), int(spec.get("repeat", 1)))
            except ValueError as exc:
                raise _error(400, str(exc)) from None
            return 200, result, {}
        if parts == ["requests"] and method == "GET":
            return 200, {"requests": self.requests_log()}, {}
        if parts == ["reset"] and method == "POST":
            self.reset(bool(self._json(raw).get("keep_hooks")))
            return 200, {"ok": True}, {}
        if parts == ["hooks"] and method == "GET":
            return 200, {"hooks": self.hooks()}, {}
        if len(parts) == 2 and parts[0] == "hooks" and method in ("PATCH", "DELETE"):
            with self._lock:
                hook = self._hooks.get(parts[1])
                if hook is None:
                    raise _error(404)
                if method == "DELETE":
                    del self._hooks[parts[1]]
                    return 204, None, {}
                state = self._json(raw).get("state")
                if state not in ("active", "disabled"):
                    raise _error(400, "state must be active or disabled")
                hook["state"] = state
                hook["retry_started_at"] = _now() if state == "disabled" else None
                return 200, {"resource": self._public(hook)}, {}
        if parts == ["faults"] and method == "POST":
            spec = self._json(raw)
            if spec.get("clear"):
                with self._lock:
                    self._faults.clear()
            else:
                self.add_fault(**spec)
            return 200, {"ok": True}, {}
        if parts == ["token"] and method == "POST":
            pat = self._json(raw).get("pat")
            if not isinstance(pat, str) or not pat:
                raise _error(400, "pat must be a non-empty string")
            self.pat = pat
            return 200, {"ok": True}, {}
        raise _error(404)

    # Calendly API ----------------------------------------------------------------------
    def _fault_for(self, method: str, path: str) -> dict | None:
        with self._lock:
            for spec in self._faults:
                if spec.get("method") not in (None, method):
                    continue
                if not path.startswith(spec.get("path_prefix") or "/"):
                    continue
                spec["count"] = int(spec.get("count", 1)) - 1
                if spec["count"] <= 0:
                    self._faults.remove(spec)
                return dict(spec)
        return None

    def _apply(self, fault: dict) -> None:
        if fault.get("hang_seconds"):
            time.sleep(float(fault["hang_seconds"]))
        if fault.get("close"):
            raise _Drop()
        if fault.get("ratelimit_reset") is not None:
            raise _error(429, headers={"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0",
                                       "X-RateLimit-Reset": str(fault["ratelimit_reset"])})
        if fault.get("status"):
            headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
            raise _error(int(fault["status"]), headers=headers)

    def _api(self, environ, method: str, path: str, query: dict, raw: bytes):
        fault = self._fault_for(method, path)
        logged = None
        if raw:
            try:
                logged = json.loads(raw)
                if isinstance(logged, dict) and "signing_key" in logged:
                    logged = {**logged, "signing_key": "***"}
            except ValueError:
                logged = raw.decode("utf-8", "replace")
        with self._lock:
            self._log.append({"method": method, "path": path, "query": environ.get("QUERY_STRING", ""), "body": logged})
        if fault:
            self._apply(fault)
        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.pat}":
            raise _error(401)
        if path == "/users/me" and method == "GET":
            return 200, {"resource": self._me()}, {}
        if path == "/webhook_subscriptions" and method == "POST":
            return 201, {"resource": self._create(self._json(raw))}, {}
        if path == "/webhook_subscriptions" and method == "GET":
            return 200, self._list(query), {}
        if path.startswith("/webhook_subscriptions/") and method in ("GET", "DELETE"):
            key = path.rsplit("/", 1)[1]
            with self._lock:
                hook = self._hooks.get(key)
                if hook is None:
                    raise _error(404)
                if method == "DELETE":
                    del self._hooks[key]
                    return 204, None, {}
                return 200, {"resource": self._public(hook)}, {}
        if path == "/sample_webhook_data" and method == "GET":
            return 200, self._sample(query), {}
        raise _error(404)

    def _me(self) -> dict:
        return {"uri": self.user_uri, "name": "Søren Kierkegaard", "slug": "soren-kierkegaard", "email": "host@example.com",
                "scheduling_url": "https://calendly.com/soren-kierkegaard", "timezone": "Europe/Copenhagen",
                "avatar_url": None, "created_at": "2024-01-02T03:04:05.000000Z", "updated_at": "2026-11-01T00:00:00.000000Z",
                "current_organization": self.organization_uri}

    def _scope_args(self, data: dict) -> tuple[str, str, str | None, str | None]:
        details = []
        organization, scope = data.get("organization"), data.get("scope")
        if not organization:
            details.append({"parameter": "organization", "message": "is required"})
        if scope not in SCOPES:
            details.append({"parameter": "scope", "message": f"must be one of {', '.join(SCOPES)}"})
        user = data.get("user") if scope == "user" else None
        group = data.get("group") if scope == "group" else None
        if scope == "user" and not user:
            details.append({"parameter": "user", "message": "is required for user scope"})
        if scope == "group" and not group:
            details.append({"parameter": "group", "message": "is required for group scope"})
        if details:
            raise _error(400, details=details)
        if organization != self.organization_uri:
            raise _error(403, "You do not have permission to access this organization.")
        return organization, scope, user, group

    def _create(self, data: dict) -> dict:
        details = []
        url, events = data.get("url"), data.get("events")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            details.append({"parameter": "url", "message": "must be a valid URL"})
        if not isinstance(events, list) or not events:
            details.append({"parameter": "events", "message": "is required"})
        elif any(e not in EVENT_TYPES for e in events):
            details.append({"parameter": "events", "message": "contains an unknown event"})
        elif len(set(events)) != len(events):
            details.append({"parameter": "events", "message": "must be unique"})
        if details:
            raise _error(400, details=details)
        organization, scope, user, group = self._scope_args(data)
        if scope != "organization" and ORGANIZATION_ONLY & set(events):
            raise _error(400, details=[{"parameter": "events", "message": "routing_form_submission.created requires organization scope"}])
        key = data.get("signing_key")
        with self._lock:
            for hook in self._hooks.values():
                if hook["callback_url"] == url and (hook["organization"], hook["scope"], hook["user"], hook["group"]) == (organization, scope, user, group):
                    raise _error(409)
            hook_id = str(uuid.uuid4())
            now = _now()
            stale = self._local.epoch != self._epoch
            hook = {"uri": f"{self.base_url}/webhook_subscriptions/{hook_id}", "callback_url": url, "created_at": now,
                    "updated_at": now, "retry_started_at": None, "state": "active", "events": list(events), "scope": scope,
                    "organization": organization, "user": user, "group": group, "creator": self.user_uri,
                    "_signing_key": key if isinstance(key, str) and key else None, "_seq": len(self._hooks)}
            if not stale:
                self._hooks[hook_id] = hook
            return self._public(hook)

    def _list(self, query: dict) -> dict:
        organization, scope, user, group = self._scope_args(query)
        raw_count = query.get("count", "20")
        if not raw_count.isdigit() or not 1 <= int(raw_count) <= 100:
            raise _error(400, details=[{"parameter": "count", "message": "must be between 1 and 100"}])
        count = int(raw_count)
        offset = 0
        if query.get("page_token"):
            try:
                offset = int(base64.urlsafe_b64decode(query["page_token"].encode()).decode().split(":", 1)[1])
            except (ValueError, IndexError, UnicodeDecodeError):
                raise _error(400, details=[{"parameter": "page_token", "message": "is invalid"}]) from None
        with self._lock:
            matching = sorted((h for h in self._hooks.values()
                               if (h["organization"], h["scope"]) == (organization, scope)
                               and (scope != "user" or not user or h["user"] == user)
                               and (scope != "group" or not group or h["group"] == group)),
                              key=lambda h: (h["created_at"], h["_seq"]))
            page = [self._public(h) for h in matching[offset:offset + count]]
        def token(at: int) -> str:
            return base64.urlsafe_b64encode(f"o:{at}".encode()).decode()

        def link(tok: str) -> str:
            params = {k: v for k, v in query.items() if k != "page_token"} | {"count": count, "page_token": tok}
            return f"{self.base_url}/webhook_subscriptions?{urlencode(params)}"

        next_token = token(offset + count) if offset + count < len(matching) else None
        prev_token = token(max(0, offset - count)) if offset > 0 else None
        return {"collection": page, "pagination": {
            "count": len(page), "next_page": link(next_token) if next_token else None,
            "previous_page": link(prev_token) if prev_token else None,
            "next_page_token": next_token, "previous_page_token": prev_token}}

    def _sample(self, query: dict) -> dict:
        event = query.get("event")
        if event not in EVENT_TYPES:
            raise _error(400, details=[{"parameter": "event", "message": "is invalid"}])
        self._scope_args(query)
        return sample_events.envelope(event, self.base_url, self.user_uri, self.organization_uri)

    @staticmethod
    def _public(hook: dict) -> dict:
        return {k: v for k, v in hook.items() if not k.startswith("_")}


class _Drop(Exception):
    """Answer with a truncated body so the client sees the connection drop."""


class Sandbox(BackgroundServer):
    """The sandbox on a real socket: ``Sandbox(pat).start()``, ``.url``, ``.app``, ``.stop()``."""

    def __init__(self, pat: str | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(SandboxApp(pat or os.environ.get("SANDBOX_PAT") or DEFAULT_PAT), host, port, threads=8)

    def start(self) -> "Sandbox":
        super().start()
        self.app.base_url = self.url
        return self


def main_sandbox(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared sandbox", description="Run the local Calendly API stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7080)
    parser.add_argument("--pat", default=os.environ.get("SANDBOX_PAT") or DEFAULT_PAT, help="the token it accepts")
    args = parser.parse_args(argv)
    import waitress

    app = SandboxApp(args.pat, f"http://{args.host}:{args.port}")
    print(f"Calendly sandbox on http://{args.host}:{args.port} (set CALENDLY_API_BASE to it; PAT: {args.pat})", flush=True)
    try:
        waitress.serve(app, host=args.host, port=args.port, threads=8, ident="calendly-sandbox", _quiet=True)
    except KeyboardInterrupt:
        pass
    return 0


def main_simulate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared simulate", description="Make the sandbox fire a signed event.")
    parser.add_argument("event", choices=EVENT_TYPES)
    parser.add_argument("--sandbox-url", default=os.environ.get("SANDBOX_URL", "http://127.0.0.1:7080"))
    parser.add_argument("--webhook", help="only this hook (its uuid)")
    parser.add_argument("--repeat", type=int, default=1, help="send the identical bytes N times")
    args = parser.parse_args(argv)
    import requests

    try:
        response = requests.post(f"{args.sandbox_url.rstrip('/')}/_sandbox/simulate", timeout=60,
                                 json={"event": args.event, "webhook": args.webhook, "repeat": args.repeat})
    except requests.RequestException as exc:
        print(f"error: the sandbox at {args.sandbox_url} is not reachable ({type(exc).__name__}); "
              "start it with `python -m shared sandbox` or `python -m shared serve --sandbox`", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(f"error: the sandbox answered {response.status_code}: {response.text}", file=sys.stderr)
        return 2
    result = response.json()
    if not result["deliveries"]:
        print(f"{args.event}: no active hook is subscribed to it")
    for d in result["deliveries"]:
        print(f"{args.event} -> {d['callback_url']}: {d['status'] or d['error']} {d['response'] or ''}".rstrip())
    return 0
