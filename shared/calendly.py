"""Calendly API v2 client: requests + urllib3's retry machinery, Calendly's errors mapped
to bridge errors (502 when Calendly refuses, 503 when it is unreachable or rate limiting)."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from .errors import BridgeError
from .secrets import PatProvider

log = logging.getLogger("shared.calendly")

USER_AGENT = "calendly-azure-trigger-bridge/1.0"
# Never make a subscribe call wait longer than this for Calendly's rate limit to reset.
MAX_RETRY_WAIT_SECONDS = 10.0


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


def _error_from(response: requests.Response) -> CalendlyError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    title = str(body.get("title") or response.reason or "error")
    message = str(body.get("message") or "")
    details = body.get("details") if isinstance(body.get("details"), list) else []
    detail = "; ".join(f"{d.get('parameter', '')}: {d.get('message', '')}".strip(": ") for d in details if isinstance(d, dict))
    said = f"Calendly answered {response.status_code} {title}" + (f": {message}" if message else "") + (f" ({detail})" if detail else "")
    status = response.status_code
    if status == 401:
        return CalendlyError(502, "calendly_unauthorized", f"{said}. Check the Calendly personal access token.", status)
    if status == 403:
        return CalendlyError(502, "calendly_forbidden", f"{said}. Organization scope needs an owner or admin PAT; some events need a higher Calendly plan.", status)
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
                 backoff_factor: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self._pat = pat
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=_retry(retries, backoff_factor), pool_maxsize=16)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.calls = 0  # API calls made (benchmarks count them)

    def close(self) -> None:
        self._session.close()

    # Transport -------------------------------------------------------------
    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url
        for attempt in (1, 2):
            token = self._pat.get()
            self.calls += 1
            started = time.monotonic()
            try:
                response = self._session.request(method, url, timeout=self._timeout, allow_redirects=False,
                                                 headers={"Authorization": f"Bearer {token}"}, **kwargs)
            except requests.RequestException as exc:
                log.warning("calendly %s %s failed: %s", method, urlsplit(url).path, type(exc).__name__)
                raise CalendlyError(503, "calendly_unavailable",
                                    f"Calendly could not be reached ({type(exc).__name__})", None, {"Retry-After": "30"}) from None
            log.info("calendly %s %s -> %s in %.0f ms", method, urlsplit(url).path, response.status_code, (time.monotonic() - started) * 1000)
            # A 401 may mean the PAT was rotated: re-read it once (Key Vault) before giving up.
            if response.status_code == 401 and attempt == 1 and self._pat.invalidate():
                continue
            return response
        return response

    def _json(self, method: str, path: str, expected: tuple[int, ...], **kwargs: Any) -> dict:
        response = self._request(method, path, **kwargs)
        if response.status_code not in expected:
            raise _error_from(response)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            raise CalendlyError(502, "calendly_bad_response", f"Calendly answered {response.status_code} with a body that is not JSON") from None
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
        params: dict[str, Any] = {"organization": organization, "count": 100, **scope_params(scope, user, group)}
        seen: set[str] = set()
        path = "/webhook_subscriptions"
        while True:
            page = self._json("GET", path, (200,), params=params)
            for item in page.get("collection") or []:
                if isinstance(item, dict):
                    yield item
            pagination = page.get("pagination") or {}
            token, next_page = pagination.get("next_page_token"), pagination.get("next_page")
            if token and token not in seen:
                seen.add(token)
                params = {**params, "page_token": token}
            elif not token and isinstance(next_page, str) and next_page not in seen:
                # Only the full URL is given: follow its path and query on *our* base URL.
                seen.add(next_page)
                parts = urlsplit(next_page)
                path, params = f"{parts.path}?{parts.query}" if parts.query else parts.path, None
                if not path.startswith("/webhook_subscriptions"):
                    return
            else:
                return

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

    def sample_webhook_data(self, *, event: str, organization: str, scope: str, user: str | None = None, group: str | None = None) -> dict:
        params: dict[str, Any] = {"event": event, "organization": organization, **scope_params(scope, user, group)}
        return self._json("GET", "/sample_webhook_data", (200,), params=params)
