"""A local stand-in for the part of Calendly API v2 the bridge uses (``/users/me``,
``/webhook_subscriptions``, ``/sample_webhook_data``, ``/organization_memberships``), with
Calendly's shapes and errors (checked against Calendly's OpenAPI export by tests/test_sandbox.py).

Control endpoints, no auth:
    POST   /_sandbox/simulate    {"event", "webhook"?, "payload"?, "envelope"?, "repeat"?} -> deliveries
    GET    /_sandbox/requests    API calls received (signing keys as "***")
    POST   /_sandbox/reset       {"keep_hooks"?}: forget hooks, log and faults
    GET    /_sandbox/hooks       every hook with has_signing_key
    PATCH  /_sandbox/hooks/<id>  {"state": "disabled"|"active"}
    DELETE /_sandbox/hooks/<id>  the hook vanishes silently
    POST   /_sandbox/faults      {"method"?, "path_prefix"?, "status"?, "count"?, "skip"?, "retry_after"?,
                                  "ratelimit_reset"?, "hang_seconds"?, "close"?} or {"clear": true}
    POST   /_sandbox/token       {"pat", "scopes"?}: rotate the accepted token; with "scopes" (a list)
                                 the token has only those (Calendly's tokens since March 2026) and a
                                 call lacking one is a 403 naming its "required_scopes"; without (or
                                 null), full access (a legacy token)
    POST   /_sandbox/ratelimit   {"limit"?, "window"?, "enforce"?}: Calendly's per-minute rate limit
                                 (every API answer carries X-RateLimit-Limit/-Remaining/-Reset;
                                 enforced, a request past the limit is a 429 until the window resets)
    POST   /_sandbox/members     {"email", "name"?, "role"?}: another member of the organization
    POST   /_sandbox/organizations {"pat"}: another Calendly organization on the same API, with its own
                                 owner user, token, hooks, members and rate window (a second Calendly
                                 account); API calls bearing its token are its; its control endpoints
                                 are under /_sandbox/organizations/<n>/... (n = 1, 2, ... in order made)

    python -m shared sandbox [--port 7080] [--pat sandbox-pat] [--organization-pat other-pat ...]   (devtools.cli)
    python -m shared simulate invitee.created [--sandbox-url http://127.0.0.1:7080]
"""
from __future__ import annotations

import argparse
import base64
import bisect
import itertools
import json
import math
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

import requests

from shared import scopes, signatures
from shared.events import EVENT_TYPES, ORGANIZATION_ONLY, SCOPES

from . import sample_events
from .servers import BackgroundServer, BadRequest, read_request

DEFAULT_PAT = "sandbox-pat"
DEFAULT_PORT = 7080
# Calendly's fixed titles and messages (the export pins most of them).
_ERRORS = {
    400: ("Invalid Argument", "The supplied parameters are invalid."),
    401: ("Unauthenticated", "The access token is invalid"),
    403: ("Permission Denied", "You do not have permission to access this resource."),
    404: ("Resource Not Found", "The server could not find the requested resource."),
    409: ("Already Exists", "Hook with this url already exists"),
    429: ("Too Many Requests", "You have exceeded the rate limit."),
    500: ("Internal Server Error",
          "The server encountered an unexpected condition that prevented it from fulfilling the request."),
}
_LIMIT_PER_MINUTE = "500"
_RATE_LIMIT, _RATE_WINDOW = 500, 60.0  # Calendly's paid plans: 500 requests per user per minute
_CONNECT_TIMEOUT, _READ_TIMEOUT = 10, 15  # Calendly's own delivery timeouts
_RESPONSE_EXCERPT = 2048


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Reply(Exception):
    """Answer the current request with ``status`` and a JSON ``body`` (None: no body)."""

    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Drop(Exception):
    """Close the connection without answering."""


def _error(status: int, details: list[dict] | None = None, headers: dict | None = None,
           message: str | None = None, **extra: Any) -> _Reply:
    title, default = _ERRORS.get(status, (HTTPStatus(status).phrase, HTTPStatus(status).description + "."))
    body: dict[str, Any] = {"title": title, "message": message or default, **extra}
    if details:
        body["details"] = details
    return _Reply(status, body, headers)


def _invalid(parameter: str, message: str) -> _Reply:
    return _error(400, [{"parameter": parameter, "message": message}])


class _Hooks:
    """The hooks, indexed so that 10,000 of them stay fast: by id; per scope in creation order
    (keyset pages are a bisect, not a sort); by callback URL and scope (the 409 check)."""

    def __init__(self):
        self.by_id: dict[str, dict] = {}  # uuid -> public resource + private "_signing_key", "_seq"
        self._seqs: dict[tuple, list[int]] = {}  # scope key -> ascending _seq of its hooks
        self._by_seq: dict[int, dict] = {}
        self._urls: dict[tuple, str] = {}  # (callback_url, *scope key) -> uuid

    @staticmethod
    def scope_key(hook: dict) -> tuple:
        return hook["organization"], hook["scope"], hook["user"], hook["group"]

    def add(self, hook_id: str, hook: dict) -> None:
        key = self.scope_key(hook)
        self.by_id[hook_id] = hook
        self._by_seq[hook["_seq"]] = hook
        seqs = self._seqs.setdefault(key, [])
        if seqs and seqs[-1] > hook["_seq"]:
            bisect.insort(seqs, hook["_seq"])
        else:
            seqs.append(hook["_seq"])
        self._urls[(hook["callback_url"], *key)] = hook_id

    def remove(self, hook_id: str) -> dict:
        hook = self.by_id.pop(hook_id)
        key = self.scope_key(hook)
        seqs = self._seqs[key]
        del seqs[bisect.bisect_left(seqs, hook["_seq"])]
        del self._by_seq[hook["_seq"]]
        if self._urls.get((hook["callback_url"], *key)) == hook_id:
            del self._urls[(hook["callback_url"], *key)]
        return hook

    def clear(self) -> None:
        self.by_id.clear()
        self._seqs.clear()
        self._by_seq.clear()
        self._urls.clear()

    def url_taken(self, url: str, key: tuple) -> bool:
        return (url, *key) in self._urls

    def in_scope(self, key: tuple) -> list[int]:
        """The scope's hooks' ``_seq``, ascending (do not modify)."""
        return self._seqs.get(key, [])

    def by_seq(self, seq: int) -> dict:
        return self._by_seq[seq]


class SandboxApp:
    """The WSGI app. Thread-safe; also driven from Python (``simulate``, ``hooks``, ``add_fault`` ...)."""

    def __init__(self, pat: str = DEFAULT_PAT, base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"):
        self.pat = pat
        self.scopes: frozenset[str] | None = None  # None: a legacy token with full access
        self.base_url = base_url.rstrip("/")
        self._lock = threading.Lock()
        self._user_id, self._organization_id = str(uuid.uuid4()), str(uuid.uuid4())
        self._hooks = _Hooks()
        self._owner_membership_id = str(uuid.uuid4())
        self._seq = itertools.count()
        self._log: list[dict] = []
        self._faults: list[dict] = []
        self._epoch = 0  # bumped by reset(): a create that began before it leaves nothing behind
        self._rate = {"limit": _RATE_LIMIT, "window": _RATE_WINDOW, "enforce": False}
        self._window_start, self._window_used = 0.0, 0
        self._members: dict[str, dict] = {}  # lower-cased email -> membership, besides the PAT's owner
        # API paths -> resources: every scheduled event and invitee a simulated invitee event named,
        # readable as Calendly serves them (GET /scheduled_events/<id>[/invitees/<id>]).
        self._resources: dict[str, dict] = {}
        self.organizations: list[SandboxApp] = []  # further organizations on the same API (add_organization)

    def add_organization(self, pat: str) -> SandboxApp:
        """Another Calendly organization served on the same base URL, answering calls with ``pat``."""
        if not isinstance(pat, str) or not pat or pat == self.pat or any(o.pat == pat for o in self.organizations):
            raise ValueError("pat must be a non-empty token no other organization of the sandbox uses")
        other = SandboxApp(pat, self.base_url)
        self.organizations.append(other)
        return other

    def _owner_of(self, environ) -> SandboxApp:
        """The organization whose token the API call bears (this one when none matches: then a 401)."""
        auth = environ.get("HTTP_AUTHORIZATION") or ""
        return next((o for o in self.organizations if auth == f"Bearer {o.pat}"), self)

    @property
    def user_uri(self) -> str:
        return f"{self.base_url}/users/{self._user_id}"

    @property
    def organization_uri(self) -> str:
        return f"{self.base_url}/organizations/{self._organization_id}"

    # Python control surface ---------------------------------------------------------
    def reset(self, keep_hooks: bool = False) -> None:
        """Forget hooks (unless ``keep_hooks``), the request log, queued faults and the rate-limit
        window (the limit itself goes back to 500 a minute, not enforced)."""
        with self._lock:
            self._epoch += 1
            if not keep_hooks:
                self._hooks.clear()
            self._log.clear()
            self._faults.clear()
            self._rate = {"limit": _RATE_LIMIT, "window": _RATE_WINDOW, "enforce": False}
            self._window_start, self._window_used = 0.0, 0
            self._members.clear()
            self._resources.clear()
            self.organizations = []

    def add_member(self, email: str, name: str | None = None, role: str = "user") -> dict:
        """Another user of the organization (the PAT's owner is always one); returns the membership."""
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("email must be an email address")
        if role not in ("user", "admin", "owner"):
            raise ValueError("role must be user, admin or owner")
        user_id, membership_id, now = str(uuid.uuid4()), str(uuid.uuid4()), _now()
        slug = email.split("@", 1)[0].lower()
        user = {"uri": f"{self.base_url}/users/{user_id}", "name": name or slug, "slug": slug, "email": email,
                "scheduling_url": f"https://calendly.com/{slug}", "timezone": "Europe/Copenhagen", "avatar_url": None,
                "created_at": now, "updated_at": now}
        membership = {"uri": f"{self.base_url}/organization_memberships/{membership_id}", "role": role, "user": user,
                      "organization": self.organization_uri, "updated_at": now, "created_at": now}
        with self._lock:
            self._members[email.lower()] = membership
        return membership

    def hooks(self) -> list[dict]:
        """Every hook as Calendly shows it, plus ``has_signing_key`` (never the key)."""
        with self._lock:
            return [_public(h) | {"has_signing_key": h["_signing_key"] is not None} for h in self._hooks.by_id.values()]

    def signing_key(self, callback_url: str) -> str | None:
        """The key Calendly holds for the hook calling ``callback_url`` (Python only, never served):
        tests play Calendly and sign events of their own with it."""
        with self._lock:
            keys = [h["_signing_key"] for h in self._hooks.by_id.values() if h["callback_url"] == callback_url]
        return keys[-1] if keys else None

    def requests_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def add_fault(self, method: str | None = None, path_prefix: str = "/", status: int | None = None, count: int = 1,
                  retry_after: float | None = None, ratelimit_reset: float | None = None,
                  hang_seconds: float | None = None, close: bool = False, skip: int = 0) -> None:
        """Queue a fault for the next ``count`` API requests matching ``method`` and ``path_prefix``
        (after letting ``skip`` of them through: a fault in the middle of a run)."""
        if ratelimit_reset is not None:
            status = 429
        if status is None and not hang_seconds and not close:
            raise ValueError("a fault needs status, ratelimit_reset, hang_seconds or close")
        if status is not None and (int(status) not in set(HTTPStatus) or not 400 <= int(status) <= 599):
            raise ValueError("status must be an HTTP 4xx or 5xx code")
        if int(count) < 1:
            raise ValueError("count must be at least 1")
        if int(skip) < 0:
            raise ValueError("skip must not be negative")
        fault = {"method": method.upper() if method else None, "path_prefix": path_prefix or "/",
                 "status": None if status is None else int(status), "count": int(count),
                 "retry_after": retry_after, "ratelimit_reset": ratelimit_reset,
                 "hang_seconds": float(hang_seconds or 0), "close": bool(close), "skip": int(skip)}
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_rate_limit(self, limit: int | None = None, window: float | None = None, enforce: bool | None = None) -> dict:
        """Change Calendly's rate limit (``limit`` requests per ``window`` seconds; ``enforce``:
        answer 429 past it) and start a fresh window. Returns the settings."""
        with self._lock:
            rate = dict(self._rate)
            if limit is not None:
                if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                    raise ValueError("limit must be a positive integer")
                rate["limit"] = limit
            if window is not None:
                if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 86400:
                    raise ValueError("window must be between 0 and 86400 seconds")
                rate["window"] = float(window)
            if enforce is not None:
                if not isinstance(enforce, bool):
                    raise ValueError("enforce must be true or false")
                rate["enforce"] = enforce
            self._rate = rate
            self._window_start, self._window_used = 0.0, 0
            return dict(rate)

    def add_hook(self, url: str, events: list[str], scope: str = "organization", user: str | None = None,
                 group: str | None = None, signing_key: str | None = None, state: str = "active") -> dict:
        """Create a hook from Python (no request logged or counted), as ``POST /webhook_subscriptions``
        would: for tests and benchmarks that need thousands. ``user`` defaults to the PAT's owner."""
        if scope == "user" and user is None:
            user = self.user_uri
        body = {"url": url, "events": events, "organization": self.organization_uri, "scope": scope, "user": user,
                "group": group, "signing_key": signing_key}
        with self._lock:
            epoch = self._epoch
        hook = self._create({k: v for k, v in body.items() if v is not None}, epoch)
        return self.set_state(hook["uri"].rsplit("/", 1)[1], state) if state != "active" else hook

    def set_state(self, hook_id: str, state: str) -> dict:
        """Enable or disable a hook as Calendly does after 24 hours of failed deliveries."""
        if state not in ("active", "disabled"):
            raise ValueError("state must be active or disabled")
        with self._lock:
            hook = self._hooks.by_id[hook_id]
            hook.update(state=state, updated_at=_now(), retry_started_at=_now() if state == "disabled" else None)
            return _public(hook)

    def remove(self, hook_id: str) -> None:
        """Make a hook vanish without telling anyone."""
        with self._lock:
            self._hooks.remove(hook_id)

    def simulate(self, event: str | None = None, webhook: str | None = None, payload: dict | None = None,
                 envelope: dict | None = None, repeat: int = 1) -> dict:
        """POST a signed event to every active hook subscribed to it (or only to hook ``webhook``),
        as Calendly would; ``repeat`` sends the identical bytes again."""
        if envelope is not None and not isinstance(envelope, dict):
            raise ValueError("envelope must be a JSON object")
        if envelope is None:
            if event not in EVENT_TYPES:
                raise ValueError(f"unknown Calendly event {event!r}")
            envelope = sample_events.envelope(event, self.base_url, user_uri=self.user_uri,
                                              organization_uri=self.organization_uri, **(payload or {}))
        event = envelope.get("event")
        self.remember(envelope)
        if not 1 <= repeat <= 100:
            raise ValueError("repeat must be between 1 and 100")
        with self._lock:
            if webhook is not None and webhook not in self._hooks.by_id:
                raise LookupError(f"no hook {webhook}")
            targets = [dict(h) for key, h in self._hooks.by_id.items()
                       if webhook in (None, key) and h["state"] == "active" and event in h["events"]]
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        deliveries = []
        with requests.Session() as session:
            session.trust_env = False  # Calendly posts straight to the callback, never through a local proxy
            for hook in targets:
                headers = {"Content-Type": "application/json", "User-Agent": "Calendly-Sandbox"}
                if hook["_signing_key"] is not None:
                    headers[signatures.HEADER] = signatures.sign(body, hook["_signing_key"])
                for _ in range(repeat):  # a repeat is the very same request, as a duplicate delivery would be
                    deliveries.append(_deliver(session, hook, body, headers))
        return {"deliveries": deliveries, "envelope": envelope}

    def remember(self, envelope: dict) -> None:
        """Keep an invitee event's invitee and scheduled event, so they can be read back by URI."""
        payload = envelope.get("payload")
        if not str(envelope.get("event", "")).startswith("invitee.") or not isinstance(payload, dict):
            return
        base = len(self.base_url)
        with self._lock:
            scheduled = payload.get("scheduled_event")
            if isinstance(scheduled, dict) and str(scheduled.get("uri", "")).startswith(self.base_url):
                self._resources[scheduled["uri"][base:]] = scheduled
            if str(payload.get("uri", "")).startswith(self.base_url):  # Calendly's invitee resource names its event by URI
                self._resources[payload["uri"][base:]] = {k: v for k, v in payload.items() if k != "scheduled_event"}

    def simulate_reschedule(self, order: str = "cancel_first", webhook: str | None = None) -> dict:
        """A reschedule as Calendly sends it: ``invitee.canceled`` for the old invitee (``rescheduled``,
        ``new_invitee`` set) and ``invitee.created`` for the new one (``old_invitee`` set), each POSTed
        signed to the hooks subscribed to it, in ``order`` (``cancel_first`` or ``create_first``)."""
        if order not in ("cancel_first", "create_first"):
            raise ValueError("order must be cancel_first or create_first")
        canceled, created = sample_events.reschedule(self.base_url, user_uri=self.user_uri,
                                                     organization_uri=self.organization_uri)
        pair = (canceled, created) if order == "cancel_first" else (created, canceled)
        sent = [self.simulate(envelope=envelope, webhook=webhook) for envelope in pair]
        return {"deliveries": [{**d, "event": env["event"]} for env, one in zip(pair, sent, strict=True) for d in one["deliveries"]],
                "envelopes": list(pair)}

    # WSGI -----------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        parts = [p for p in (environ.get("PATH_INFO") or "/").split("/") if p]
        try:
            if parts[:1] != ["_sandbox"] and self._owner_of(environ) is not self:
                return self._owner_of(environ)(environ, start_response)
            raw = self._read(environ)
            route = self._control if parts[:1] == ["_sandbox"] else self._api
            status, body, *extra = route(environ, method, parts, raw)
            headers = extra[0] if extra else {}
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        except _Drop:
            from waitress.channel import ClientDisconnected

            raise ClientDisconnected() from None  # waitress closes the socket without writing a byte
        except Exception:  # noqa: BLE001 - like Calendly, never leak a traceback
            failure = _error(500)
            status, body, headers = failure.status, failure.body, failure.headers
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        out = [("Content-Length", str(len(data))), *headers.items()]
        if body is not None:
            out.append(("Content-Type", "application/json; charset=utf-8"))
        start_response(f"{status} {HTTPStatus(status).phrase}", out)
        return [data]

    @staticmethod
    def _read(environ) -> bytes:
        try:
            return read_request(environ).body
        except BadRequest as exc:
            raise _invalid("body", str(exc)) from None

    @staticmethod
    def _json(raw: bytes) -> dict:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise _invalid("body", "is not valid JSON") from None
        if not isinstance(data, dict):
            raise _invalid("body", "must be a JSON object")
        return data

    # Control endpoints -----------------------------------------------------------------
    def _control(self, environ, method: str, parts: list[str], raw: bytes) -> tuple[int, dict | None]:
        try:
            return self._control_route(method, parts[1:], raw)
        except (ValueError, TypeError) as exc:
            raise _error(400, message=str(exc)) from None
        except LookupError:
            raise _error(404) from None

    def _control_route(self, method: str, parts: list[str], raw: bytes) -> tuple[int, dict | None]:
        match (method, *parts):
            case ("POST", "organizations"):
                other = self.add_organization(str(self._json(raw).get("pat") or ""))
                return 201, {"n": len(self.organizations), "organization": other.organization_uri, "user": other.user_uri}
            case (_, "organizations", n, *rest) if n.isdigit() and 1 <= int(n) <= len(self.organizations):
                return self.organizations[int(n) - 1]._control_route(method, rest, raw)
            case ("POST", "simulate"):
                spec = self._json(raw)
                if spec.get("event") == "reschedule":  # both halves, as Calendly sends a reschedule
                    return 200, self.simulate_reschedule(str(spec.get("order") or "cancel_first"), spec.get("webhook"))
                return 200, self.simulate(spec.get("event"), spec.get("webhook"), spec.get("payload"),
                                          spec.get("envelope"), int(spec.get("repeat", 1)))
            case ("GET", "requests"):
                return 200, {"requests": self.requests_log()}
            case ("POST", "reset"):
                self.reset(bool(self._json(raw).get("keep_hooks")))
                return 200, {"ok": True}
            case ("GET", "hooks"):
                return 200, {"hooks": self.hooks()}
            case ("PATCH", "hooks", hook_id):
                return 200, {"resource": self.set_state(hook_id, str(self._json(raw).get("state")))}
            case ("DELETE", "hooks", hook_id):
                self.remove(hook_id)
                return 204, None
            case ("POST", "faults"):
                spec = self._json(raw)
                if spec.pop("clear", False):
                    self.clear_faults()
                else:
                    self.add_fault(**spec)
                return 200, {"ok": True}
            case ("POST", "ratelimit"):
                spec = self._json(raw)
                unknown = set(spec) - {"limit", "window", "enforce"}
                if unknown:
                    raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
                return 200, self.set_rate_limit(**spec)
            case ("POST", "members"):
                spec = self._json(raw)
                return 201, {"resource": self.add_member(str(spec.get("email") or ""), spec.get("name"), spec.get("role", "user"))}
            case ("POST", "token"):
                spec = self._json(raw)
                pat, granted = spec.get("pat"), spec.get("scopes")
                if not isinstance(pat, str) or not pat:
                    raise ValueError("pat must be a non-empty string")
                if granted is not None and (not isinstance(granted, list) or not all(isinstance(s, str) for s in granted)):
                    raise ValueError("scopes must be a list of scope names, or null")
                self.pat = pat
                self.scopes = None if granted is None else frozenset(granted)
                return 200, {"ok": True}
        raise LookupError(parts)

    # Calendly API ----------------------------------------------------------------------
    def _api(self, environ, method: str, parts: list[str], raw: bytes) -> tuple[int, dict | None, dict]:
        with self._lock:
            epoch = self._epoch
            self._log.append({"method": method, "path": "/" + "/".join(parts),
                              "query": environ.get("QUERY_STRING", ""), "body": _redacted(raw)})
            fault = self._take_fault(method, "/" + "/".join(parts))
            rate, over = self._count_request()
        try:
            if fault:
                _inflict(fault)
            if over:
                raise _error(429, headers=rate)
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
            handler = self._route(method, parts, query, raw, epoch)
            if handler is None:
                raise _error(404)
            if environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.pat}":
                raise _error(401)
            self._check_scopes(method, "/" + "/".join(parts), raw)
            return *handler(), rate
        except _Reply as reply:
            reply.headers = {**rate, **reply.headers}  # a fault's own rate headers win
            raise

    def _check_scopes(self, method: str, path: str, raw: bytes) -> None:
        """A token with chosen scopes may make only the calls they cover (Calendly's 403 shape)."""
        if self.scopes is None:
            return
        needed = scopes.call_scopes(method, path)
        if method == "POST" and path == "/webhook_subscriptions":
            events = self._json(raw).get("events")
            needed = scopes.subscribe_scopes([e for e in events if isinstance(e, str)] if isinstance(events, list) else [])
        missing = scopes.granted(self.scopes, needed)
        if missing:
            raise _error(403, message="This operation requires the scopes listed in the 'required_scopes' array",
                         required_scopes=list(needed))

    def _count_request(self) -> tuple[dict, bool]:
        """Count one API request in the current rate-limit window (lock held): Calendly's
        ``X-RateLimit-*`` headers for the answer, and whether it is over an enforced limit."""
        now, rate = time.monotonic(), self._rate
        if not self._window_used or now >= self._window_start + rate["window"]:
            self._window_start, self._window_used = now, 0
        self._window_used += 1
        headers = {"X-RateLimit-Limit": str(rate["limit"]),
                   "X-RateLimit-Remaining": str(max(0, rate["limit"] - self._window_used)),
                   "X-RateLimit-Reset": str(max(1, math.ceil(self._window_start + rate["window"] - now)))}
        return headers, bool(rate["enforce"] and self._window_used > rate["limit"])

    def _route(self, method: str, parts: list[str], query: dict, raw: bytes, epoch: int):
        """The handler for a Calendly API route, or None."""
        match (method, *parts):
            case ("GET", "users", "me"):
                return lambda: (200, {"resource": self._me()})
            case ("POST", "webhook_subscriptions"):
                return lambda: (201, {"resource": self._create(self._json(raw), epoch)})
            case ("GET", "webhook_subscriptions"):
                return lambda: (200, self._list(query))
            case ("GET" | "DELETE", "webhook_subscriptions", hook_id):
                return lambda: self._get_or_delete(method, hook_id)
            case ("GET", "sample_webhook_data"):
                return lambda: (200, self._sample(query))
            case ("GET", "organization_memberships"):
                return lambda: (200, self._memberships(query))
            case ("GET", "event_types"):
                return lambda: (200, self._event_types(query))
            case ("GET", "scheduled_events", _) | ("GET", "scheduled_events", _, "invitees", _):
                return lambda: self._resource("/" + "/".join(parts))
        return None

    def _resource(self, path: str) -> tuple[int, dict]:
        with self._lock:
            resource = self._resources.get(path)
        if resource is None:
            raise _error(404)
        return 200, {"resource": resource}

    def _get_or_delete(self, method: str, hook_id: str) -> tuple[int, dict | None]:
        with self._lock:
            hook = self._hooks.by_id.get(hook_id)
            if hook is None:
                raise _error(404)
            if method == "GET":
                return 200, {"resource": _public(hook)}
            self._hooks.remove(hook_id)
            return 204, None

    def _take_fault(self, method: str, path: str) -> dict | None:
        for fault in self._faults:
            if fault["method"] in (None, method) and path.startswith(fault["path_prefix"]):
                if fault["skip"]:
                    fault["skip"] -= 1
                    return None
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _me(self) -> dict:
        return {"uri": self.user_uri, "name": sample_events.HOST_NAME, "slug": "soren-kierkegaard",
                "email": sample_events.HOST_EMAIL, "scheduling_url": "https://calendly.com/soren-kierkegaard",
                "timezone": "Europe/Copenhagen", "avatar_url": None, "created_at": "2024-01-02T03:04:05.678123Z",
                "updated_at": "2026-11-01T08:09:10.111213Z", "current_organization": self.organization_uri}

    def _organization_listing(self, organization: str | None, user: str | None, query: dict) -> int:
        """Calendly's checks of a list by organization or user: one of them, this organization, a page size 1-100."""
        if not organization and not user:
            raise _invalid("organization", "organization or user is required")
        if organization and organization != self.organization_uri:
            raise _error(403, message="This user is not in your organization")
        count = query.get("count", "20")
        if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= 100:
            raise _invalid("count", "must be between 1 and 100")
        return int(count)

    def _event_types(self, query: dict) -> dict:
        """``GET /event_types?user=…|organization=…[&count][&page_token]``: the PAT owner's two event
        types, and at organization scope also a colleague's, in name order (keyset tokens as for hooks)."""
        organization, user = query.get("organization"), query.get("user")
        count = self._organization_listing(organization, user, query)
        colleague = f"{self.base_url}/users/{uuid.uuid5(uuid.NAMESPACE_URL, self.organization_uri)}"
        types = [(self.user_uri, "Café consultation — 30 min", "cafe-consultation"), (self.user_uri, "Demo call", "demo-call"),
                 (colleague, "Support session", "support-session")]
        matching = sorted(({"uri": f"{self.base_url}/event_types/{uuid.uuid5(uuid.NAMESPACE_URL, self.organization_uri + slug)}",
                            "name": name, "slug": slug, "active": True, "kind": "solo",
                            "scheduling_url": f"https://calendly.com/sandbox/{slug}",
                            "profile": {"type": "User", "owner": owner, "name": "Host"}}
                           for owner, name, slug in types if organization or owner == user), key=lambda t: str(t["name"]))
        window, next_token = _keyset_page(matching, query.get("page_token"), count)
        return {"collection": window,
                "pagination": {"count": len(window), "next_page": None, "previous_page": None,
                               "next_page_token": next_token, "previous_page_token": None}}

    def _memberships(self, query: dict) -> dict:
        """``GET /organization_memberships?organization=…[&email=…][&user=…]``: one page (keyset tokens as for hooks)."""
        organization, user, email = query.get("organization"), query.get("user"), query.get("email")
        count = self._organization_listing(organization, user, query)
        owner = {"uri": f"{self.base_url}/organization_memberships/{self._owner_membership_id}", "role": "owner",
                 "user": {k: v for k, v in self._me().items() if k != "current_organization"},
                 "organization": self.organization_uri,
                 "updated_at": "2026-11-01T08:09:10.111213Z", "created_at": "2024-01-02T03:04:05.678123Z"}
        with self._lock:
            members = [owner, *self._members.values()]
        matching = [m for m in members if (not email or m["user"]["email"].lower() == email.lower())
                    and (not user or m["user"]["uri"] == user)]
        window, next_token = _keyset_page(matching, query.get("page_token"), count)
        link = (f"{self.base_url}/organization_memberships?"
                f"{urlencode({k: v for k, v in query.items() if k != 'page_token'} | {'count': count, 'page_token': next_token})}"
                if next_token else None)
        return {"collection": window,
                "pagination": {"count": len(window), "next_page": link, "previous_page": None,
                               "next_page_token": next_token, "previous_page_token": None}}

    def _scope(self, data: dict) -> tuple[str, str, str | None, str | None]:
        """organization, scope, user, group of a create body or a list/sample query."""
        organization, scope = data.get("organization"), data.get("scope")
        details = []
        if not organization or not isinstance(organization, str):
            details.append({"parameter": "organization", "message": "is required"})
        if scope not in SCOPES:
            details.append({"parameter": "scope", "message": f"must be one of: {', '.join(SCOPES)}"})
        user = data.get("user") if scope == "user" else None
        group = data.get("group") if scope == "group" else None
        for name, value in (("user", user), ("group", group)):
            if scope == name and (not value or not isinstance(value, str)):
                details.append({"parameter": name, "message": f"is required for {name} scope"})
        if details:
            raise _error(400, details)
        if organization != self.organization_uri:
            raise _error(403)
        return str(organization), str(scope), user, group

    def _create(self, data: dict, epoch: int) -> dict:
        url, events, key = data.get("url"), data.get("events"), data.get("signing_key")
        details = []
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            details.append({"parameter": "url", "message": "is required and must be an http(s) URL"})
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            details.append({"parameter": "events", "message": "is required"})
        elif unknown := [e for e in events if e not in EVENT_TYPES]:
            details.append({"parameter": "events", "message": f"unknown events: {', '.join(unknown)}"})
        elif len(set(events)) != len(events):
            details.append({"parameter": "events", "message": "must not contain duplicates"})
        if key is not None and (not isinstance(key, str) or not key):
            details.append({"parameter": "signing_key", "message": "must be a non-empty string"})
        if details:
            raise _error(400, details)
        assert isinstance(url, str) and isinstance(events, list)  # checked above (for the type checker)
        organization, scope, user, group = self._scope(data)
        if scope != "organization" and (refused := sorted(ORGANIZATION_ONLY & set(events))):
            raise _invalid("events", f"{', '.join(refused)} requires organization scope")
        with self._lock:
            if self._hooks.url_taken(url, (organization, scope, user, group)):
                raise _error(409)
            hook_id, now = str(uuid.uuid4()), _now()
            hook = {"uri": f"{self.base_url}/webhook_subscriptions/{hook_id}", "callback_url": url, "created_at": now,
                    "updated_at": now, "retry_started_at": None, "state": "active", "events": list(events),
                    "scope": scope, "organization": organization, "user": user, "group": group,
                    "creator": self.user_uri, "_signing_key": key, "_seq": next(self._seq)}
            if epoch == self._epoch:
                self._hooks.add(hook_id, hook)
            return _public(hook)

    def _list(self, query: dict) -> dict:
        organization, scope, user, group = self._scope(query)
        count = query.get("count", "20")
        if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= 100:
            raise _invalid("count", "must be between 1 and 100")
        count = int(count)
        sort = query.get("sort", "created_at:asc")
        if sort not in ("created_at:asc", "created_at:desc"):
            raise _invalid("sort", "must be created_at:asc or created_at:desc")
        sign = 1 if sort.endswith(":asc") else -1
        # Keyset tokens (position = sort key of an edge row) stay correct when hooks are deleted
        # between pages, as reconciliation does.
        direction, position = _read_token(query.get("page_token"))
        with self._lock:
            seqs = self._hooks.in_scope((organization, scope, user, group))
            ordered = seqs if sign == 1 else [-seq for seq in reversed(seqs)]  # ascending sort keys
            if direction == "after":
                start = bisect.bisect_right(ordered, position)
                keys = ordered[start:start + count]
            else:
                end = bisect.bisect_left(ordered, position)
                keys = ordered[max(0, end - count):end]
            window = [(key, _public(self._hooks.by_seq(sign * key))) for key in keys]
            first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
        next_token = previous_token = None
        if window and last is not None and window[-1][0] < last:
            next_token = _token("after", window[-1][0])
        if window and first is not None and window[0][0] > first:
            previous_token = _token("before", window[0][0])

        def link(token: str | None) -> str | None:
            if token is None:
                return None
            params = {k: v for k, v in query.items() if k != "page_token"} | {"count": count, "page_token": token}
            return f"{self.base_url}/webhook_subscriptions?{urlencode(params)}"

        return {"collection": [hook for _, hook in window],
                "pagination": {"count": len(window), "next_page": link(next_token), "previous_page": link(previous_token),
                               "next_page_token": next_token, "previous_page_token": previous_token}}

    def _sample(self, query: dict) -> dict:
        event = query.get("event")
        if event not in EVENT_TYPES:
            raise _invalid("event", f"must be one of: {', '.join(EVENT_TYPES)}")
        self._scope(query)
        return sample_events.envelope(event, self.base_url, user_uri=self.user_uri,
                                      organization_uri=self.organization_uri)


def _deliver(session: requests.Session, hook: dict, body: bytes, headers: dict) -> dict:
    delivery = {"webhook": hook["uri"], "callback_url": hook["callback_url"], "status": None, "error": None,
                "response": None}
    try:
        # Calendly counts a redirect as a failure, so never follow one.
        response = session.post(hook["callback_url"], data=body, headers=headers, allow_redirects=False,
                                timeout=(_CONNECT_TIMEOUT, _READ_TIMEOUT))
        delivery.update(status=response.status_code, response=response.text[:_RESPONSE_EXCERPT])
    except requests.RequestException as exc:
        delivery["error"] = f"{type(exc).__name__}: {exc}"[:_RESPONSE_EXCERPT]
    return delivery


def _public(hook: dict) -> dict:
    return {k: v for k, v in hook.items() if not k.startswith("_")}


def _redacted(raw: bytes):
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    if isinstance(body, dict) and "signing_key" in body:
        body["signing_key"] = "***"
    return body


def _inflict(fault: dict) -> None:
    if fault["hang_seconds"]:
        time.sleep(fault["hang_seconds"])
    if fault["close"]:
        raise _Drop()
    headers = {}
    if fault["retry_after"] is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    if fault["ratelimit_reset"] is not None:
        headers.update({"X-RateLimit-Limit": _LIMIT_PER_MINUTE, "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(fault["ratelimit_reset"])})
    if fault["status"] is not None:
        raise _error(fault["status"], headers=headers)


def _token(direction: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{position}".encode()).decode().rstrip("=")


def _read_token(token: str | None) -> tuple[str, int]:
    if not token:
        return "after", -(2 ** 63)
    try:
        direction, position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        if direction in ("after", "before"):
            return direction, int(position)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        pass
    raise _invalid("page_token", "is invalid")


def _keyset_page(items: list, page_token: str | None, count: int) -> tuple[list, str | None]:
    """One page of ``items`` after (or before) the position ``page_token`` names, and the next token."""
    direction, position = _read_token(page_token)
    indexed = list(enumerate(items))
    window = ([pair for pair in indexed if pair[0] > position][:count] if direction == "after"
              else [pair for pair in indexed if pair[0] < position][-count:])
    next_token = _token("after", window[-1][0]) if window and window[-1][0] < len(items) - 1 else None
    return [item for _, item in window], next_token


class Sandbox(BackgroundServer):
    """The sandbox on a real socket: ``with Sandbox() as s: s.url, s.app.simulate(...)``."""

    def __init__(self, pat: str | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(SandboxApp(pat or os.environ.get("SANDBOX_PAT") or DEFAULT_PAT), host, port, threads=8)

    def start(self) -> Sandbox:
        super().start()
        self.app.base_url = self.url
        return self


def main_sandbox(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared sandbox", description="Run the local Calendly API v2 stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--pat", default=os.environ.get("SANDBOX_PAT") or DEFAULT_PAT, help="the token it accepts")
    parser.add_argument("--organization-pat", action="append", default=[], metavar="PAT",
                        help="serve another Calendly organization whose token is PAT (repeatable): a second account")
    args = parser.parse_args(argv)
    import waitress

    app = SandboxApp(args.pat)
    server = waitress.create_server(app, host=args.host, port=args.port, threads=8, ident="calendly-sandbox")
    app.base_url = f"http://{args.host}:{server.effective_port}"
    for pat in args.organization_pat:
        app.add_organization(pat)
    print(f"Calendly sandbox on {app.base_url} (set CALENDLY_API_BASE to it); PAT: {args.pat}"
          + "".join(f"; another organization's PAT: {pat}" for pat in args.organization_pat), flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def main_simulate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared simulate", description="Make the sandbox fire a signed event.")
    parser.add_argument("event", choices=[*EVENT_TYPES, "reschedule"], metavar="EVENT",
                        help=", ".join(EVENT_TYPES) + ", or reschedule (both halves, as Calendly sends one)")
    parser.add_argument("--order", choices=["cancel_first", "create_first"], default="cancel_first",
                        help="reschedule only: which half Calendly sends first")
    parser.add_argument("--sandbox-url", default=os.environ.get("SANDBOX_URL", f"http://127.0.0.1:{DEFAULT_PORT}"))
    parser.add_argument("--webhook", help="only this hook (its uuid)")
    parser.add_argument("--repeat", type=int, default=1, help="send the identical bytes N times")
    args = parser.parse_args(argv)
    url = f"{args.sandbox_url.rstrip('/')}/_sandbox/simulate"
    try:
        response = requests.post(url, json={"event": args.event, "webhook": args.webhook, "repeat": args.repeat,
                                            "order": args.order}, timeout=(5, 120))
    except requests.RequestException as exc:
        print(f"error: the sandbox at {args.sandbox_url} is not reachable ({type(exc).__name__}); start it with "
              "`python -m shared sandbox` or `python -m shared serve --sandbox`", file=sys.stderr)
        return 2
    try:
        result = response.json()
    except ValueError:
        result = None
    if response.status_code != 200 or not isinstance(result, dict):
        print(f"error: the sandbox answered {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 2
    if not result["deliveries"]:
        print(f"{args.event}: no active hook is subscribed to it")
    for delivery in result["deliveries"]:
        outcome = delivery["status"] if delivery["status"] is not None else delivery["error"]
        print(f"{delivery.get('event', args.event)} -> {delivery['callback_url']}: {outcome} {delivery['response'] or ''}".rstrip())
    return 0
