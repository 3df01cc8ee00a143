"""Dependency checks for /health/detailed. Each check is bounded by a short timeout and
reports `{status, latency, error?}`; none of them raises."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests
from django.conf import settings
from django.db import connections
from kombu import Connection

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
logger = logging.getLogger(__name__)


def _public_reason(exc: Exception) -> str:
    text = f"{type(exc).__name__} {exc}".lower()
    if "timeout" in text or "timed out" in text:
        return "timeout"
    if "refused" in text or "connection" in text or "resolve" in text:
        return "unreachable"
    if isinstance(exc, ProviderAnswerError):
        return str(exc)
    return "error"


class ProviderAnswerError(Exception):
    """The provider answered, but with a server error."""


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        extra = check() or {}
        result = {"status": HEALTHY, **extra}
    except Exception as exc:  # a dependency being down is the answer, not an error
        # The endpoint is public: name the failure, keep hosts and messages for the log.
        logger.warning("health check failed: %s", exc)
        result = {"status": DEGRADED, "error": _public_reason(exc)}
    result["latency"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> dict:
    def ping():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"engine": connections["default"].vendor}

    result = _timed(ping)
    if result["status"] != HEALTHY:
        result["status"] = UNHEALTHY  # nothing works without the database
    return result


def check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"status": HEALTHY, "mode": "embedded (not configured)", "latency": 0.0}
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS

    def ping():
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()

    return _timed(ping)


def check_broker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL.startswith("memory://"):
        return {"status": HEALTHY, "mode": "embedded (tasks run in-process)", "latency": 0.0}
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS

    def connect():
        with Connection(
            settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options={"socket_timeout": timeout}
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)

    return _timed(connect)


def check_provider(base_url: str) -> dict:
    """Reachability of a provider's base URL: any answer below 500 means it is up."""
    if not base_url:
        return {"status": DEGRADED, "error": "not configured", "latency": 0.0}

    def reach():
        response = requests.get(base_url + "/", timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS, allow_redirects=False)
        if response.status_code >= 500:
            raise ProviderAnswerError(f"HTTP {response.status_code}")
        return {"sandbox": base_url.startswith(settings.SANDBOX_BASE_URL)}

    return _timed(reach)


def health_report() -> dict:
    """All checks, the network ones in parallel so the slowest dependency bounds the latency."""
    checks = {
        "redis": check_redis,
        "broker": check_broker,
        "airtm": lambda: check_provider(settings.OFFERHUB_AIRTM_BASE_URL),
        "trustlessWork": lambda: check_provider(settings.TRUSTLESS_WORK_API_URL),
        "stellar": lambda: check_provider(settings.STELLAR_HORIZON_URL),
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        # The database is checked on this thread, on the request's own connection.
        dependencies = {"database": check_database()}
        dependencies.update({name: future.result() for name, future in futures.items()})
    statuses = {dep["status"] for dep in dependencies.values()}
    overall = UNHEALTHY if UNHEALTHY in statuses else DEGRADED if DEGRADED in statuses else HEALTHY
    return {"status": overall, "dependencies": dependencies}
