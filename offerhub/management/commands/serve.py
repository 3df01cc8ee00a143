"""Serve HTTP and WebSockets with background jobs, as `make run` does.

Embedded mode (no REDIS_URL): tasks run in-process, so only Celery beat runs beside
the server, executing periodic jobs itself. Full mode: a worker with an embedded
beat. Production runs these as separate processes instead (docker/compose.yaml).
"""

import signal
import subprocess
import sys

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve OfferHub (ASGI: HTTP + WebSocket) with its background jobs."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-jobs", action="store_true", help="Do not start Celery beat/worker.")

    def handle(self, *args, host, port, no_jobs, **options):
        jobs = None if no_jobs else self._start_jobs()
        try:
            self.stdout.write(self.style.SUCCESS(f"OfferHub on http://{host}:{port}/  (admin: /admin/, API: /api/v1/)"))
            uvicorn.run("offerhub.asgi:application", host=host, port=port, log_level="info", lifespan="off")
        finally:
            if jobs is not None and jobs.poll() is None:
                jobs.send_signal(signal.SIGTERM)
                try:
                    jobs.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    jobs.kill()

    def _start_jobs(self) -> subprocess.Popen:
        celery = [sys.executable, "-m", "celery", "-A", "offerhub"]
        schedule = ["--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME]
        if settings.CELERY_TASK_ALWAYS_EAGER:
            command = [*celery, "beat", "--loglevel", "INFO", *schedule]
        else:
            command = [*celery, "worker", "--beat", "--loglevel", "INFO", "--concurrency", "2", *schedule]
        self.stdout.write(f"Background jobs: {' '.join(command[2:])}")
        return subprocess.Popen(command)
