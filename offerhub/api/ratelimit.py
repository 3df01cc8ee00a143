"""Fixed-window rate limits per API key, or per client IP without a valid key (API.md §1.8).

Counters live in the default cache: Redis when REDIS_URL is set (shared by every web
node), process memory in embedded mode. A cache outage fails open: the API keeps
serving and /health/detailed reports Redis as degraded.
"""

import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    window: int
    remaining: int
    reset_at: int  # Unix seconds when the window resets
    exceeded: bool

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


def client_ip(request) -> str:
    """REMOTE_ADDR, or the address the configured number of trusted proxies saw."""
    proxies = settings.OFFERHUB_TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR", "unknown")


def rate_limit_hit(*, bucket: str, limit: int | None = None, window: int | None = None) -> RateLimitState:
    """Count one request against `bucket` and say whether it is over the limit."""
    limit = limit or settings.OFFERHUB_RATE_LIMIT_PER_MINUTE
    window = window or settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    window_start = int(now // window) * window
    reset_at = window_start + window
    key = f"ratelimit:{bucket}:{window_start}"
    try:
        cache.add(key, 0, timeout=window + 5)
        count = cache.incr(key)
    except Exception:
        logger.warning("rate limit store unavailable; allowing the request", exc_info=True)
        return RateLimitState(limit=limit, window=window, remaining=limit, reset_at=reset_at, exceeded=False)
    return RateLimitState(
        limit=limit, window=window, remaining=max(0, limit - count), reset_at=reset_at, exceeded=count > limit
    )
