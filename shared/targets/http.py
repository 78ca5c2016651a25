"""HTTP target: POST Calendly's raw bytes to the flow's callback URL.

urllib3 directly (requests' own engine) because each call needs its own retry budget:
Calendly stops reading after 15 s, so all in-request attempts must fit in ~8 s.

Each attempt resolves the target's host once (``policy.vet``) and connects to exactly the vetted
address: the connection pool is keyed by that address and built with the name as SNI, as the name
the certificate must match and as the ``Host`` header. No second lookup happens between the check
and the connection, so a name that re-binds to an inner address between them (DNS rebinding) gets
no connection there.
"""
from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
import time

import urllib3
from cachetools import LRUCache
from urllib3.exceptions import HTTPError, MaxRetryError, SSLError
from urllib3.util.retry import Retry

from ..models import Delivery, HttpEndpoint, Subscription
from ..redaction import logvalue
from ..settings import Settings
from . import SendResult, forwarding_headers
from .policy import Resolver, TargetAddress, TargetRefused, vet

log = logging.getLogger("shared.targets.http")

SAID_RETRY = frozenset({429, 503})  # re-sent within an attempt only with Retry-After: the target said so
# Logic Apps and Power Automate answer 202 at once; a slower target gets one attempt per budget.
ATTEMPT_TIMEOUT = urllib3.Timeout(connect=2.0, read=4.0)
ATTEMPT_SECONDS = 6.0  # the longest one attempt can take: connect + read
USER_AGENT = "calendly-azure-trigger-bridge/1.0"


def retry_after_seconds(raw: str | None) -> float | None:
    """A ``Retry-After`` header (delay-seconds or an HTTP date, as urllib3 reads it) in seconds from
    now, or None when absent or unreadable. The delivery policy bounds it (see ``DeliveryPolicy``)."""
    if not raw:
        return None
    try:
        seconds = float(Retry.parse_retry_after(Retry(), raw))
    except Exception:  # noqa: BLE001 - InvalidHeader, and overflows of absurd dates: ignored
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class DeadlineRetry(Retry):
    """urllib3 Retry for one delivery attempt: one POST, sent again only when it certainly did not
    reach the target (the connection could not be made) or the target asked for it (``429``/``503``
    with a ``Retry-After`` that fits the budget). A read timeout, a dropped connection or any other
    answer ends the attempt: the next one comes from the retry queue with backoff, so a slow target
    never gets the same event twice within one attempt. Stops, too, when the next try might not
    finish before the deadline (Calendly stops reading after 15 s)."""

    def __init__(self, *args, deadline: float = 0.0, attempt_seconds: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.attempt_seconds = attempt_seconds

    def new(self, **kw):
        kw.setdefault("deadline", self.deadline)
        kw.setdefault("attempt_seconds", self.attempt_seconds)
        return super().new(**kw)

    def is_retry(self, method, status_code, has_retry_after=False):
        return status_code in SAID_RETRY and has_retry_after and super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response):
        """An unreadable Retry-After is ignored (urllib3 would raise InvalidHeader out of the send)."""
        return retry_after_seconds(response.headers.get("Retry-After"))

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = (new.get_retry_after(response) if response is not None else None) or new.get_backoff_time()
        if time.monotonic() + wait + new.attempt_seconds > new.deadline:
            raise MaxRetryError(_pool, url, error)
        return new


def _unreachable(reason: BaseException) -> str:
    """What a failed connection is called in ``last_error``: a category, never the address, port or
    the library's message (which would let ``last_error`` serve as a port or TLS scanner)."""
    if isinstance(reason, (SSLError, ssl.SSLError)):
        return "target unreachable: TLS failed"
    if isinstance(reason, (TimeoutError, socket.timeout, urllib3.exceptions.TimeoutError)):
        return "target unreachable: timed out"
    return "target unreachable"


class _PinnedPools(LRUCache):
    """Connection pools keyed by (scheme, vetted address, port, host name); the least recently
    used is closed when a new one would exceed ``maxsize``."""

    def popitem(self):
        key, pool = super().popitem()
        pool.close()
        return key, pool


class HttpTarget:
    POOLS = 64  # distinct (address, name) pairs kept open; each holds at most 16 idle connections

    def __init__(self, settings: Settings, resolver: Resolver | None = None, ca_certs: str | None = None):
        self._settings = settings
        self._resolver = resolver
        self._ca_certs = ca_certs  # tests: trust a local CA; otherwise the system's trust store
        self._pools: _PinnedPools = _PinnedPools(maxsize=self.POOLS)
        self._lock = threading.Lock()

    def _pool(self, target: TargetAddress, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if target.scheme == "https":
                    # SNI and the certificate check use the name; the socket goes to the address.
                    pool = urllib3.HTTPSConnectionPool(address, target.port, maxsize=16, block=False,
                                                       server_hostname=target.host, assert_hostname=target.host,
                                                       cert_reqs="CERT_REQUIRED", ca_certs=self._ca_certs)
                else:
                    pool = urllib3.HTTPConnectionPool(address, target.port, maxsize=16, block=False)
                self._pools[key] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            while self._pools:
                self._pools.popitem()

    def _retry(self, budget_seconds: float) -> DeadlineRetry:
        return DeadlineRetry(
            total=4, connect=4, read=0, status=4, other=0, redirect=0,
            backoff_factor=0.25, backoff_max=4, backoff_jitter=0.1,
            status_forcelist=frozenset(), allowed_methods=None,
            respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
            deadline=time.monotonic() + budget_seconds, attempt_seconds=ATTEMPT_SECONDS,
        )

    def send(self, sub: Subscription, delivery: Delivery, budget_seconds: float) -> SendResult:
        try:
            # Once per attempt: DNS may have changed since subscribe; the answer vetted is the one used.
            if not isinstance(sub.target, HttpEndpoint):
                raise TypeError("an HTTP target sends only to an HTTP endpoint")
            target, address = vet(sub.target.url, self._settings, self._resolver)
        except TargetRefused as exc:
            log.info("forward delivery=%s target=%s refused=%s", delivery.id, sub.target.describe(), logvalue(exc.message))
            return SendResult(False, None, exc.message)
        headers = {**forwarding_headers(sub, delivery), "Host": target.host_header, "User-Agent": USER_AGENT}
        started = time.monotonic()
        try:
            response = self._pool(target, address).urlopen(
                "POST", target.request_target, body=delivery.body, headers=headers, retries=self._retry(budget_seconds),
                timeout=ATTEMPT_TIMEOUT, redirect=False, preload_content=False, assert_same_host=False)
        except (HTTPError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            log.info("forward delivery=%s target=%s error=%s", delivery.id, sub.target.describe(), type(reason).__name__)
            return SendResult(False, None, _unreachable(reason))
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
        return SendResult(False, status, f"target answered {status}",
                          retry_after=retry_after_seconds(response.headers.get("Retry-After")))
