"""Fixed-window rate limits per API key, or per client IP without a valid key (API.md §1.8).

Counters live in Redis when REDIS_URL is set (shared by every web node): one round trip per
request (SET NX EX then INCR, pipelined) on a connection pool kept for the process, not the
cache's client, which a server giving each request a thread of its own would connect anew
every time. In embedded mode they live in the process's cache. A Redis outage fails open: the
API keeps serving and /health/detailed reports Redis as degraded.
"""

import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from offerhub.redis_clients import redis_client

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
        count = _count(key, ttl=window + 5)
    except Exception:
        logger.warning("rate limit store unavailable; allowing the request", exc_info=True)
        return RateLimitState(limit=limit, window=window, remaining=limit, reset_at=reset_at, exceeded=False)
    return RateLimitState(
        limit=limit, window=window, remaining=max(0, limit - count), reset_at=reset_at, exceeded=count > limit
    )


def _count(key: str, *, ttl: int) -> int:
    """This window's count for `key`, this request included."""
    if not settings.REDIS_URL:
        cache.add(key, 0, timeout=ttl)
        return cache.incr(key)
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(f"offerhub:{key}", 0, ex=ttl, nx=True)
    pipe.incr(f"offerhub:{key}")
    return pipe.execute()[1]
