"""`serve`'s start-up output: the address is printed once the server listens and the demo data is
in, and a failing demo seed or a slow start is said plainly instead of leaving the console silent."""

import io
import threading
import time
from types import SimpleNamespace

from offerhub.management.commands.serve import Command


def _command() -> tuple[Command, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Command(stdout=out, stderr=err, no_color=True), out, err


def test_a_failing_demo_seed_is_reported_and_the_address_still_printed():
    command, out, err = _command()
    listening = SimpleNamespace(started=True, should_exit=False)  # uvicorn.Server once it listens
    # No database here (the test has no access to it): the real seed_demo fails on its first query.
    command._ready_when_up(listening, "127.0.0.1", 8890, "seed_demo")
    printed = out.getvalue()
    assert "OfferHub is running on http://127.0.0.1:8890/" in printed
    assert "but the demo data failed to load:" in printed and "Database access not allowed" in printed
    assert "OfferHub is ready" not in printed
    assert "Traceback" in err.getvalue() and "seed_demo" in err.getvalue()


def test_a_slow_start_is_said_and_the_address_printed_once_it_listens():
    command, out, err = _command()
    server = SimpleNamespace(started=False, should_exit=False)
    waiting = threading.Thread(
        target=command._ready_when_up, args=(server, "127.0.0.1", 8891, None), kwargs={"wait_seconds": 0.2}
    )
    waiting.start()
    for _ in range(100):
        if err.getvalue():
            break
        time.sleep(0.05)
    assert err.getvalue().strip() == "OfferHub is not ready yet after 0.2 s: still starting on http://127.0.0.1:8891/"
    assert out.getvalue() == ""
    server.started = True
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert "OfferHub is ready on http://127.0.0.1:8891/" in out.getvalue()


def test_a_server_that_could_not_start_prints_no_address():
    command, out, err = _command()
    command._ready_when_up(SimpleNamespace(started=False, should_exit=True), "127.0.0.1", 8892, "seed_demo")
    assert out.getvalue() == "" and err.getvalue() == ""  # uvicorn itself says why (the port is taken, …)
