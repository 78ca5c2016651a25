"""Per-caller limits on the management routes that spend the PAT's Calendly rate limit.

Every subscribe, unsubscribe and test event costs calls against the one PAT's Calendly budget
(about 500 a minute) that every maker and reconcile share, so one caller must not be able to spend
it all. A moving one-minute window per signed-in maker (admins and key holders are the operators;
in function_key mode every caller shares the key, so no one is limited) — the ``limits`` library,
in this worker's memory:
past it, ``429 rate_limited`` with ``Retry-After``. Per worker: with N instances a caller may make
N times the limit, still far below Calendly's.
"""
from __future__ import annotations

import math
import time

from .errors import BridgeError


class CallerLimits:
    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        if per_minute:
            from limits import RateLimitItemPerMinute
            from limits.storage import MemoryStorage
            from limits.strategies import MovingWindowRateLimiter

            self._item = RateLimitItemPerMinute(per_minute)
            self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def spend(self, caller_key: str) -> None:
        """Count one Calendly-spending call of ``caller_key``; a 429 when its minute is used up."""
        if not self.per_minute:
            return
        if not self._limiter.hit(self._item, "calendly", caller_key):
            reset = self._limiter.get_window_stats(self._item, "calendly", caller_key).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            raise BridgeError(429, "rate_limited",
                              f"at most {self.per_minute} subscribe, unsubscribe and test calls a minute per caller "
                              f"(they spend the bridge's shared Calendly budget); retry in {wait} s",
                              {"Retry-After": str(wait)})
