"""Hundreds of concurrent charged requests through real servers, then the ledger.

For each server kind (uvicorn + the ASGI adapter, the stdlib threaded WSGI server +
the WSGI adapter) a fresh emulator, 30 signed-in customers (6 of them with a
spending limit they run into mid-run) and 30 anonymous visitors fire 330
requests at once. Half-way through the run (by arrival), the secret is
rotated: a second middleware with ``session_secret=[new, old]`` serves the
rest, so requests still in flight on the first one overlap with it.

Then the books must balance:

- every ``2xx`` on a priced path has exactly one ledger row (matched by
  idempotency key, by count and by sum, per customer too); no key appears
  twice in the ledger or was sent twice;
- every refused answer (``401``, ``402``) has none, and the app never ran for it;
- old cookies kept working after the rotation; every answer of the new
  middleware to an old cookie re-sealed it, no answer of the old one set a
  cookie, and a re-sealed cookie opens under the new secret alone.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.emulator import Emulator

from ._support import (
    CALLBACK,
    FIGURES,
    NEW_SECRET,
    SECRET,
    SESSION_NAMES,
    SIGN_IN,
    AppLog,
    AsyncCountingTransport,
    CountingTransport,
    SendLog,
    SetCookie,
    ThreadedWSGIThread,
    UvicornThread,
    make_driver,
    recording_asgi_app,
    recording_wsgi_app,
)

pytestmark = pytest.mark.slow

PRICES = {"/paid/a": 1000, "/paid/b": 3000}
CUSTOMERS = 30
LIMITED = 6
LIMIT = 7000  # a limited customer's ten paid requests ask for 20000
PER_CUSTOMER = 10
ANONYMOUS = 30
BOUND = 60.0  # seconds per server kind: a generous bound, not a timing assertion


def _no_cookie_jar() -> CookieJar:
    """The load clients keep no cookies: every request says exactly which one it sends."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


@dataclass(frozen=True)
class Shot:
    """One request of the run."""

    who: int | None  # customer index, None: anonymous
    path: str


@dataclass(frozen=True)
class Hit:
    shot: Shot
    status: int
    key: str | None
    amount: str | None
    customer: str | None
    served_by: str
    set_cookies: tuple[str, ...]
    seconds: float = 0.0


class Switch:
    """Routes the first ``half`` counted requests to ``old``, the rest to ``new``."""

    def __init__(self, old: Any, new: Any, half: int) -> None:
        self.old, self.new, self.half = old, new, half
        self.counting = False
        self._lock = threading.Lock()
        self._count = 0

    def pick(self) -> tuple[Any, bytes]:
        if not self.counting:
            return self.old, b"old"
        with self._lock:
            self._count += 1
            late = self._count > self.half
        return (self.new, b"new") if late else (self.old, b"old")


class ASGISwitch(Switch):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await self.old.aclose()
                    await self.new.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        target, label = self.pick()

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-served-by", label)]
                message = {**message, "headers": headers}
            await send(message)

        await target(scope, receive, tagged)


class WSGISwitch(Switch):
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target, label = self.pick()

        def tagged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Served-By", label.decode())], exc_info)

        return target(environ, tagged)


def _options(emu: Emulator, secret: Any, sends: SendLog, asgi: bool) -> dict[str, Any]:
    transport = AsyncCountingTransport(sends) if asgi else CountingTransport(sends)
    return {
        "publishable_key": emu.publishable_key,
        "secret_key": emu.secret_key,
        "base_url": emu.url,
        "session_secret": secret,
        "pricing": PRICES,
        "timeout": 30.0,
        "max_connections": 16,
        "transport": transport,
    }


def _sign_in_over_http(client: httpx.Client, emu: Emulator, customer: Any) -> SetCookie:
    start = client.get(SIGN_IN, params={"next": "/"})
    assert start.status_code == 303
    query = parse_qs(urlsplit(start.headers["location"]).query)
    redirect_uri, state = query["redirect_uri"][0], query["state"][0]
    assert urlsplit(redirect_uri).path == CALLBACK
    state_cookie = SetCookie.parse(start.headers["set-cookie"])
    code = emu.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
    done = client.get(
        CALLBACK, params={"code": code, "state": state}, headers={"Cookie": state_cookie.pair}
    )
    assert done.status_code == 303, done.text[:300]
    cookies = [SetCookie.parse(v) for v in done.headers.get_list("set-cookie")]
    session = [c for c in cookies if c.name in SESSION_NAMES and not c.clears]
    assert len(session) == 1
    return session[0]


def _hit(shot: Shot, response: httpx.Response, seconds: float = 0.0) -> Hit:
    def header(name: str) -> str | None:
        value = response.headers.get(name)
        return None if value in (None, "-") else value

    return Hit(
        shot=shot,
        status=response.status_code,
        key=header("x-charge-key"),
        amount=header("x-charge-amount"),
        customer=header("x-customer"),
        served_by=response.headers.get("x-served-by", "?"),
        set_cookies=tuple(response.headers.get_list("set-cookie")),
        seconds=seconds,
    )


def _shots(rng: random.Random) -> list[Shot]:
    shots: list[Shot] = []
    for who in range(CUSTOMERS):
        if who < LIMITED:
            paths = ["/paid/a", "/paid/b"] * (PER_CUSTOMER // 2)
        else:
            paths = ["/paid/a"] * 4 + ["/paid/b"] * 4 + ["/free"] * 2
        shots.extend(Shot(who, p) for p in paths)
    shots.extend(Shot(None, "/paid/b") for _ in range(ANONYMOUS))
    rng.shuffle(shots)
    return shots


_IN_FLIGHT = 32


def _fire(url: str, shots: list[Shot], cookies: list[str]) -> list[Hit]:
    """Every shot at once, from one event loop: the same client for both server
    kinds, and no client threads competing for the GIL.

    At most ``_IN_FLIGHT`` requests wait inside httpx at a time: httpcore's pool
    does bookkeeping over every waiting request at each request's start and end,
    and with hundreds queued there this load generator, which shares the
    process (and the GIL) with the server under test and the emulator, starved
    them both (runs of 15-60 s instead of 2 s)."""

    async def run() -> list[Hit]:
        limits = httpx.Limits(max_connections=_IN_FLIGHT, max_keepalive_connections=_IN_FLIGHT)
        gate = asyncio.Semaphore(_IN_FLIGHT)
        async with httpx.AsyncClient(
            base_url=url, limits=limits, timeout=45, cookies=_no_cookie_jar()
        ) as client:

            async def one(shot: Shot) -> Hit:
                headers = {"Accept": "application/json"}
                if shot.who is not None:
                    headers["Cookie"] = cookies[shot.who]
                async with gate:
                    sent = time.monotonic()
                    response = await client.get(shot.path, headers=headers)
                return _hit(shot, response, time.monotonic() - sent)

            return list(await asyncio.gather(*(one(s) for s in shots)))

    return asyncio.run(run())


def _session_cookies(values: Iterable[str]) -> list[SetCookie]:
    return [c for c in map(SetCookie.parse, values) if c.name in SESSION_NAMES]


@pytest.mark.parametrize("server", ["uvicorn-asgi", "threaded-wsgi"])
def test_concurrent_charges_balance_the_ledger(server: str) -> None:
    started = time.monotonic()
    asgi = server.startswith("uvicorn")
    rng = random.Random(7)
    log, sends = AppLog(), SendLog()
    with Emulator(port=0) as emu:
        if asgi:
            inner: Any = recording_asgi_app(log)
            old = SmallTransfersASGI(inner, **_options(emu, SECRET, sends, asgi))
            new = SmallTransfersASGI(inner, **_options(emu, [NEW_SECRET, SECRET], sends, asgi))
        else:
            inner = recording_wsgi_app(log)
            old = SmallTransfersWSGI(inner, **_options(emu, SECRET, sends, asgi))
            new = SmallTransfersWSGI(inner, **_options(emu, [NEW_SECRET, SECRET], sends, asgi))
        shots = _shots(rng)
        switch: Switch = (ASGISwitch if asgi else WSGISwitch)(old, new, half=len(shots) // 2)
        runner: Any = UvicornThread(switch) if asgi else ThreadedWSGIThread(switch)

        customers = [
            emu.create_customer(
                first_name="Load",
                last_name=str(i),
                email=f"load{i}@example.com",
                limit_micros=LIMIT if i < LIMITED else 1_000_000,
            )
            for i in range(CUSTOMERS)
        ]
        phases: dict[str, float] = {}
        mark = time.monotonic()
        with runner:
            phases["start"] = time.monotonic() - mark
            mark = time.monotonic()
            with httpx.Client(base_url=runner.url, timeout=30, cookies=_no_cookie_jar()) as c:
                sealed = [_sign_in_over_http(c, emu, customer) for customer in customers]
            phases["sign-in"] = time.monotonic() - mark
            cookies = [s.pair for s in sealed]
            sends.clear()
            log.clear()

            switch.counting = True
            mark = time.monotonic()
            hits = _fire(runner.url, shots, cookies)
            phases["fire"] = time.monotonic() - mark
            switch.counting = False

            # Each customer's re-sealed cookie, used again through the server.
            resealed: dict[int, SetCookie] = {}
            for hit in hits:
                if hit.shot.who is not None and hit.served_by == "new" and hit.set_cookies:
                    resealed[hit.shot.who] = _session_cookies(hit.set_cookies)[0]
            switch.counting, switch.half = True, 0  # everything to the new middleware now
            with httpx.Client(base_url=runner.url, timeout=30, cookies=_no_cookie_jar()) as c:
                for who, cookie in resealed.items():
                    again = c.get("/free", headers={"Cookie": cookie.pair})
                    assert again.status_code == 200
                    assert again.headers["x-customer"] == customers[who].id
                    assert again.headers.get_list("set-cookie") == [], "re-sealed again"
            mark = time.monotonic()
        phases["stop"] = time.monotonic() - mark
        ledger = emu.ledger()

        # A re-sealed cookie opens under the new secret alone; the old one does not.
        only_new = make_driver("wsgi", emu, session_secret=NEW_SECRET)
        try:
            for who, cookie in resealed.items():
                assert only_new.get("/free", cookie=cookie.pair).customer == customers[who].id
                assert only_new.get("/free", cookie=cookies[who]).customer is None
        finally:
            only_new.close()
    if not asgi:
        old.close()
        new.close()
    elapsed = time.monotonic() - started

    # -- the books -----------------------------------------------------------------------
    assert len(hits) == len(shots)
    statuses = Counter(h.status for h in hits)
    assert set(statuses) <= {200, 401, 402}, statuses
    paid_ok = [h for h in hits if h.status == 200 and h.shot.path in PRICES]
    free_ok = [h for h in hits if h.status == 200 and h.shot.path == "/free"]
    refused = [h for h in hits if h.status in (401, 402)]

    answered_keys = Counter(h.key for h in paid_ok)
    assert None not in answered_keys, "a paid 2xx without a charge"
    ledger_keys = Counter(row.idempotency_key for row in ledger)
    sent_keys = sends.per_key()
    doubled = sum(n - 1 for n in ledger_keys.values() if n > 1)
    doubled += sum(n - 1 for n in sent_keys.values() if n > 1)
    doubled += sum(n - 1 for n in answered_keys.values() if n > 1)
    lost = len(set(answered_keys) - set(ledger_keys))
    stray = len(set(ledger_keys) - set(answered_keys))
    assert (doubled, lost, stray) == (0, 0, 0)
    assert len(ledger) == len(paid_ok)
    assert all(row.state == "captured" for row in ledger)
    assert sum(r.captured_micros for r in ledger) == sum(PRICES[h.shot.path] for h in paid_ok)
    for h in paid_ok:
        assert h.amount == str(PRICES[h.shot.path])

    # Per customer: what they were told they paid is what they paid.
    by_customer = Counter[str]()
    for row in ledger:
        by_customer[row.customer_id] += row.captured_micros
    told = Counter[str]()
    for h in paid_ok:
        assert h.shot.who is not None
        told[customers[h.shot.who].id] += PRICES[h.shot.path]
    assert by_customer == told

    # Refused: never charged, never ran; limited customers hit their limit.
    assert all(h.key is None and h.customer is None for h in refused)
    assert all(h.shot.who is None for h in refused if h.status == 401)
    assert Counter(h.status for h in refused if h.shot.who is None) == {401: ANONYMOUS}
    for who in range(LIMITED):
        theirs = [h for h in hits if h.shot.who == who]
        assert any(h.status == 402 for h in theirs), "a limited customer never hit the limit"
        assert by_customer[customers[who].id] <= LIMIT
    assert all(h.customer is not None and h.key is None for h in free_ok)
    # Every attempt to charge was sent exactly once: the charged ones and the 402s.
    assert sum(sent_keys.values()) == len(paid_ok) + statuses[402]

    # The app ran exactly for the paid 2xx (and the free ones), never for a refusal.
    runs = log.snapshot()
    paid_runs = [r for r in runs if r.key is not None]
    assert Counter(r.key for r in paid_runs) == answered_keys
    assert len(runs) == len(paid_ok) + len(free_ok) + len(resealed)

    # Rotation: old cookies worked on both; only the new middleware re-sealed them.
    served = Counter(h.served_by for h in hits)
    assert served == {"old": len(shots) // 2, "new": len(shots) - len(shots) // 2}
    reseals = 0
    for h in hits:
        session = _session_cookies(h.set_cookies)
        if h.shot.who is None:
            assert session == []
        elif h.served_by == "old":
            assert session == [], "a plain request set a cookie"
        else:
            assert len(session) == 1
            assert not session[0].clears
            reseals += 1
    assert reseals > 0
    assert resealed
    latencies = sorted(h.seconds for h in hits)
    phases["p50"] = latencies[len(latencies) // 2]
    phases["max"] = latencies[-1]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    timings += f", {sum(1 for x in latencies if x > 2)} requests over 2 s"
    assert elapsed < BOUND, f"{server}: {elapsed:.1f} s ({timings})"

    charged = len(paid_ok)
    FIGURES.add(
        "load",
        {
            "requests fired": len(hits),
            "charged": charged,
            "refused": len(refused),
            "free": len(free_ok),
            "charges lost": lost,
            "doubled": doubled,
            "stray charges": stray,
            "re-sealed": reseals,
        },
    )
    FIGURES.note(
        "load",
        f"{server}: {len(hits)} fired in {phases['fire']:.1f} s, whole test {elapsed:.1f} s "
        f"(bound {BOUND:.0f} s), "
        f"{charged} charged = {sum(r.captured_micros for r in ledger)} micros in "
        f"{len(ledger)} ledger rows, {statuses[402]} refused 402 (limit), "
        f"{statuses[401]} refused 401 (anonymous), {len(free_ok)} free, "
        f"{served['old']} served before / {served['new']} after the rotation, "
        f"{reseals} re-sealed",
    )
