"""Serve HTTP and WebSockets with background jobs, as `make run` does.

Embedded mode (no REDIS_URL): tasks run in-process, so only Celery beat runs beside
the server, executing periodic jobs itself. Full mode: a worker with an embedded
beat. Production runs these as separate processes instead (docker/compose.yaml).
With --seed, the demo data is loaded once the server listens: it needs the sandbox
providers, which this same server serves. The address (and the demo logins) are printed once,
when everything is ready: after the server listens and the demo data is in (or failed to load:
then the error is printed too). A start-up slower than STARTUP_WAIT_SECONDS is said as well.
"""

import io
import logging
import signal
import subprocess
import sys
import threading
import time
import traceback

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

STARTUP_WAIT_SECONDS = 30  # then the console says the server is not ready yet (and still prints it once it is)


class Command(BaseCommand):
    help = "Serve OfferHub (ASGI: HTTP + WebSocket) with its background jobs."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-jobs", action="store_true", help="Do not start Celery beat/worker.")
        parser.add_argument("--seed", action="store_true", help="Load the demo data once the server listens.")

    def handle(self, *args, host, port, no_jobs, seed, **options):
        self.jobs = None if no_jobs else self._start_jobs()
        server = uvicorn.Server(
            # Open event streams never end by themselves: they get a few seconds on shutdown.
            uvicorn.Config(
                "offerhub.asgi:application",
                host=host,
                port=port,
                log_level="info",
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        # uvicorn's own "running on" line would come before the demo data is ready: ours replaces it.
        logging.getLogger("uvicorn.error").addFilter(_NoRunningOnLine())
        seed_command = "seed_demo" if seed else None
        threading.Thread(target=self._ready_when_up, args=(server, host, port, seed_command), daemon=True).start()
        # uvicorn shuts down on SIGTERM/SIGINT, then re-raises the signal to the handler
        # installed before it: this one, so the background jobs stop with the server.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._exit)
        try:
            server.run()
        finally:
            self._stop_jobs()

    def _exit(self, signum, frame):
        self._stop_jobs()
        sys.exit(0)

    def _stop_jobs(self) -> None:
        jobs, self.jobs = self.jobs, None
        if jobs is not None and jobs.poll() is None:
            jobs.send_signal(signal.SIGTERM)
            try:
                jobs.wait(timeout=10)
            except subprocess.TimeoutExpired:
                jobs.kill()

    def _ready_when_up(
        self,
        server: uvicorn.Server,
        host: str,
        port: int,
        seed_command: str | None,
        *,
        wait_seconds: float = STARTUP_WAIT_SECONDS,
    ) -> None:
        """Print the address once the server listens and `seed_command` (the demo data) ran: said
        plainly when start-up takes longer than `wait_seconds`, or when the demo data failed."""
        address = f"http://{host}:{port}/"
        deadline, told = time.monotonic() + wait_seconds, False
        while not (server.started or server.should_exit):
            if not told and time.monotonic() > deadline:
                self.stderr.write(f"OfferHub is not ready yet after {wait_seconds:g} s: still starting on {address}")
                told = True
            time.sleep(0.05)
        if not server.started:
            return  # uvicorn said why (the port is taken, …)
        seeded, failed = io.StringIO(), None
        if seed_command:
            try:
                call_command(seed_command, stdout=seeded, stderr=self.stderr)
            except Exception as error:  # the server runs on: say so, with what the seed printed and why it stopped
                failed = error
                self.stderr.write(traceback.format_exc())
            finally:
                connection.close()
        where = f"{address}  (admin: /admin/, API: /api/v1/)"
        if failed is None:
            lines = [self.style.SUCCESS(f"OfferHub is ready on {where}")]
        else:
            lines = [
                self.style.WARNING(f"OfferHub is running on {where}, but the demo data failed to load:"),
                self.style.ERROR(f"  {type(failed).__name__}: {failed}"),
            ]
        lines += [line for line in seeded.getvalue().splitlines() if line.strip()]
        self.stdout.write("\n" + "\n".join(lines) + "\n")

    def _start_jobs(self) -> subprocess.Popen:
        # --quiet: no banner (the configuration it shows is in the settings); the jobs still log.
        celery = [sys.executable, "-m", "celery", "-A", "offerhub", "--quiet"]
        schedule = ["--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME]
        if settings.CELERY_TASK_ALWAYS_EAGER:
            command = [*celery, "beat", "--loglevel", "INFO", *schedule]
        else:
            command = [*celery, "worker", "--beat", "--loglevel", "INFO", "--concurrency", "2", *schedule]
        self.stdout.write(f"Background jobs: {' '.join(command[2:])}")
        return subprocess.Popen(command, preexec_fn=_die_with_parent)


class _NoRunningOnLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Uvicorn running on")


def _die_with_parent() -> None:
    """Linux: the jobs get SIGTERM if this process dies without a chance to stop them (kill -9)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
