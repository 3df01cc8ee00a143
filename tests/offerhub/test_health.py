"""Health and config (API.md §2): a dependency down is degraded, never a 500."""

import shutil
import socket
import subprocess
import time

import pytest
import redis

HEALTHY_PROVIDERS_PATHS = {
    "OFFERHUB_AIRTM_BASE_URL": "/sandbox/airtm/v2",
    "TRUSTLESS_WORK_API_URL": "/sandbox/trustless-work",
    "STELLAR_HORIZON_URL": "/sandbox/horizon",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dependencies(client) -> tuple[int, dict]:
    response = client.get("/api/v1/health/detailed")
    return response.status_code, response.json()["data"]


def test_liveness_needs_no_key_and_checks_nothing(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "healthy"
    assert data["version"]
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(response[header]) >= 0


@pytest.mark.django_db
def test_everything_up_is_healthy(client, live_server, settings):
    for name, path in HEALTHY_PROVIDERS_PATHS.items():
        setattr(settings, name, live_server.url + path)
    status, data = dependencies(client)
    assert status == 200
    deps = data["dependencies"]
    assert deps["database"]["status"] == "healthy"
    assert {name: deps[name]["status"] for name in ("airtm", "trustlessWork", "stellar")} == dict.fromkeys(
        ("airtm", "trustlessWork", "stellar"), "healthy"
    )
    if settings.REDIS_URL:
        assert deps["redis"]["status"] == deps["broker"]["status"] == "healthy"
        assert data["status"] == "healthy"


@pytest.mark.django_db
def test_unreachable_provider_is_degraded_not_an_error(client, settings):
    settings.OFFERHUB_AIRTM_BASE_URL = f"http://127.0.0.1:{free_port()}/v2"
    status, data = dependencies(client)
    assert status == 200
    assert data["dependencies"]["airtm"]["status"] == "degraded"
    assert data["dependencies"]["airtm"]["error"]
    assert data["status"] == "degraded"


@pytest.mark.django_db
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_a_stopped_redis_is_reported_degraded(client, settings, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(50):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        settings.REDIS_URL = url
        settings.CELERY_BROKER_URL = url
        settings.CELERY_TASK_ALWAYS_EAGER = False
        _, running = dependencies(client)
        assert running["dependencies"]["redis"]["status"] == "healthy"
        assert running["dependencies"]["broker"]["status"] == "healthy"
    finally:
        server.terminate()
        server.wait(timeout=10)

    status, stopped = dependencies(client)
    assert status == 200
    assert stopped["status"] == "degraded"
    assert stopped["dependencies"]["redis"]["status"] == "degraded"
    assert stopped["dependencies"]["redis"]["error"] == "unreachable"  # no host or port on a public page
    assert stopped["dependencies"]["broker"]["status"] == "degraded"
    assert stopped["dependencies"]["database"]["status"] == "healthy"


def test_config_is_public_and_lists_limits(client, settings):
    response = client.get("/api/v1/config")
    data = response.json()["data"]
    assert data["currencies"] == ["USD"]
    assert data["limits"] == {
        "topup": {"min": "1.00", "max": "10000.00"},
        "withdrawal": {"min": "10.00", "max": "5000.00"},
        "order": {"min": "1.00", "max": "50000.00"},
    }
    # API.md §2's flags, plus the payment rails' [X] ones (OFFERHUB_PAYMENTS_PROVIDER).
    assert set(data["features"]) == {
        *("milestones", "disputes", "sse", "airtm", "trustlessWork"),
        *("cryptoDeposits", "cryptoWithdrawals"),
    }
    assert data["providers"] == {"fiat": "airtm", "escrow": "trustless_work", "payments": "hybrid"}
    for secret in (
        settings.OFFERHUB_AIRTM_API_SECRET,
        settings.OFFERHUB_AIRTM_API_KEY,
        settings.TRUSTLESS_WORK_API_KEY,
    ):
        assert secret.encode() not in response.content
