"""Database connections stay bounded under bursts of requests, with the documented defaults.

Each server runs as a subprocess against the test database, exactly as deployed: the ASGI
application under uvicorn (`make run`, and the `ws` service) and the WSGI application under
gunicorn with docker/gunicorn.conf.py (the `web` service). Two bursts of concurrent page
views must all succeed while the connections the server holds, sampled from
pg_stat_activity throughout, never exceed one process's pool.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
BURST = 100
# DATABASE_POOL_MAX_SIZE's defaults (README, .env.example): `make run` serves the sandbox
# providers itself, production (docker/) does not.
DOCUMENTED_POOL_MAX_SIZE = {"uvicorn": 25, "gunicorn": 10}
SANDBOX = {"uvicorn": "true", "gunicorn": "false"}
SLACK = 2  # a connection being opened as another is closed, as pg_stat_activity sees them

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="pools PostgreSQL connections"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "offerhub.asgi:application", "--port", str(port), "--lifespan", "off"]
    # docker/Dockerfile's command, with one worker process and a loopback address.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "docker/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "offerhub.wsgi:application",
    ]


def start_server(
    kind: str, database_url: str, log: Path, environment: dict | None = None
) -> tuple[subprocess.Popen, str]:
    """Start the server, its output in `log` (a file: a pipe left unread would block it);
    `environment` adds settings (e.g. a pool size) to the documented defaults."""
    port = free_port()
    environment = {
        **(environment or {}),
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "offerhub.settings",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    with log.open("w") as output:
        server = subprocess.Popen(
            server_command(kind, port), cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if server.poll() is not None:
            pytest.fail(f"{kind} exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, url
        except OSError:
            time.sleep(0.05)
    server.kill()
    pytest.fail(f"{kind} did not listen on {url}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a local http URL)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class ConnectionSampler(threading.Thread):
    """Counts the server's connections in pg_stat_activity until stopped; keeps the peak."""

    def __init__(self, params: dict, application_name: str):
        super().__init__(daemon=True)
        self.params, self.application_name = params, application_name
        self.peak = 0
        self.stopped = threading.Event()

    def count(self, connection) -> int:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.application_name]
        ).fetchone()
        return row[0]

    def run(self):
        with psycopg.connect(**self.params, autocommit=True) as connection:
            while not self.stopped.is_set():
                self.peak = max(self.peak, self.count(connection))
                self.stopped.wait(0.02)

    def stop(self) -> int:
        self.stopped.set()
        self.join(5)
        return self.peak


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_two_bursts_of_requests_succeed_on_a_bounded_number_of_connections(kind, database, tmp_path):
    log = tmp_path / "server.log"
    server, url = start_server(kind, database["url"], log, {"OFFERHUB_SANDBOX": SANDBOX[kind]})
    sampler = ConnectionSampler(database["params"], database["name"])
    sampler.start()
    try:
        statuses = []
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            for _ in range(2):
                statuses += pool.map(status_of, [url + "/"] * BURST)
        with psycopg.connect(**database["params"], autocommit=True) as connection:
            held_after = sampler.count(connection)
    finally:
        peak = sampler.stop()
        stop_server(server)
    assert sorted(set(statuses)) == [200], log.read_text()[-3000:]
    assert peak <= DOCUMENTED_POOL_MAX_SIZE[kind] + SLACK, f"{peak} connections at the peak"
    assert held_after <= DOCUMENTED_POOL_MAX_SIZE[kind], f"{held_after} connections left open"
