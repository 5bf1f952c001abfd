"""The fault cases of ``test_faults.py``, sent through the built-in transports.

``test_faults.py`` drives the middleware through a counting *httpx* transport.
Here the same test functions are collected again with a ``make`` fixture that
gives every driver the built-in transport the adapter uses by default
(:class:`~st_middleware._transport.SyncTransport` for WSGI,
:class:`~st_middleware._transport.AsyncTransport` for ASGI), counted twice:

- at its entry (``handle_request``), into the driver's ``SendLog``, which the
  cases check (each charge sent once; a connect failure retried once);
- on the wire: every request line the transport wrote to a socket, which must
  match the entries one for one, so no re-send can hide inside the transport.

Each case also checks the emulator's ledger (one row per idempotency key at
most), with drops before and after processing, latencies beyond the timeout,
malformed, huge and endless bodies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI, _transport
from st_middleware._transport import AsyncTransport, SyncTransport

from ._support import Driver, SendLog, emulator_keywords, make_driver
from .test_faults import (  # the same cases, collected again with the fixtures below
    test_authorization_fault,
    test_capture_fault,
    test_connect_failure_is_retried_once_and_only_then,
    test_transaction_fault,
)

__all__ = [
    "test_authorization_fault",
    "test_capture_fault",
    "test_connect_failure_is_retried_once_and_only_then",
    "test_transaction_fault",
]


class _Wire:
    """Request lines written to sockets by the built-in transports (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[bytes] = []


class CountedSync(SyncTransport):
    log: SendLog | None = None
    entered = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.entered += 1
        if self.log is not None:
            self.log.record(request)
        return super().handle_request(request)


class CountedAsync(AsyncTransport):
    log: SendLog | None = None
    entered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered += 1
        if self.log is not None:
            self.log.record(request)
        return await super().handle_async_request(request)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> _Wire:
    """Counts every request the transports encode: each encoding is written once."""
    found = _Wire()
    encode = _transport._encode

    def counting(request: httpx.Request) -> bytes:
        data = encode(request)
        with found.lock:
            found.lines.append(data.split(b"\r\n", 1)[0])
        return data

    monkeypatch.setattr(_transport, "_encode", counting)
    return found


@pytest.fixture
def make(emu: Any, kind: str, wire: _Wire) -> Iterator[Any]:
    """Drivers whose middleware sends through the built-in transport, counted."""
    made: list[Driver] = []
    transports: list[CountedSync | CountedAsync] = []

    def build(**options: Any) -> Driver:
        adapter = options.pop("kind", kind)
        transport = CountedSync() if adapter == "wsgi" else CountedAsync()
        driver = make_driver(adapter, emu, transport=transport, **options)
        transport.log = driver.sends
        made.append(driver)
        transports.append(transport)
        return driver

    yield build
    for driver in made:
        driver.close()
    entries = sum(t.entered for t in transports)
    # Every request that entered a transport was encoded (written) exactly once.
    assert len(wire.lines) == entries, (wire.lines, entries)


def test_without_transport_the_adapters_use_the_built_in_one(emu: Any, kind: str) -> None:
    adapter = SmallTransfersWSGI if kind == "wsgi" else SmallTransfersASGI
    mw = adapter(lambda *a: None, **emulator_keywords(emu))
    assert type(mw._transport) is (SyncTransport if kind == "wsgi" else AsyncTransport)
