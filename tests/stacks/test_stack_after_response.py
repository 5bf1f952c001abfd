"""An app that finished its response is captured, even if it fails afterwards.

Authorize-capture: the visitor has the whole answer once the last body
message (ASGI) or chunk (WSGI) has gone out; what the app does after that,
a FastAPI background task that raises or takes its time, a body whose
``close()`` raises, must neither cancel the capture nor delay it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from stack_support import Served, Servers, Spec, captured_row, gunicorn, uvicorn, wait_for

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [
        Spec("uvicorn", uvicorn("stack_after_app:asgi")),
        Spec("gunicorn", gunicorn("stack_after_app:wsgi", "--worker-class", "sync")),
    ]
    return {served.spec.name: served for served in servers.start(*specs)}


@contextmanager
def signed_in(server: Served, emu: Emulator, customer: Customer) -> Iterator[httpx.Client]:
    with server.client() as client:
        kit.sign_in(client, emu, customer)
        yield client


def test_a_background_task_that_raises_after_a_delivered_200_does_not_cancel_the_capture(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["uvicorn"]
    with signed_in(server, st_emulator, st_customer) as client:
        answer = client.get("/metered/task-fails")
    assert (answer.status_code, answer.json()) == (200, "delivered")
    row = captured_row(st_emulator, st_customer)
    assert (row.authorized_micros, row.captured_micros) == (5000, 700)
    # The task did raise, after the response (the server logged it).
    wait_for(lambda: "the background task failed" in server.tail(), what="the task's error")


def test_a_slow_background_task_does_not_delay_the_capture(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["uvicorn"]
    with signed_in(server, st_emulator, st_customer) as client:
        answer = client.get("/metered/task-slow")
        answered_at = time.time()
        assert (answer.status_code, answer.json()) == (200, "delivered")
        row = captured_row(st_emulator, st_customer)
        # Seen captured while the 2 s task is still running...
        assert "ended" not in client.get("/probe/tasks").json()

        def task_over() -> dict[str, float] | None:
            tasks: dict[str, float] = client.get("/probe/tasks").json()
            return tasks if "ended" in tasks else None

        tasks = wait_for(task_over, 10, "the slow task's end")
    assert row.captured_micros == 800
    assert row.captured_at is not None
    # ...captured within a moment of the answer, and well before the task ended.
    assert row.captured_at - answered_at < 1.0
    assert tasks["ended"] - row.captured_at > 1.5


def test_wsgi_a_body_whose_close_raises_after_the_last_chunk_is_captured_under_gunicorn(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["gunicorn"]
    with signed_in(server, st_emulator, st_customer) as client:
        answer = client.get("/metered/close-fails")
    assert (answer.status_code, answer.text) == (200, "delivered, in two chunks")
    row = captured_row(st_emulator, st_customer)
    assert (row.authorized_micros, row.captured_micros) == (5000, 600)
    wait_for(lambda: "close() failed after the response" in server.tail(), what="the error")
