"""FastAPI websockets behind the middleware, instrumented for test_stack_websockets.py.

Every handler records, on entry and before it accepts, what it was handed
(customer, charge id and mode, the time); ``GET /probe/runs`` gives the
records back, so a test can tell that a refused handshake never reached a
handler and that the charge existed before the handler accepted.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from st_middleware import Price, SmallTransfersASGI, charge_of, customer_of

PAID_MICROS = 1000
METERED = Price(5000, mode="authorize-capture")

api = FastAPI()
RUNS: list[dict[str, Any]] = []


def enter(websocket: WebSocket) -> dict[str, Any]:
    """Record this handler run as it starts, before anything is accepted."""
    customer, charge = customer_of(websocket), charge_of(websocket)
    run = {
        "path": websocket.url.path,
        "customer": customer.id if customer is not None else None,
        "charge_id": charge.id if charge is not None else None,
        "mode": charge.mode if charge is not None else None,
        "amount_micros": charge.amount_micros if charge is not None else None,
        "before_accept": time.time(),
    }
    RUNS.append(run)
    return run


@api.get("/health")
async def health() -> str:
    return "ok"


@api.get("/probe/runs")
async def runs() -> list[dict[str, Any]]:
    return RUNS


@api.websocket("/paid/ws")
async def paid(websocket: WebSocket) -> None:
    run = enter(websocket)
    await websocket.accept()
    await websocket.send_json(run)
    try:
        while True:
            await websocket.send_text(f"echo: {await websocket.receive_text()}")
    except WebSocketDisconnect:
        pass


@api.websocket("/free/ws")
async def free(websocket: WebSocket) -> None:
    run = enter(websocket)
    await websocket.accept()
    await websocket.send_json(run)
    await websocket.close()


@api.websocket("/metered/ws")
async def metered(websocket: WebSocket) -> None:
    """Authorize-capture: the client says how much it used; the handler closes."""
    run = enter(websocket)
    await websocket.accept()
    await websocket.send_json(run)
    charge = charge_of(websocket)
    assert charge is not None
    charge.capture_micros = int(await websocket.receive_text())
    await websocket.close()


app = SmallTransfersASGI(api, pricing={"/paid/*": PAID_MICROS, "/metered/*": METERED})
