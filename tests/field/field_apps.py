"""What every app of the priced-path matrix shares: prices, the side channel, the options.

The apps (``field_flask``, ``field_django``, ``field_starlette``,
``field_fastapi``) run inside real servers, in other processes, often several
worker processes each. So a handler cannot tell the test that it ran through
memory: it appends one line to the file named by ``FIELD_RAN_LOG``::

    RAN <handler> <method as the framework saw it> <cell id or -> <path as JSON>

The cell id is the ``X-Field-Cell`` header the test sends with every request,
so a line can only ever be blamed on the request that caused it. The path is
JSON because it may hold a newline, a space or a NUL once a framework decoded
it. Every handler records, free ones too, so the same file also shows how a
framework routed a target (the route map of an unwrapped app).

``FIELD_WRAP=0`` serves the bare app (no middleware); anything else wraps it
with ``**json.loads(FIELD_ST_OPTIONS)``, the test's ``emulator_options(emu)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

#: The prices of every stack, in micros.
PRICING: dict[str, int] = {"/paid": 1000, "/api/*": 500, "POST /search": 2500, "GET /report": 700}

#: The method each handler's price names (``None``: any method), as PRICING says;
#: handlers absent here are free whatever the method.
PRICED_HANDLERS: dict[str, str | None] = {
    "paid": None,
    "api": None,
    "search": "POST",
    "report": "GET",
}

SECRET_HEADER = "X-Secret-Answer"
SECRET_VALUE = "42"
CELL_HEADER = "X-Field-Cell"


def is_priced(handler: str, method: str) -> bool:
    """Whether ``handler`` running for ``method`` serves something PRICING charges for.

    The method is compared case-insensitively and HEAD counts as GET (it runs
    the GET handler and shows its headers). OPTIONS counts for every priced
    handler: the contract says an OPTIONS request to a path priced for any
    method never reaches the app unpaid.
    """
    if handler not in PRICED_HANDLERS:
        return False
    rule = PRICED_HANDLERS[handler]
    method = method.upper()
    if rule is None or method == "OPTIONS":
        return True
    return ("GET" if method == "HEAD" else method) == rule


def record(handler: str, method: str, path: str, cell: str | None) -> None:
    """Append this handler's RAN line to the side channel (one write, flushed)."""
    line = f"RAN {handler} {method} {cell or '-'} {json.dumps(path)}\n"
    # Append mode: each line is one write(2) with O_APPEND, so lines from
    # several worker processes never interleave.
    with open(os.environ["FIELD_RAN_LOG"], "a", encoding="utf-8") as log:
        log.write(line)
        log.flush()


@dataclass(frozen=True)
class Ran:
    """One RAN line read back."""

    handler: str
    method: str
    cell: str
    path: str

    @property
    def priced(self) -> bool:
        return is_priced(self.handler, self.method)

    def __str__(self) -> str:
        return f"{self.handler}({self.method} {json.dumps(self.path)})"


def parse_ran(line: str) -> Ran:
    tag, handler, method, cell, path = line.rstrip("\n").split(" ", 4)
    if tag != "RAN":
        raise ValueError(f"not a RAN line: {line!r}")
    return Ran(handler, method, cell, json.loads(path))


def wrapped() -> bool:
    """Serve the app behind the middleware (the default), or bare for the route map."""
    return os.environ.get("FIELD_WRAP", "1") != "0"


def middleware_options() -> dict[str, Any]:
    """The middleware keywords: the test's ``emulator_options(emu)`` plus PRICING."""
    options: dict[str, Any] = json.loads(os.environ["FIELD_ST_OPTIONS"])
    return {**options, "pricing": PRICING}
