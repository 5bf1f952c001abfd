"""The state store in the request flow: sign-out everywhere, captures never lost, outages.

In-process, both adapters, a real emulator; several middlewares sharing one
store stand for several workers. Real servers, SIGKILL and several processes
are in tests/stacks/test_store_servers.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import JSON, PRICE, Site, charges, sign_in
from st_middleware import CaptureEntry, StoreUnavailable
from st_middleware._captures import backoff
from st_middleware._store import MemoryStore, SqliteStore

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., Site]


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def settle(site: Site, condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for the capture worker (a thread in WSGI, a task on this loop in ASGI)."""
    import anyio

    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.05)


# -- sign-out holds on every worker sharing the store --------------------------------------


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
async def test_sign_out_on_one_worker_holds_on_the_others(
    make_site: MakeSite, emu: Any, customer: Any, tmp_path: Path, engine: str
) -> None:
    shared: Any = MemoryStore() if engine == "memory" else f"sqlite:///{tmp_path}/st.db"
    one, two = make_site(store=shared), make_site(store=shared)
    await sign_in(one, emu, customer)
    copy = dict(one.jar)
    assert (await one.get("/paid", accept=JSON)).status == 200
    out = await one.post("/smalltransfers/sign-out")
    assert out.status == 303
    two.jar.update(copy)  # the same cookie, presented to another worker
    replay = await two.get("/paid", accept=JSON)
    assert replay.status == 401
    cleared = replay.session_cookie()
    assert cleared is not None
    assert cleared.clears
    two.jar.update(copy)
    free = await two.get("/free", accept=JSON)
    assert free.json()["customer"] is None
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]


async def test_a_new_sign_in_after_sign_out_works(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site()
    await sign_in(site, emu, customer)
    await site.post("/smalltransfers/sign-out")
    await sign_in(site, emu, customer)
    assert (await site.get("/paid", accept=JSON)).status == 200


async def test_a_re_sealed_copy_is_the_same_session(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    """Rotation re-seals the cookie; signing out one copy signs out both."""
    old = make_site(session_secret="o" * 32)
    await sign_in(old, emu, customer)
    store = MemoryStore()
    rotated = make_site(session_secret=["n" * 32, "o" * 32], store=store)
    rotated.jar.update(old.jar)
    original = dict(old.jar)
    assert (await rotated.get("/free", accept=JSON)).sets_session()  # re-sealed
    await rotated.post("/smalltransfers/sign-out")
    rotated.jar.update(original)
    assert (await rotated.get("/paid", accept=JSON)).status == 401


# -- the store unavailable ---------------------------------------------------------------------


class DownStore(MemoryStore):
    """A store whose engine is unreachable (every call fails)."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("get", "put", "add", "take", "delete", "incr", "enqueue", "claim"):

            def down(*args: Any) -> Any:
                raise StoreUnavailable("store down (test)")

            return down
        return super().__getattribute__(name)


async def test_with_the_store_down_priced_is_503_and_free_is_anonymous(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_site()
    await sign_in(good, emu, customer)
    down = make_site(store=DownStore())
    down.jar.update(good.jar)
    priced = await down.get("/paid", accept=JSON)
    assert priced.status == 503
    assert priced.json()["code"] == "store_unavailable"
    assert priced.header("Retry-After") == "5"
    free = await down.get("/free", accept=JSON)
    assert free.status == 200
    assert free.json()["customer"] is None
    assert charges(emu, customer) == []
    assert "state store is unavailable" in caplog.text


async def test_with_the_store_down_fail_open_serves_uncharged(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    good = make_site()
    await sign_in(good, emu, customer)
    down = make_site(store=DownStore(), fail_open=True)
    down.jar.update(good.jar)
    reply = await down.get("/paid", accept=JSON)
    assert reply.status == 200
    assert reply.json()["charge"] is None
    assert charges(emu, customer) == []


async def test_sign_out_with_the_store_down_still_clears_the_cookie(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_site()
    await sign_in(good, emu, customer)
    down = make_site(store=DownStore())
    down.jar.update(good.jar)
    out = await down.post("/smalltransfers/sign-out")
    assert out.status == 303
    assert "could not be recorded" in caplog.text


async def test_with_the_store_down_a_capture_is_sent_once_at_once(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    site = make_site(store=store, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    # Only the outbox fails: the sign-out check works, the capture cannot be recorded.
    store.enqueue = _down  # type: ignore[method-assign]
    assert (await site.get("/paid", accept=JSON)).status == 200
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]
    assert "could not be recorded" in caplog.text


def _down(*args: Any) -> None:
    raise StoreUnavailable("store down (test)")


# -- captures: recorded, retried, confirmed ----------------------------------------------------


async def test_a_capture_failing_three_times_is_captured_once(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    site = make_site(store=store, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    caplog.set_level(logging.INFO, logger="st_middleware")
    emu.set_faults(error="maintenance_mode", path="/api/v1/charges/", count=3)
    started = time.monotonic()
    assert (await site.get("/paid", accept=JSON)).status == 200
    await settle(site, lambda: charges(emu, customer)[0].state == "captured")
    took = time.monotonic() - started
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]
    assert store.captures() == []
    assert caplog.text.count("retrying in") == 3
    assert took < 10  # 0.25-0.5 s, then 0.5-1 s, then 1-2 s: well within 30 s


async def test_a_terminal_answer_ends_the_retries(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    store = MemoryStore()
    failed: list[Any] = []
    site = make_site(store=store, charge_mode="authorize-capture", on_charge_failed=failed.append)
    await sign_in(site, emu, customer)
    emu.set_faults(error="charge_voided", path="/api/v1/charges/", count=1)
    assert (await site.get("/paid", accept=JSON)).status == 200
    (entry,) = store.captures()
    assert (entry.state, entry.attempts) == ("failed", 1)
    assert entry.last_error is not None
    assert "charge_voided" in entry.last_error
    assert [e.outcome for e in failed] == ["capture_failed"]
    assert [e.code for e in failed] == ["charge_voided"]


async def test_the_outbox_holds_no_plain_token(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    store = MemoryStore()
    site = make_site(store=store, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    emu.set_faults(error="server_error", path="/api/v1/charges/", count=1)
    await site.get("/paid", accept=JSON)
    (entry,) = store.captures()
    session, _ = site.mw._core.cookies._sessions.open(site.session_value, int(time.time()))
    payload = entry.payload.decode()
    assert '"sealed_token":"gAAAAA' in payload
    assert session.access_token not in payload
    await settle(site, lambda: store.captures() == [])


async def test_a_capture_left_by_a_dead_process_is_resumed(
    make_site: MakeSite, emu: Any, customer: Any, tmp_path: Path
) -> None:
    """A first worker records the capture and dies before sending it; the next one sends it."""
    url = f"sqlite:///{tmp_path}/st.db"
    first = make_site(store=url, charge_mode="authorize-capture", timeout=0.5)
    await sign_in(first, emu, customer)
    # The first process dies with the capture recorded and leased but never answered:
    # every capture attempt of it is dropped on the floor.
    emu.set_faults(drop="before", path="/api/v1/charges/")
    first.mw._start_captures = lambda: None  # a process that dies has no worker either
    assert (await first.get("/paid", accept=JSON)).status == 200
    emu.clear_faults()
    assert charges(emu, customer)[0].state == "authorized"
    second = make_site(store=url, charge_mode="authorize-capture", timeout=0.5)
    await second.get("/free", accept=JSON)  # its first request starts its worker
    await settle(second, lambda: charges(emu, customer)[0].state == "captured", seconds=15)
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]
    assert SqliteStore(f"{tmp_path}/st.db").captures() == []


def test_backoff_starts_under_a_second_doubles_and_stops_at_a_minute() -> None:
    for jitter in (0.0, 0.5, 0.999):
        delays = [backoff(n, jitter) for n in range(1, 12)]
        assert delays[0] <= 1.0
        assert sum(delays[:3]) <= 30
        assert all(b >= a for a, b in itertools.pairwise(delays))
        assert max(delays) <= 60
    assert backoff(1, 0.0) != backoff(1, 0.9)  # jitter spreads the herd


def test_capture_entries_are_exported_for_custom_stores() -> None:
    entry = CaptureEntry(
        id="k:capture",
        payload=b"{}",
        due_at=1.0,
        attempts=0,
        created_at=1.0,
        last_error=None,
        state="pending",
    )
    assert entry.leased_until == 0.0
