"""Calendly API v2 client: requests + urllib3's retry machinery, Calendly's errors mapped
to bridge errors (502 when Calendly refuses, 503 when it is unreachable or rate limiting)."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from . import scopes
from .errors import BridgeError
from .secrets import PatProvider

log = logging.getLogger("shared.calendly")

USER_AGENT = "calendly-azure-trigger-bridge/1.0"
# Never make a subscribe call wait longer than this for Calendly's rate limit to reset.
MAX_RETRY_WAIT_SECONDS = 10.0
# Calendly's per-user limit on paid plans (Free: 50); its X-RateLimit-Limit header, on every
# response, overrides this as soon as one call has been made.
DEFAULT_RATE_LIMIT = 500
# Calendly counts requests per minute: X-RateLimit-Reset is at most this far away.
RATE_WINDOW_SECONDS = 60.0
PAGE_SIZE = 100  # the most hooks Calendly lists per call


class CalendlyRetry(Retry):
    """Retry 429/5xx; wait for ``Retry-After`` or Calendly's ``X-RateLimit-Reset``;
    give the 429 back to the caller instead of sleeping past MAX_RETRY_WAIT_SECONDS."""

    def get_retry_after(self, response) -> float | None:
        value = super().get_retry_after(response)
        if value is None and response.status == 429:
            try:
                value = max(0.0, float(response.headers.get("X-RateLimit-Reset", "")))
            except ValueError:
                value = None
        return value

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and (self.get_retry_after(response) or 0) > MAX_RETRY_WAIT_SECONDS:
            raise MaxRetryError(_pool, url, None)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _retry(total: int, backoff_factor: float) -> Retry:
    return CalendlyRetry(
        total=total, connect=total, read=1, status=total, other=0,
        backoff_factor=backoff_factor, backoff_max=4,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST too: a repeated create answers 409, which subscribe handles
        respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False, redirect=0,
    )


class CalendlyError(BridgeError):
    def __init__(self, status: int, code: str, message: str, calendly_status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status, code, message, headers)
        self.calendly_status = calendly_status


@dataclass(frozen=True)
class RateWindow:
    """What Calendly last said of the PAT's rate-limit window (``X-RateLimit-*`` on every answer)."""

    limit: int
    remaining: int
    resets_at: float  # time.monotonic() when the window resets
    seq: int          # which answer said it (later answers are newer)

    @classmethod
    def from_headers(cls, headers: Any, seq: int, now: float) -> RateWindow | None:
        try:
            limit = int(headers["X-RateLimit-Limit"])
            remaining = int(headers["X-RateLimit-Remaining"])
            reset = float(headers["X-RateLimit-Reset"])
        except (KeyError, TypeError, ValueError):
            return None
        if limit < 1 or not math.isfinite(reset):
            return None
        return cls(limit, max(0, min(remaining, limit)), now + max(0.0, reset), seq)


def is_rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, CalendlyError) and exc.calendly_status == 429


def _error_from(response: requests.Response) -> CalendlyError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    title = str(body.get("title") or response.reason or "error")
    message = str(body.get("message") or "")
    listed = body.get("details")
    details = listed if isinstance(listed, list) else []
    detail = "; ".join(f"{d.get('parameter', '')}: {d.get('message', '')}".strip(": ") for d in details if isinstance(d, dict))
    said = f"Calendly answered {response.status_code} {title}" + (f": {message}" if message else "") + (f" ({detail})" if detail else "")
    status = response.status_code
    if status == 401:
        return CalendlyError(502, "calendly_unauthorized", f"{said}. Check the Calendly personal access token.", status)
    if status == 403:
        return _forbidden(response, body, said, message)
    if status == 404:
        return CalendlyError(502, "calendly_not_found", said, status)
    if status == 409:
        return CalendlyError(409, "calendly_conflict", said, status)
    if status == 429:
        reset = response.headers.get("Retry-After") or response.headers.get("X-RateLimit-Reset") or "60"
        return CalendlyError(503, "calendly_rate_limited", f"{said}. Retry after {reset} s.", status, {"Retry-After": reset})
    if status >= 500:
        return CalendlyError(503, "calendly_unavailable", said, status, {"Retry-After": "30"})
    return CalendlyError(502, "calendly_rejected", said, status)


def _forbidden(response: requests.Response, body: dict, said: str, message: str) -> CalendlyError:
    """Calendly's 403 says one of three things; each gets its own error and remedy: the token lacks
    scopes (it names them in ``required_scopes``), the plan lacks the feature, or the token's owner
    lacks the role."""
    listed = body.get("required_scopes")
    required = [str(s) for s in (listed if isinstance(listed, list) else []) if isinstance(s, str)]
    request = getattr(response, "request", None)
    method, path = (request.method or "GET", urlsplit(request.url or "").path) if request is not None else ("GET", "")
    if required or "scope" in message.lower():
        missing = required or list(scopes.call_scopes(method, path)) or ["(not named by Calendly)"]
        return CalendlyError(502, "calendly_scope_missing",
                             f"{said}. The Calendly personal access token lacks a scope that {method} {path} needs "
                             f"({', '.join(missing)}): create a token with the scopes docs/deploy.md lists "
                             "(python -m shared preflight checks a token).", 403)
    if "upgrade" in message.lower() or "paid" in message.lower() or "plan" in message.lower():
        return CalendlyError(502, "calendly_plan_required",
                             f"{said}. The Calendly organization's plan does not include this event's feature "
                             "(routing forms, meeting recaps and contacts need a plan with them; webhooks themselves "
                             "are on every plan).", 403)
    return CalendlyError(502, "calendly_forbidden",
                         f"{said}. Organization and group scope need a token of an organization owner or admin; "
                         "a member's token may subscribe at user scope only.", 403)


def scope_params(scope: str, user: str | None, group: str | None) -> dict[str, str]:
    """Calendly's scope parameters: ``scope``, plus ``user`` for user scope or ``group`` for group scope."""
    params = {"scope": scope}
    if scope == "user" and user:
        params["user"] = user
    if scope == "group" and group:
        params["group"] = group
    return params


class CalendlyClient:
    def __init__(self, base_url: str, pat: PatProvider, timeout: tuple[float, float] = (3.05, 8.0), retries: int = 3,
                 backoff_factor: float = 0.5, monotonic: Callable[[], float] = time.monotonic, account: str = "default"):
        self.base_url = base_url.rstrip("/")
        self.account = account  # which Calendly account's token this client calls with (shared.accounts), for logs
        self.monotonic = monotonic  # the clock rate-limit windows are measured with
        self._pat = pat
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=_retry(retries, backoff_factor), pool_maxsize=16)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.calls = 0  # API calls made (benchmarks count them)
        self.rate: RateWindow | None = None  # Calendly's last word on the rate-limit window
        self._answers = 0
        self._thread = threading.local()

    @property
    def calls_in_this_thread(self) -> int:
        """API calls made by the current thread (a reconcile run counts its own this way)."""
        return getattr(self._thread, "calls", 0)

    def close(self) -> None:
        self._session.close()

    # Transport -------------------------------------------------------------
    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url
        for attempt in (1, 2):
            token = self._pat.get()
            self.calls += 1
            self._thread.calls = self.calls_in_this_thread + 1
            started = time.monotonic()
            try:
                response = self._session.request(method, url, timeout=self._timeout, allow_redirects=False,
                                                 headers={"Authorization": f"Bearer {token}"}, **kwargs)
            except requests.RequestException as exc:
                log.warning("calendly %s %s failed: %s account=%s", method, urlsplit(url).path, type(exc).__name__, self.account)
                raise CalendlyError(503, "calendly_unavailable",
                                    f"Calendly could not be reached ({type(exc).__name__})", None, {"Retry-After": "30"}) from None
            log.info("calendly %s %s -> %s in %.0f ms account=%s", method, urlsplit(url).path, response.status_code,
                     (time.monotonic() - started) * 1000, self.account)
            self._observe_rate(response)
            # A 401 may mean the PAT was rotated: re-read it once (Key Vault) before giving up.
            if response.status_code == 401 and attempt == 1 and self._pat.invalidate():
                continue
            return response
        return response

    def _observe_rate(self, response: requests.Response) -> None:
        self._answers += 1
        window = RateWindow.from_headers(response.headers, self._answers, self.monotonic())
        if window is not None:
            self.rate = window  # one reference swap: readers on other threads see the old or the new

    def _json(self, method: str, path: str, expected: tuple[int, ...], **kwargs: Any) -> dict:
        response = self._request(method, path, **kwargs)
        if response.status_code not in expected:
            raise _error_from(response)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            raise CalendlyError(502, "calendly_bad_response",
                                f"Calendly answered {response.status_code} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise CalendlyError(502, "calendly_bad_response", "Calendly answered with JSON that is not an object")
        return body

    def webhook_path(self, uri: str) -> str:
        """Calendly's hook URI -> a path on *our* base URL (never send the PAT elsewhere)."""
        uuid = uri.rstrip("/").rsplit("/", 1)[-1]
        if not uuid or "?" in uuid or "#" in uuid:
            raise CalendlyError(502, "calendly_bad_response", "Calendly returned a webhook URI without an id")
        return f"/webhook_subscriptions/{uuid}"

    # API ---------------------------------------------------------------
    def me(self) -> dict:
        resource = self._json("GET", "/users/me", (200,)).get("resource")
        if not isinstance(resource, dict) or not resource.get("uri") or not resource.get("current_organization"):
            raise CalendlyError(502, "calendly_bad_response", "Calendly's /users/me lacks uri or current_organization")
        return resource

    def create_webhook(self, *, url: str, events: list[str], organization: str, scope: str,
                       user: str | None, group: str | None, signing_key: str) -> dict:
        body: dict[str, Any] = {"url": url, "events": events, "organization": organization, "signing_key": signing_key,
                                **scope_params(scope, user, group)}
        resource = self._json("POST", "/webhook_subscriptions", (200, 201), json=body).get("resource")
        if not isinstance(resource, dict) or not resource.get("uri"):
            raise CalendlyError(502, "calendly_bad_response", "Calendly's webhook creation answer lacks resource.uri")
        return resource

    def list_webhooks(self, *, organization: str, scope: str, user: str | None = None, group: str | None = None) -> Iterator[dict]:
        """Every hook in the scope, following every page."""
        pages = self.webhook_pages(organization=organization, scope=scope, user=user, group=group)
        while not pages.done:
            yield from pages.fetch()

    def webhook_pages(self, *, organization: str, scope: str, user: str | None = None,
                      group: str | None = None) -> WebhookPages:
        """The scope's hooks a page (one call, up to 100 hooks) at a time."""
        return WebhookPages(self, {"organization": organization, "count": PAGE_SIZE, **scope_params(scope, user, group)})

    def get_webhook(self, uri: str) -> dict | None:
        response = self._request("GET", self.webhook_path(uri))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error_from(response)
        resource = response.json().get("resource")
        return resource if isinstance(resource, dict) else None

    def delete_webhook(self, uri: str) -> bool:
        """Delete a hook; False when Calendly no longer has it (counts as deleted)."""
        response = self._request("DELETE", self.webhook_path(uri))
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 202, 204):
            raise _error_from(response)
        return True

    def membership_by_email(self, *, organization: str, email: str) -> dict | None:
        """The organization's membership of the user with ``email`` (``GET /organization_memberships``), or None."""
        page = self._json("GET", "/organization_memberships", (200,),
                          params={"organization": organization, "email": email, "count": 1})
        for item in page.get("collection") or []:
            if isinstance(item, dict) and isinstance(item.get("user"), dict) and item["user"].get("uri"):
                return item
        return None

    def membership_of(self, *, organization: str, user: str) -> dict | None:
        """The organization's membership of ``user`` (its ``role``: user, admin or owner), or None."""
        page = self._json("GET", "/organization_memberships", (200,),
                          params={"organization": organization, "user": user, "count": 1})
        for item in page.get("collection") or []:
            if isinstance(item, dict) and item.get("role"):
                return item
        return None

    def list_members(self, *, organization: str, user: str | None = None, limit: int = 500) -> list[dict]:
        """The organization's members (or the one ``user``), up to ``limit``, as ``{uri, name, email}``."""
        params: dict[str, Any] = {"organization": organization, "count": 100, **({"user": user} if user else {})}
        found: list[dict] = []
        while len(found) < limit:
            page = self._json("GET", "/organization_memberships", (200,), params=params)
            for item in page.get("collection") or []:
                person = item.get("user") if isinstance(item, dict) else None
                if isinstance(person, dict) and isinstance(person.get("uri"), str):
                    found.append({"uri": person["uri"], "name": person.get("name"), "email": person.get("email")})
            token = (page.get("pagination") or {}).get("next_page_token")
            if not token:
                break
            params["page_token"] = token
        return found[:limit]

    def list_event_types(self, *, organization: str | None = None, user: str | None = None, limit: int = 500) -> list[dict]:
        """Active event types of a user or an organization (``GET /event_types``), up to ``limit``, as
        ``{uri, name, slug, scheduling_url}``, in Calendly's name order."""
        params: dict[str, Any] = {"active": "true", "count": 100, "sort": "name:asc"}
        params.update({"user": user} if user else {"organization": organization})
        found: list[dict] = []
        while len(found) < limit:
            page = self._json("GET", "/event_types", (200,), params=params)
            for item in page.get("collection") or []:
                if isinstance(item, dict) and isinstance(item.get("uri"), str):
                    found.append({k: item.get(k) for k in ("uri", "name", "slug", "scheduling_url")})
            token = (page.get("pagination") or {}).get("next_page_token")
            if not token:
                break
            params["page_token"] = token
        return found[:limit]

    def resource(self, path: str) -> dict:
        """``GET <path>``'s ``resource`` (e.g. ``/scheduled_events/<id>``). ``path`` is built by the caller from
        ids only: always on this client's base URL."""
        if not path.startswith("/") or "//" in path or "?" in path or "#" in path:
            raise CalendlyError(502, "calendly_bad_response", "not a Calendly API path")
        resource = self._json("GET", path, (200,)).get("resource")
        if not isinstance(resource, dict):
            raise CalendlyError(502, "calendly_bad_response", f"Calendly's {path.split('/')[1]} answer has no resource")
        return resource

    def sample_webhook_data(self, *, event: str, organization: str, scope: str, user: str | None = None, group: str | None = None) -> dict:
        params: dict[str, Any] = {"event": event, "organization": organization, **scope_params(scope, user, group)}
        return self._json("GET", "/sample_webhook_data", (200,), params=params)


class WebhookPages:
    """One scope's hooks, one call per ``fetch()``; a fetch that fails (a 429) can simply be
    made again, since the position only moves on success. ``done`` after the last page."""

    def __init__(self, client: CalendlyClient, params: dict[str, Any]):
        self._client = client
        self._path: str = "/webhook_subscriptions"
        self._params: dict[str, Any] | None = params
        self._seen: set[str] = set()
        self.done = False
        self.pages = 0

    def fetch(self) -> list[dict]:
        if self.done:
            return []
        page = self._client._json("GET", self._path, (200,), params=self._params)
        self.pages += 1
        items = [item for item in page.get("collection") or [] if isinstance(item, dict)]
        pagination = page.get("pagination") or {}
        token, next_page = pagination.get("next_page_token"), pagination.get("next_page")
        if token and token not in self._seen:
            self._seen.add(token)
            self._params = {**(self._params or {}), "page_token": token}
        elif not token and isinstance(next_page, str) and next_page not in self._seen:
            # Only the full URL is given: follow its path and query on *our* base URL.
            self._seen.add(next_page)
            parts = urlsplit(next_page)
            self._path, self._params = (f"{parts.path}?{parts.query}" if parts.query else parts.path), None
            self.done = not self._path.startswith("/webhook_subscriptions")
        else:
            self.done = True
        return items


class CallBudget:
    """One reconcile run's share of the PAT's Calendly rate limit (subscribes need the rest).

    ``allow(n)`` before making ``n`` calls. It answers True (go) after waiting, when needed, for
    Calendly's window to reset: the run only spends while Calendly reports more than
    ``(1 - share)`` of the window left, so makers' subscribes always find that much. It answers
    False (leave the work to the next run) when the run's repair calls (recreates, deletes) have
    reached ``share`` of one window, when a wait would be longer than one window or push the
    run's total wait past ``max_wait``, or after ``stop()`` (Calendly is down).
    ``rate_limited(error)`` honours a 429's ``X-RateLimit-Reset`` / ``Retry-After``."""

    def __init__(self, client: CalendlyClient, share: float, *, max_wait: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep):
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.client = client
        self.share = share
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = client.monotonic
        self.repair_calls = 0
        self.waited = 0.0
        self.waits = 0
        self.stopped: str | None = None  # why no more calls are made this run
        self.deferred: str | None = None  # why some repair was left for the next run
        self._paused_until = 0.0
        self._stale_seq = -1  # rate observations up to this one describe a window already waited out

    @property
    def limit(self) -> int:
        rate = self.client.rate
        return rate.limit if rate is not None else DEFAULT_RATE_LIMIT

    @property
    def repair_allowance(self) -> int:
        """Repair calls this run may make: ``share`` of one window (at least 1)."""
        return max(1, math.floor(self.limit * self.share))

    def allow(self, calls: int = 1, repair: bool = False) -> bool:
        if self.stopped:
            return False
        if repair and self.repair_calls + calls > self.repair_allowance:
            self.deferred = self.deferred or "repair_budget"
            return False
        wait = self._wait_for(calls)
        if wait > 0:
            if wait > RATE_WINDOW_SECONDS + 1 or self.waited + wait > self.max_wait:
                self.stop("rate_limit")
                return False
            log.info("reconcile waits %.1f s for Calendly's rate-limit window to reset", wait)
            self.sleep(wait)
            self.waited += wait
            self.waits += 1
            self._paused_until = 0.0
            self._stale_seq = self.client.rate.seq if self.client.rate is not None else -1
        if repair:
            self.repair_calls += calls
        return True

    def _wait_for(self, calls: int) -> float:
        now = self.clock()
        wait = max(0.0, self._paused_until - now)
        rate = self.client.rate
        if rate is not None and rate.seq > self._stale_seq and now < rate.resets_at:
            keep = rate.limit - math.floor(rate.limit * self.share)  # what others are left in this window
            if rate.remaining - calls < keep:
                wait = max(wait, rate.resets_at - now)
        return wait

    def rate_limited(self, exc: BridgeError) -> None:
        """Calendly answered 429 (``is_rate_limited``; past the client's own short waits): pause until it resets."""
        try:
            seconds = float(exc.headers.get("Retry-After", RATE_WINDOW_SECONDS))
        except ValueError:
            seconds = RATE_WINDOW_SECONDS
        self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason
