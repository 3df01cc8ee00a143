"""gunicorn settings for the `web` service (docker/Dockerfile): HTTP through Django's WSGI app.

Worker processes with a fixed number of threads each: a request runs on a long-lived thread,
so at most WEB_THREADS requests per process use the database at once, on connections its pool
(DATABASE_POOL_MAX_SIZE, keep it at least WEB_THREADS) reuses. WebSockets (/ws/) are served by
the `ws` service (uvicorn, ASGI); the TLS proxy routes them there.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# 4: enough to keep a core busy while others wait on PostgreSQL; 8 cost the same reads 10-15 %
# more CPU each (the GIL handed between more threads) for no more throughput (docs/benchmarks.md).
threads = int(os.environ.get("WEB_THREADS", "4"))
# Provider-backed API steps wait up to OFFERHUB_SYNC_WAIT_SECONDS (55 s) for their outcome.
timeout = 90
graceful_timeout = 30
# The proxy's addresses, whose X-Forwarded-Proto is believed (Django reads it too).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
control_socket_disable = True  # no runtime control socket in the container
