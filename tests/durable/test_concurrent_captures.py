"""300 priced requests at once, one capture call in five failing: the ledger balances.

Authorize-capture on a real server with a SQLite store: uvicorn (one ASGI
process) and gunicorn's gthread worker (two WSGI processes of 32 threads, so
the outbox is shared by processes and threads). Each request captures an
amount of its own (``?amount=N``, set by the app as ``capture_micros``).

The emulator fails every fifth capture call it receives, retries included,
alternating two transient faults: ``500 server_error`` (nothing captured)
and ``drop="after"`` (captured, the answer lost: the retry must be confirmed
by ``409 charge_already_captured``). The emulator's fault plan applies to
"the next N requests", not to one in five, so the test installs a small
``Faults`` of its own that hands out those same plans to every fifth call.

In the end: every answer 200; the ledger holds exactly the 300 charges, each
captured once (one capture went through per charge, whatever the retries),
for the amount the app chose; the outbox is empty.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from durable_support import (
    CAPTURES,
    JSON,
    CaptureCalls,
    Kind,
    Servers,
    log_lines,
    signed_in_cookie,
    wait_for,
)

from st_middleware._store import SqliteStore
from st_middleware.emulator import Emulator, FaultPlan
from st_middleware.emulator.faults import Faults
from st_middleware.testing import ledger, new_customer

pytestmark = pytest.mark.slow

REQUESTS = 300
AUTHORIZED = 10_000  # the /work route's price
OPTIONS: dict[str, Any] = {"charge_mode": "authorize-capture", "timeout": 10.0}
#: Retries back off up to 60 s apart; a charge unlucky three times in a row is
#: retried within 30 s of its first attempt.
DRAIN_BOUND = 90.0


class EveryFifthCapture(Faults):
    """Fails every fifth capture call, alternately with a 500 and with a lost answer."""

    PLANS = (FaultPlan(error="server_error"), FaultPlan(drop="after"))

    def __init__(self) -> None:
        super().__init__()
        self._count_lock = threading.Lock()
        self.calls = 0
        self.injected: Counter[str] = Counter()

    def take(self, path: str) -> FaultPlan | None:
        if not (path.startswith(CAPTURES) and path.endswith("/capture")):
            return None
        with self._count_lock:
            self.calls += 1
            if self.calls % 5:
                return None
            plan = self.PLANS[(self.calls // 5) % 2]
            self.injected["server_error" if plan.error else "drop_after"] += 1
            return plan


async def _fire(origin: str, cookie: str, amounts: list[int]) -> list[httpx.Response]:
    """Every request at once: one connection each, all sent before any is awaited."""
    limits = httpx.Limits(max_connections=len(amounts) + 10, max_keepalive_connections=0)
    headers = {"Accept": JSON, "Cookie": cookie}
    async with httpx.AsyncClient(
        base_url=origin, headers=headers, limits=limits, timeout=120
    ) as client:
        return await asyncio.gather(
            *(client.get("/work", params={"amount": amount}) for amount in amounts)
        )


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn-gthread"])
def test_300_concurrent_charges_with_failing_captures_balance_the_ledger(
    emulator: Emulator, servers: Servers, tmp_path: Path, kind: Kind
) -> None:
    faults = emulator.faults = EveryFifthCapture()
    calls = CaptureCalls(emulator)
    customer = new_customer(emulator, limit_micros=100_000_000)
    store = SqliteStore(f"{tmp_path}/st.db")
    try:
        served = servers.start(kind, f"sqlite:///{tmp_path}/st.db", **OPTIONS)
        cookie = signed_in_cookie(served, emulator, customer)
        # 300 different amounts in 1..AUTHORIZED (7919 is prime to 10000).
        amounts = [1 + (i * 7919) % AUTHORIZED for i in range(REQUESTS)]

        started = time.monotonic()
        answers = asyncio.run(_fire(served.origin, cookie, amounts))
        answered = time.monotonic() - started
        assert Counter(answer.status_code for answer in answers) == {200: REQUESTS}
        wanted = {answer.json()["charge"]: answer.json()["capture_micros"] for answer in answers}
        assert sorted(wanted.values()) == sorted(amounts)  # one charge per request

        def drained() -> bool:
            rows = ledger(emulator, customer)
            return all(row.state == "captured" for row in rows) and store.captures() == []

        wait_for(drained, DRAIN_BOUND, "every capture confirmed and the outbox empty")
        drained_after = time.monotonic() - started

        got = {row.id: (row.state, row.captured_micros) for row in ledger(emulator, customer)}
        assert got == {charge: ("captured", amount) for charge, amount in wanted.items()}
        for charge in wanted:
            assert calls.of(charge).get("captured") == 1, (charge, calls.of(charge))
        assert calls.total("captured") == REQUESTS
        assert sum(micros for _, micros in got.values()) == sum(amounts)
        assert faults.injected["server_error"] >= REQUESTS // 10  # the faults did happen
        assert faults.injected["drop_after"] >= REQUESTS // 10
        # Each lost answer hid a capture that went through: its retry was a 409.
        assert calls.total("charge_already_captured") >= faults.injected["drop_after"]
        # Each outbox entry is removed just before its outcome is logged: wait for the lines.
        wait_for(
            lambda: len(log_lines(served, "charge captured")) >= REQUESTS,
            10,
            "every capture to be logged",
        )
        assert len(log_lines(served, "charge captured")) == REQUESTS
        print(
            f"\nFIGURE concurrent/{kind}: {REQUESTS} answered 200 in {answered:.1f} s, "
            f"all captured and the outbox empty after {drained_after:.1f} s; "
            f"{faults.calls} capture calls, {faults.injected['server_error']} x 500 and "
            f"{faults.injected['drop_after']} lost answers injected, "
            f"{calls.total('charge_already_captured')} retries confirmed by 409; "
            f"ledger {sum(amounts)} micros = the app's amounts"
        )
    finally:
        store.close()
