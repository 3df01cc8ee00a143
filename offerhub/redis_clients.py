"""This process's blocking Redis client (REDIS_URL): one connection pool shared by its threads."""

from django.conf import settings

_client = None


def redis_client():
    """Created on first use; callers check that REDIS_URL is set."""
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    return _client
