"""HTTP target: POST Calendly's raw bytes to the flow's callback URL.

urllib3 directly (requests' own engine) because each call needs its own retry budget:
Calendly stops reading after 15 s, so all in-request attempts must fit in ~8 s.
"""
from __future__ import annotations

import logging
import time

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

from ..models import Delivery, Subscription
from ..settings import Settings
from . import SendResult, forwarding_headers
from .policy import TargetRefused, check_target_url

log = logging.getLogger("shared.targets.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Logic Apps and Power Automate answer 202 at once; a slower target gets one attempt per budget.
ATTEMPT_TIMEOUT = urllib3.Timeout(connect=2.0, read=4.0)
ATTEMPT_SECONDS = 6.0  # the longest one attempt can take: connect + read
USER_AGENT = "calendly-azure-trigger-bridge/1.0"


class DeadlineRetry(Retry):
    """urllib3 Retry that also stops when the next attempt might not finish before a deadline
    (Calendly stops reading after 15 s and counts that as a failed delivery)."""

    def __init__(self, *args, deadline: float = 0.0, attempt_seconds: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.attempt_seconds = attempt_seconds

    def new(self, **kw):
        kw.setdefault("deadline", self.deadline)
        kw.setdefault("attempt_seconds", self.attempt_seconds)
        return super().new(**kw)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = (new.get_retry_after(response) if response is not None else None) or new.get_backoff_time()
        if time.monotonic() + wait + new.attempt_seconds > new.deadline:
            raise MaxRetryError(_pool, url, error)
        return new


class HttpTarget:
    def __init__(self, settings: Settings, pool: urllib3.PoolManager | None = None):
        self._settings = settings
        self._pool = pool or urllib3.PoolManager(num_pools=64, maxsize=16, block=False,
                                                  headers={"User-Agent": USER_AGENT})

    def _retry(self, budget_seconds: float) -> DeadlineRetry:
        return DeadlineRetry(
            total=4, connect=4, read=1, status=4, other=0, redirect=0,
            backoff_factor=0.25, backoff_max=4, backoff_jitter=0.1,
            status_forcelist=RETRY_STATUSES, allowed_methods=None,
            respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
            deadline=time.monotonic() + budget_seconds, attempt_seconds=ATTEMPT_SECONDS,
        )

    def send(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> SendResult:
        url = sub.target.url
        try:
            check_target_url(url, self._settings)  # again at delivery time: DNS may have changed
        except TargetRefused as exc:
            return SendResult(False, None, exc.message)
        started = time.monotonic()
        try:
            response = self._pool.request("POST", url, body=delivery.body, headers=forwarding_headers(sub, delivery),
                                          retries=self._retry(budget_seconds), timeout=ATTEMPT_TIMEOUT,
                                          redirect=False, preload_content=False)
        except (HTTPError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            log.info("forward delivery=%s target=%s error=%s", delivery.id, sub.target.describe(), type(reason).__name__)
            return SendResult(False, None, f"target unreachable ({type(reason).__name__})")
        try:
            response.drain_conn()
        finally:
            response.release_conn()
        status = response.status
        elapsed = (time.monotonic() - started) * 1000
        log.info("forward delivery=%s target=%s status=%s ms=%.0f", delivery.id, sub.target.describe(), status, elapsed)
        if 200 <= status < 300:
            return SendResult(True, status)
        if status in (404, 410):
            return SendResult(False, status, f"target answered {status}: the flow is gone", gone=True)
        retry_after = None
        raw = response.headers.get("Retry-After")
        if raw:
            try:
                retry_after = max(0.0, float(raw))
            except ValueError:
                retry_after = None
        return SendResult(False, status, f"target answered {status}", retry_after=retry_after)
