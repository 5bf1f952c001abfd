"""Apps that fail only after their response was delivered (test_stack_after_response.py).

- ``asgi``: FastAPI, authorize-capture on ``/metered/*``; handlers set the
  amount to capture, answer 200, and leave a background task that raises, or
  one that takes 2 s (its start and end are read back at ``/probe/tasks``).
- ``wsgi``: a bare WSGI app whose body's ``close()`` raises after the last
  chunk was written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request

from st_middleware import Price, SmallTransfersASGI, SmallTransfersWSGI, charge_of

PRICING = {"/metered/*": Price(5000, mode="authorize-capture")}
SLOW_TASK_SECONDS = 2.0

api = FastAPI()
TASKS: dict[str, float] = {}


@api.get("/health")
async def health() -> str:
    return "ok"


@api.get("/probe/tasks")
async def tasks() -> dict[str, float]:
    return TASKS


def capture(request: Request, micros: int) -> None:
    charge = charge_of(request)
    assert charge is not None
    charge.capture_micros = micros


def explode() -> None:
    raise RuntimeError("the background task failed after the response was delivered")


async def dawdle() -> None:
    TASKS["started"] = time.time()
    await asyncio.sleep(SLOW_TASK_SECONDS)
    TASKS["ended"] = time.time()


@api.get("/metered/task-fails")
async def task_fails(request: Request, background: BackgroundTasks) -> str:
    capture(request, 700)
    background.add_task(explode)
    return "delivered"


@api.get("/metered/task-slow")
async def task_slow(request: Request, background: BackgroundTasks) -> str:
    capture(request, 800)
    background.add_task(dawdle)
    return "delivered"


asgi = SmallTransfersASGI(api, pricing=PRICING)


class FailingClose:
    """A body whose ``close()`` raises once every chunk has gone out."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        raise RuntimeError("close() failed after the response was delivered")


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metered/close-fails":
        environ["smalltransfers.charge"].capture_micros = 600
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FailingClose([b"delivered, ", b"in two chunks"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


wsgi = SmallTransfersWSGI(_wsgi, pricing=PRICING)
