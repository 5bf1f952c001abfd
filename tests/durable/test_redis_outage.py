"""Redis killed under two running servers, then started again on the same port.

Two server processes (gunicorn + WSGI and uvicorn + ASGI), authorize-capture,
one Redis persisting every write (``appendfsync always``). When Redis dies:

- a priced request answers 503 ``store_unavailable`` with ``Retry-After``
  (sign-out cannot be checked, so nobody is signed in), never a 500, and
  nothing is charged;
- a free request runs, with customer ``None``;
- a paid request already past its authorization when Redis died still gets
  its capture: it cannot be recorded, so it is sent at once (and logged);
- a capture that was waiting in the outbox for a retry waits for Redis.

When Redis is back: the waiting capture is taken up (the figure printed is
how long after the restart), new captures go through the outbox again, a
sign-out recorded before the outage still holds, and a new one holds on the
other process. In the end every paid answer has exactly one capture.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from durable_support import (
    CAPTURES,
    CaptureCalls,
    Served,
    Servers,
    captured,
    clears_session,
    get,
    log_lines,
    signed_in_cookie,
    wait_for,
)
from redis_server import RedisServer

from st_middleware._store import open_store
from st_middleware.emulator import Emulator
from st_middleware.testing import ledger, new_customer

pytestmark = pytest.mark.slow

OPTIONS: dict[str, Any] = {"charge_mode": "authorize-capture", "timeout": 2.0}
RETRY_AFTER = "5"  # the middleware's default retry_after


def _sign_out(served: Served, cookie: str) -> None:
    with served.client() as client:
        out = client.post(
            "/smalltransfers/sign-out", headers={"Cookie": cookie}, follow_redirects=False
        )
    assert out.status_code == 303


def _paid(served: Served, cookie: str) -> str:
    answer = get(served, "/paid", cookie)
    assert answer.status_code == 200, answer.text
    charge_id: str = answer.json()["charge"]
    return charge_id


def test_a_redis_outage_answers_503_keeps_captures_and_recovers(
    emulator: Emulator, redis_server: RedisServer, servers: Servers, tmp_path: Path
) -> None:
    url = redis_server.url
    store = open_store(url).sync
    calls = CaptureCalls(emulator)
    alice, bob = new_customer(emulator), new_customer(emulator)
    try:
        a, b = servers.start_many(("gunicorn", url, "a", OPTIONS), ("uvicorn", url, "b", OPTIONS))
        alice_cookie = signed_in_cookie(a, emulator, alice)
        bob_cookie = signed_in_cookie(b, emulator, bob)
        paid = [_paid(a, alice_cookie), _paid(b, alice_cookie)]
        _sign_out(a, bob_cookie)  # recorded in Redis before the outage

        # A capture retrying when Redis goes: Small Transfers fails captures for now.
        emulator.set_faults(error="server_error", path=CAPTURES)
        waiting = _paid(a, alice_cookie)
        paid.append(waiting)
        wait_for(
            lambda: [e.attempts >= 1 for e in store.captures()] == [True],
            10,
            "the capture to fail once and wait in the outbox",
        )

        # A paid request in flight: authorized, its answer held by the app.
        gate = tmp_path / "gate"
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(get(b, "/held", alice_cookie, gate=str(gate)))
        )
        holder.start()
        wait_for(lambda: Path(f"{gate}.entered").exists(), 10, "the held request to be charged")
        rows_before = len(ledger(emulator))

        redis_server.stop()  # SIGKILL
        emulator.clear_faults()
        for served in (a, b):
            for cookie in (alice_cookie, bob_cookie):
                priced = get(served, "/paid", cookie)
                assert priced.status_code == 503, (served.name, priced.text)
                assert priced.json()["code"] == "store_unavailable"
                assert priced.headers["Retry-After"] == RETRY_AFTER
                free = get(served, "/free", cookie)
                assert free.status_code == 200
                assert free.json()["customer"] is None
            assert get(served, "/free").json()["customer"] is None  # no cookie at all
        assert len(ledger(emulator)) == rows_before  # the 503s charged nothing

        # The held answer ends during the outage: its capture is sent at once.
        gate.touch()
        holder.join(timeout=30)
        (answer,) = held
        assert answer.status_code == 200
        at_once = answer.json()["charge"]
        paid.append(at_once)
        wait_for(lambda: captured(emulator, at_once), 10, "the unrecorded capture")
        assert log_lines(b, "could not be recorded")
        assert captured(emulator, waiting) is None  # still waiting for the store

        redis_server.start()  # same port, the append-only file read back
        restarted_at = time.monotonic()
        wait_for(lambda: captured(emulator, waiting), 30, "the waiting capture")
        resumed = time.monotonic() - restarted_at

        # Everything works again: charges and captures through the outbox...
        paid += [_paid(a, alice_cookie), _paid(b, alice_cookie)]
        # ...the sign-out from before the outage still holds, on both processes...
        for served in (a, b):
            refused = get(served, "/paid", bob_cookie)
            assert refused.status_code == 401
            assert clears_session(refused)
        # ...and a new sign-out holds on the other process.
        _sign_out(b, alice_cookie)
        assert get(a, "/paid", alice_cookie).status_code == 401

        wait_for(
            lambda: all(captured(emulator, cid) for cid in paid) and store.captures() == [],
            30,
            "every capture confirmed and the outbox empty",
        )
        print(
            f"\nFIGURE outage/redis: the capture waiting in the outbox was captured "
            f"{resumed:.1f} s after Redis came back; {len(paid)} paid answers, "
            f"{calls.total('captured')} captures"
        )
        for charge_id in paid:
            assert calls.of(charge_id).get("captured") == 1, charge_id
        assert calls.total("captured") == len(paid)
        assert len(ledger(emulator)) == len(paid)
        for served in (a, b):
            assert log_lines(served, "state store is unavailable"), served.tail()
            assert " 500 " not in served.text()
    finally:
        store.close()
