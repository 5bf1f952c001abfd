"""The app the durable tests serve: one plain WSGI app and one plain ASGI app, same routes.

No framework: what is under test is the middleware and its store across
processes, so the apps stay a few lines each and import nothing heavy.
Both read their Small Transfers settings from ``SMALL_TRANSFERS_*`` (the
store from ``SMALL_TRANSFERS_STORE``) and any other middleware keywords, as
JSON, from ``DURABLE_OPTIONS``.

Routes (every answer is JSON with the customer, the charge and the pid):

- ``/health``, ``/free``: free.
- ``/paid``: 3000 micros; ``?amount=N`` sets ``capture_micros`` (authorize-capture).
- ``/work``: 10000 micros, the same ``?amount=N``: the concurrent test's route.
- ``/held?gate=PATH``: 3000 micros; writes ``PATH.entered`` once the charge is
  authorized, then holds its answer until ``PATH`` exists (at most 60 s), so a
  test can change the world (stop Redis) while a paid request is in flight.

``wsgi`` and ``asgi`` are built on first access (module ``__getattr__``):
gunicorn only ever asks for ``wsgi``, uvicorn for ``asgi``, and neither
process opens a store for the adapter it does not serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI

PRICING = {"/paid": 3000, "/held": 3000, "/work": 10_000}
GATE_LIMIT = 60.0

# The middleware's own log lines (charges, captures, store outages) are what
# the tests read back from the server's log: INFO and up, to stderr, with the
# pid so that two processes in one log stay apart.
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(levelname)s %(message)s"))
_log = logging.getLogger("st_middleware")
_log.addHandler(_handler)
_log.setLevel(logging.INFO)
_log.propagate = False  # gunicorn may configure the root logger too: one line each


def _options() -> dict[str, Any]:
    options: dict[str, Any] = json.loads(os.environ.get("DURABLE_OPTIONS", "{}"))
    return options


def _answer(path: str, query: str, environ_or_scope: Any) -> tuple[int, bytes]:
    customer = environ_or_scope.get("smalltransfers.customer")
    charge = environ_or_scope.get("smalltransfers.charge")
    amounts = parse_qs(query).get("amount")
    if charge is not None and amounts:
        charge.capture_micros = int(amounts[0])
    body = {
        "path": path,
        "pid": os.getpid(),
        "customer": customer.id if customer is not None else None,
        "charge": charge.id if charge is not None else None,
        "capture_micros": charge.capture_micros if charge is not None else None,
    }
    return 200, json.dumps(body).encode()


def _gate(query: str) -> Path | None:
    gates = parse_qs(query).get("gate")
    return Path(gates[0]) if gates else None


# -- WSGI -------------------------------------------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, query = environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
    gate = _gate(query) if path == "/held" else None
    if gate is not None:
        Path(f"{gate}.entered").touch()
        deadline = time.monotonic() + GATE_LIMIT
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # a sync worker has nothing else to do meanwhile
    status, body = _answer(path, query, environ)
    start_response(f"{status} OK", [("Content-Type", "application/json")])
    return [body]


# -- ASGI -------------------------------------------------------------------------------


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        # Answered so that uvicorn runs the lifespan, and with it the
        # middleware's last capture round at shutdown.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, query = scope["path"], scope.get("query_string", b"").decode("latin-1")
    gate = _gate(query) if path == "/held" else None
    if gate is not None:
        Path(f"{gate}.entered").touch()
        deadline = time.monotonic() + GATE_LIMIT
        while not gate.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    status, body = _answer(path, query, scope)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name not in ("wsgi", "asgi"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        if name == "wsgi":
            _built[name] = SmallTransfersWSGI(_wsgi_app, pricing=PRICING, **_options())
        else:
            _built[name] = SmallTransfersASGI(
                _asgi_app,  # type: ignore[arg-type]  # a plain dict scope is what servers send
                pricing=PRICING,
                **_options(),
            )
    return _built[name]
