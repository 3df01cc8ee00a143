"""A live ASGI server for tests: offerhub.asgi's application under uvicorn, in a thread."""

import socket
import threading
import time
from contextlib import contextmanager
from decimal import Decimal

import pytest
import uvicorn
from django.db import connection


def asgi_application():
    """offerhub.asgi's application (Django, the event stream, WebSockets), with static files
    served as the live server serves them."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from offerhub.asgi import application_build

    return application_build(ASGIStaticFilesHandler(get_asgi_application()))


@contextmanager
def asgi_serving():
    """uvicorn serving the application in a thread until the block ends; yields its URL. Open
    event streams are cut after two seconds at the end (as a server that restarts cuts them)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = uvicorn.Config(asgi_application(), lifespan="off", log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def asgi_server(transactional_db, settings):
    """HTTP, the event stream and WebSockets (uvicorn, in a thread), serving the sandbox providers too."""
    # Requests and tasks run on threads of their own: each closes its database connection when
    # done, so that none is left open when the test database is flushed and dropped.
    conn_max_age = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0
    try:
        with asgi_serving() as url:
            settings.STELLAR_HORIZON_URL = url + "/sandbox/horizon"
            settings.HORIZON_TIMEOUT_SECONDS = 5
            settings.TRUSTLESS_WORK_API_URL = url + "/sandbox/trustless-work"
            settings.OFFERHUB_PLATFORM_FEE_PERCENT = Decimal("5")
            yield url
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = conn_max_age
