"""Settings load in both modes, and production refuses unsafe configurations."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
from django.conf import settings
django.setup()
from offerhub.celery import app
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "pool": settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
    "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
    "health_checks": settings.DATABASES["default"].get("CONN_HEALTH_CHECKS"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "eager": app.conf.task_always_eager,
    "broker": app.conf.broker_url.split("://")[0],
    "sandbox_app": "sandbox.apps.SandboxConfig" in settings.INSTALLED_APPS,
    "sandbox_providers": settings.SANDBOX_PROVIDERS,
    "horizon": settings.STELLAR_HORIZON_URL,
    "debug": settings.DEBUG,
}, default=lambda value: f"{value.__module__}.{value.__qualname__}"))
"""

PRODUCTION_SECRET_KEY = "q7-Vn2wZb4Lr9sKd0XyT6eJh1UcMa8PgF3oRiN5tBz_WlYxEvD"
WALLET_KEYS = {"OFFERHUB_WALLET_KEYS": "0mE1Vj2S0jvcJ2yo3LZi3SoJbtzT4hy-nXeDdOcOxH8="}
REAL_PROVIDERS = {
    "TRUSTLESS_WORK_API_URL": "https://dev.api.trustlesswork.example",
    "OFFERHUB_AIRTM_BASE_URL": "https://api.airtm.example/v2",
    "STELLAR_HORIZON_URL": "https://horizon.stellar.example",
}


def load_settings(**variables) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only these variables set."""
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "offerhub.settings",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_embedded_defaults_with_no_variables():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["cache"].endswith("LocMemCache")
    assert loaded["channels"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["eager"] is True
    assert loaded["broker"] == "memory"
    assert loaded["sandbox_app"] is True
    assert loaded["sandbox_providers"] == ["airtm", "stellar", "trustlessWork"]
    assert loaded["horizon"] == "http://127.0.0.1:8000/sandbox/horizon"


def test_port_moves_the_embedded_sandbox_urls():
    loaded = json.loads(load_settings(PORT="9123").stdout)
    assert loaded["horizon"] == "http://127.0.0.1:9123/sandbox/horizon"


def test_full_mode_uses_postgresql_and_redis():
    result = load_settings(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/offerhub", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["engine"] == "offerhub.postgresql"  # Django's, checking only idle pooled connections
    assert loaded["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert loaded["channels"] == "channels_redis.core.RedisChannelLayer"
    assert loaded["eager"] is False
    assert loaded["broker"] == "redis"


def test_postgresql_connections_are_pooled_and_bounded_by_default():
    postgres = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/offerhub"}
    loaded = json.loads(load_settings(**postgres, OFFERHUB_SANDBOX="false").stdout)
    assert loaded["pool"]["max_size"] == 10
    assert loaded["pool"]["timeout"] == 10
    assert loaded["conn_max_age"] == 0  # never kept per thread: under ASGI each request has its own
    # The pool checks a connection that sat idle before a request gets it (offerhub.postgresql).
    assert loaded["engine"] == "offerhub.postgresql" and loaded["health_checks"] is False
    # No `reset` callback: it would hand every returned connection to a pool thread.
    assert "reset" not in loaded["pool"]
    # The sandbox served in-process takes a connection of its own while a request calls it.
    assert json.loads(load_settings(**postgres).stdout)["pool"]["max_size"] == 25
    assert json.loads(load_settings(**postgres, DATABASE_POOL_TIMEOUT="2.5").stdout)["pool"]["timeout"] == 2.5


def test_pool_can_be_turned_off_for_pgbouncer_and_refuses_per_thread_connections_beside_it():
    postgres = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/offerhub"}
    loaded = json.loads(load_settings(**postgres, DATABASE_POOL_MAX_SIZE="0", DATABASE_CONN_MAX_AGE="60").stdout)
    assert loaded["pool"] is None
    assert loaded["conn_max_age"] == 60
    assert loaded["engine"] == "django.db.backends.postgresql" and loaded["health_checks"] is True
    refused = load_settings(**postgres, DATABASE_CONN_MAX_AGE="60")
    assert refused.returncode != 0
    assert "cannot be combined with the connection pool" in refused.stderr


def test_production_refuses_to_start_without_secret_key():
    result = load_settings(DEBUG="false", OFFERHUB_SANDBOX="false", **WALLET_KEYS, **REAL_PROVIDERS)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_refuses_a_short_or_repetitive_secret_key():
    production = {"DEBUG": "false", "OFFERHUB_SANDBOX": "false", **WALLET_KEYS, **REAL_PROVIDERS}
    for weak in ("k", "x" * 49, "ab" * 30):
        result = load_settings(SECRET_KEY=weak, **production)
        assert result.returncode != 0, weak
        assert "SECRET_KEY is too weak" in result.stderr


def test_production_refuses_to_start_on_sandbox_providers():
    result = load_settings(
        DEBUG="false",
        SECRET_KEY=PRODUCTION_SECRET_KEY,
        OFFERHUB_AIRTM_BASE_URL=REAL_PROVIDERS["OFFERHUB_AIRTM_BASE_URL"],
        **WALLET_KEYS,
    )
    assert result.returncode != 0
    assert "sandbox providers" in result.stderr
    assert "stellar, trustlessWork" in result.stderr


def test_production_refuses_to_start_without_wallet_keys():
    result = load_settings(DEBUG="false", SECRET_KEY=PRODUCTION_SECRET_KEY, OFFERHUB_SANDBOX="false", **REAL_PROVIDERS)
    assert result.returncode != 0
    assert "OFFERHUB_WALLET_KEYS is not set" in result.stderr


def test_production_starts_with_secret_key_and_real_providers():
    result = load_settings(
        DEBUG="false", SECRET_KEY=PRODUCTION_SECRET_KEY, OFFERHUB_SANDBOX="false", **WALLET_KEYS, **REAL_PROVIDERS
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is False
    assert loaded["sandbox_app"] is False
    assert loaded["sandbox_providers"] == []
