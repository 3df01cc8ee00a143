"""Fixed-window rate limits per API key, or per client IP without a valid key (API.md §1.8).

Counters live in Redis when REDIS_URL is set (shared by every web node): one round trip (SET NX
EX then INCRBY, pipelined) on a connection pool kept for the process, not the cache's client,
which a server giving each request a thread of its own would connect anew every time. In
embedded mode they live in the process's cache. A Redis outage fails open: the API keeps
serving and /health/detailed reports Redis as degraded.

Leases: a process counts a bucket's requests in Redis a few at a time. It adds `lease_size`
to the window's counter at once and admits that many requests (fewer if the limit leaves fewer)
before it asks again; a lease is at most 1/200 of the limit (64 at most), so with the default
100 a minute every request is counted at once, as before. Correctness: the counter is the sum
of what every process claimed, and a process admits no more than it claimed, so no more than
`limit` requests pass in a window, whatever the number of processes. What a process claimed
but did not use is lost when the window ends: a client spread over N processes may be refused
up to N x (lease - 1) requests early (at most 0.5 % of the limit each). X-RateLimit-Remaining
is the limit less the counter plus this process's unused claim: exact with one process, never
more than the truth with several. Once a window's counter is past the limit, this process
refuses the bucket's requests for the rest of that window without asking Redis (a counter only
grows within its window), so a flood of refused requests costs Redis nothing.
"""

import logging
import math
import threading
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


LEASE_SHARE = 200  # a lease is at most 1/LEASE_SHARE of the limit
LEASE_MAX = 64


@dataclass
class _Lease:
    counted: int  # the window's counter after this process's last claim
    unused: int  # requests claimed and not yet admitted
    exceeded: bool = False


# (bucket, limit, window, window start) -> this process's lease: a limit changed by settings is a
# bucket of its own.
_leases: dict[tuple[str, int, int, int], _Lease] = {}
_leases_lock = threading.Lock()


def lease_size(limit: int) -> int:
    return max(1, min(LEASE_MAX, limit // LEASE_SHARE))


def rate_limit_hit(*, bucket: str, limit: int | None = None, window: int | None = None) -> RateLimitState:
    """Count one request against `bucket` and say whether it is over the limit."""
    limit = limit or settings.OFFERHUB_RATE_LIMIT_PER_MINUTE
    window = window or settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    window_start = int(now // window) * window
    reset_at = window_start + window
    lease_key = (bucket, limit, window, window_start)
    with _leases_lock:
        lease = _leases.get(lease_key)
        if lease is not None and (lease.exceeded or lease.unused > 0):
            if not lease.exceeded:
                lease.unused -= 1
            return _state(limit, window, reset_at, lease)
    claim = lease_size(limit)
    try:
        count = _count(f"ratelimit:{bucket}:{window_start}", ttl=window + 5, amount=claim)
    except Exception:
        logger.warning("rate limit store unavailable; allowing the request", exc_info=True)
        return RateLimitState(limit=limit, window=window, remaining=limit, reset_at=reset_at, exceeded=False)
    granted = min(claim, limit - (count - claim))  # the claim may straddle the limit
    with _leases_lock:
        if len(_leases) >= 10_000:  # bounded: old windows and a flood of addresses are not kept
            _leases.clear()
        counted = count - claim + max(0, granted)  # what was claimed beyond the limit admits nothing
        lease = _leases.setdefault(lease_key, _Lease(counted=counted, unused=0))
        lease.counted = max(lease.counted, counted)
        if granted <= 0:
            lease.exceeded = True
        else:
            lease.unused += granted - 1  # this request takes one
        return _state(limit, window, reset_at, lease)


def _state(limit: int, window: int, reset_at: int, lease: _Lease) -> RateLimitState:
    remaining = 0 if lease.exceeded else max(0, limit - lease.counted + lease.unused)
    return RateLimitState(limit=limit, window=window, remaining=remaining, reset_at=reset_at, exceeded=lease.exceeded)


def _count(key: str, *, ttl: int, amount: int = 1) -> int:
    """This window's count for `key` after adding `amount`."""
    if not settings.REDIS_URL:
        cache.add(key, 0, timeout=ttl)
        return cache.incr(key, amount)
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(f"offerhub:{key}", 0, ex=ttl, nx=True)
    pipe.incrby(f"offerhub:{key}", amount)
    return pipe.execute()[1]
