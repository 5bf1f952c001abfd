"""The session cookie's policy decisions, each one tested on both adapters.

- Two *different* values under the session cookie's name in one request:
  the visitor is anonymous (we cannot tell which one they meant: cookie
  tossing, or a stale duplicate) and the cookie is cleared. The same value
  twice is one cookie.
- ``Secure`` cookies (https, or plain http on a non-loopback host, or forced)
  take the ``__Host-`` prefix, with ``Path=/`` and no ``Domain``; on a secure
  origin a plain-named cookie is never read (a sibling subdomain cannot toss one in).
- The lifetime is absolute, from sign-in: re-sealing under a rotated secret
  keeps the sign-in time, and the re-sealed cookie's ``Max-Age`` is what is left.
- A ``session_generation`` bump invalidates every outstanding session and
  sign-in state.
- A ``reject_session(customer, issued_at)`` hook lets the merchant refuse a
  stateless cookie replayed after sign-out; if the hook raises, the session is
  refused (fail closed).
- ``Set-Cookie`` only when the session changed: a plain signed-in request
  carries none, so a slow response never overwrites a newer cookie.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ._support import (
    CALLBACK,
    FIGURES,
    NEW_SECRET,
    SECRET,
    SESSION_NAMES,
    SIGN_OUT,
    STATE_NAMES,
    SetCookie,
    new_customer,
    sign_in,
    start_sign_in,
    wait_for,
)

NEWER_SECRET = "safety-suite-newer-secret-" + "n" * 24


def _tally(**counts: int) -> None:
    FIGURES.add("cookies", {"decisions tested": 1, **counts})


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def time(self) -> float:
        return self.now


@contextmanager
def frozen_clock() -> Iterator[Clock]:
    """The middleware's clock (sealing, opening, sign-in time), moved by hand.

    Drivers built with ``clock=clock.time`` get it through the core's constructor.
    """
    yield Clock()


def _check_flags(cookie: SetCookie, secure: bool) -> None:
    if secure:
        assert cookie.name.startswith("__Host-"), cookie.raw
        assert "secure" in cookie.attrs, cookie.raw
    else:
        assert not cookie.name.startswith("__Host-"), cookie.raw
        assert "secure" not in cookie.attrs, cookie.raw
    assert cookie.attrs.get("path") == "/", cookie.raw
    assert "domain" not in cookie.attrs, cookie.raw
    assert "httponly" in cookie.attrs, cookie.raw
    assert cookie.attrs.get("samesite", "").lower() == "lax", cookie.raw
    assert cookie.attrs.get("max-age", "").isdigit(), cookie.raw
    assert len(cookie.raw) < 4096


# -- duplicates -----------------------------------------------------------------------------


def test_two_different_valid_session_cookies_mean_anonymous(make: Any, emu: Any) -> None:
    driver = make()
    ada, bob = new_customer(emu), new_customer(emu)
    a = sign_in(driver, emu, ada)
    b = sign_in(driver, emu, bob)
    a2 = sign_in(driver, emu, ada)  # the same customer, a second (different) cookie
    assert len({a.value, b.value, a2.value}) == 3
    for cookie, who in ((a, ada), (b, bob), (a2, ada)):
        alone = driver.get("/free", cookie=cookie.pair)
        assert alone.customer == who.id
        assert not alone.cookies

    for header in (
        f"{a.pair}; {b.pair}",
        f"{b.pair}; {a.pair}",
        f"{a.pair}; {a2.pair}",
        f"{a.pair}; other=1; {b.pair}",
    ):
        runs = len(driver.log.snapshot())
        paid = driver.get("/paid", cookie=header)
        assert paid.status == 401
        assert len(driver.log.snapshot()) == runs, "the app ran for an anonymous visitor"
        assert paid.session is not None
        assert paid.session.clears
        free = driver.get("/free", cookie=header)
        assert free.status == 200
        assert free.customer is None
        assert free.session is not None
        assert free.session.clears
    assert driver.sends.to("/transactions") == []

    # The same value twice is one cookie (some clients repeat them).
    same = driver.get("/paid", cookie=f"{a.pair}; {a.pair}")
    assert same.status == 200
    assert same.customer == ada.id
    assert not same.cookies
    _tally(**{"duplicate-cookie requests": 9})


def test_asgi_joins_repeated_cookie_headers_before_the_duplicate_rule(emu: Any) -> None:
    """Two ``Cookie`` header lines (HTTP/2 style) are one jar, so the rule still holds."""
    import asyncio

    from ._support import ASGIDriver

    driver = ASGIDriver(emu)
    try:
        a = sign_in(driver, emu, new_customer(emu))
        b = sign_in(driver, emu, new_customer(emu))

        async def call(*cookies: str) -> tuple[int, list[tuple[bytes, bytes]]]:
            sent: list[dict[str, Any]] = []
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/free",
                "raw_path": b"/free",
                "root_path": "",
                "query_string": b"",
                "headers": [(b"host", b"localhost")] + [(b"cookie", c.encode()) for c in cookies],
                "client": ("127.0.0.1", 5000),
                "server": ("localhost", 80),
            }

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await driver.mw(scope, receive, send)
            await driver.mw.aclose()
            return sent[0]["status"], sent[0]["headers"]

        status, headers = asyncio.run(call(a.pair, b.pair))
        assert status == 200
        assert (b"x-customer", b"-") in headers
        cleared = [SetCookie.parse(v.decode()) for k, v in headers if k == b"set-cookie"]
        assert cleared
        assert all(c.clears for c in cleared)

        status, headers = asyncio.run(call(a.pair, "unrelated=1"))
        assert status == 200
        assert (b"x-customer", b"-") not in headers
    finally:
        driver.close()
    _tally()


# -- Secure and __Host- ------------------------------------------------------------------------


SECURE_CASES = [
    # scheme, host, secure_cookies, expected Secure
    ("http", "localhost", None, False),
    ("http", "127.0.0.1:8000", None, False),
    ("http", "[::1]:8000", None, False),
    ("https", "localhost", None, True),
    ("http", "shop.example", None, True),
    ("https", "shop.example:8443", None, True),
    ("http", "localhost", True, True),
    ("https", "shop.example", False, False),
]


@pytest.mark.parametrize(("scheme", "host", "forced", "secure"), SECURE_CASES)
def test_host_prefix_whenever_secure(
    make: Any, emu: Any, scheme: str, host: str, forced: bool | None, secure: bool
) -> None:
    driver = make(secure_cookies=forced)
    where = {"scheme": scheme, "host": host}
    checked: list[SetCookie] = []

    _, _, state = start_sign_in(driver, **where)
    checked.append(state)
    assert state.name in STATE_NAMES
    session = sign_in(driver, emu, new_customer(emu), **where)
    checked.append(session)
    assert session.name in SESSION_NAMES

    paid = driver.get("/paid", cookie=session.pair, **where)
    assert paid.status == 200
    assert not paid.cookies

    # A tampered cookie is cleared with the same name and flags.
    tampered = driver.get("/paid", cookie=f"{session.name}=x{session.value[1:]}", **where)
    assert tampered.status == 401
    assert tampered.session is not None
    assert tampered.session.clears
    checked.append(tampered.session)

    out = driver.get(SIGN_OUT, cookie=session.pair, **where)
    assert out.status == 303
    assert out.session is not None
    assert out.session.clears
    checked.append(out.session)
    assert out.session.name == session.name

    # The callback clears the state cookie with the same flags it was set with.
    _redirect_uri, state_value, state_cookie = start_sign_in(driver, **where)
    done = driver.get(
        CALLBACK, f"error=access_denied&state={state_value}", cookie=state_cookie.pair, **where
    )
    assert done.status == 303
    cleared_state = done.cookie(STATE_NAMES)
    assert cleared_state is not None
    assert cleared_state.clears
    checked.append(cleared_state)

    for cookie in checked:
        _check_flags(cookie, secure)
    _tally(**{"Set-Cookie headers checked": len(checked)})


def test_plain_name_is_never_read_on_a_secure_origin(make: Any, emu: Any) -> None:
    """A sibling subdomain can toss ``st_session=``, never ``__Host-st_session=``."""
    driver = make()
    where = {"scheme": "https", "host": "shop.example"}
    session = sign_in(driver, emu, new_customer(emu), **where)
    assert session.name == "__Host-st_session"
    tossed = driver.get("/paid", cookie=f"st_session={session.value}", **where)
    assert tossed.status == 401
    # The tossed cookie does not disturb the real one either.
    both = driver.get("/paid", cookie=f"st_session=forged; {session.pair}", **where)
    assert both.status == 200
    assert not both.cookies
    _tally()


# -- absolute lifetime ----------------------------------------------------------------------------


def test_absolute_lifetime_is_never_extended_by_a_reseal(make: Any, emu: Any) -> None:
    max_age = 1000
    with frozen_clock() as clock:
        t0 = clock.now
        old = make(clock=clock.time, session_max_age=max_age)
        new = make(clock=clock.time, session_max_age=max_age, session_secret=[NEW_SECRET, SECRET])
        newer = make(
            clock=clock.time, session_max_age=max_age, session_secret=[NEWER_SECRET, NEW_SECRET]
        )
        customer = new_customer(emu)
        c0 = sign_in(old, emu, customer)
        assert c0.attrs["max-age"] == str(max_age)

        clock.now = t0 + 600
        first = new.get("/free", cookie=c0.pair)
        assert first.customer == customer.id
        c1 = first.session
        assert c1 is not None
        assert not c1.clears
        assert c1.value != c0.value
        assert c1.attrs["max-age"] == "400", "a re-seal must keep the sign-in time"
        again = new.get("/free", cookie=c1.pair)
        assert again.customer == customer.id
        assert not again.cookies

        clock.now = t0 + 900
        second = newer.get("/free", cookie=c1.pair)
        c2 = second.session
        assert c2 is not None
        assert c2.attrs["max-age"] == "100"

        clock.now = t0 + 999
        assert newer.get("/free", cookie=c2.pair).customer == customer.id
        assert new.get("/free", cookie=c1.pair).customer == customer.id

        clock.now = t0 + max_age
        for driver, cookie in ((newer, c2), (new, c1), (old, c0)):
            gone = driver.get("/paid", cookie=cookie.pair)
            assert gone.status == 401, "a re-sealed cookie outlived the session"
            assert gone.session is not None
            assert gone.session.clears
    _tally(**{"re-seals checked": 2})


@pytest.mark.parametrize("offset", [0, 1, 599, 998, 999])
def test_reseal_max_age_is_what_is_left(make: Any, emu: Any, offset: int) -> None:
    max_age = 1000
    with frozen_clock() as clock:
        t0 = clock.now
        old = make(clock=clock.time, session_max_age=max_age)
        new = make(clock=clock.time, session_max_age=max_age, session_secret=[NEW_SECRET, SECRET])
        c0 = sign_in(old, emu, new_customer(emu))
        clock.now = t0 + offset
        resealed = new.get("/free", cookie=c0.pair).session
        assert resealed is not None
        assert int(resealed.attrs["max-age"]) == max_age - offset
        assert clock.now + int(resealed.attrs["max-age"]) <= t0 + max_age
    _tally()


# -- generation bump ----------------------------------------------------------------------------


def test_generation_bump_invalidates_every_outstanding_session(make: Any, emu: Any) -> None:
    gen0 = make()
    gen1 = make(session_generation=1)
    customers = [new_customer(emu) for _ in range(3)]
    cookies = [sign_in(gen0, emu, c) for c in customers]
    for cookie in cookies:
        assert gen0.get("/paid", cookie=cookie.pair).status == 200
    _, state, state_cookie = start_sign_in(gen0)

    for cookie in cookies:
        refused = gen1.get("/paid", cookie=cookie.pair)
        assert refused.status == 401
        assert refused.session is not None
        assert refused.session.clears
        assert gen1.get("/free", cookie=cookie.pair).customer is None
    assert gen1.sends.to("/transactions") == []

    # An outstanding sign-in state is void too: no token exchange for it.
    callback = gen1.get(CALLBACK, f"code=whatever&state={state}", cookie=state_cookie.pair)
    assert callback.status == 400
    assert callback.session is None
    assert gen1.sends.to("/oauth/tokens") == []

    # Signing in again works under the new generation, and never opens under the old one.
    fresh = sign_in(gen1, emu, customers[0])
    assert gen1.get("/paid", cookie=fresh.pair).status == 200
    assert gen0.get("/paid", cookie=fresh.pair).status == 401
    _tally(**{"sessions invalidated": len(cookies)})


# -- reject_session and replay after sign-out ---------------------------------------------------


class SignOutLedger:
    """What a merchant keeps to refuse replays: the last sign-out time per customer."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.signed_out: dict[str, float] = {}

    def on_sign_out(self, customer: Any) -> None:
        self.signed_out[customer.id] = self.clock.time()

    def reject(self, customer: Any, issued_at: int) -> bool:
        return issued_at <= self.signed_out.get(customer.id, float("-inf"))


def test_reject_session_hook_refuses_a_cookie_replayed_after_sign_out(make: Any, emu: Any) -> None:
    with frozen_clock() as clock:
        t0 = clock.now
        merchant = SignOutLedger(clock)
        driver = make(
            clock=clock.time, on_sign_out=merchant.on_sign_out, reject_session=merchant.reject
        )
        customer = new_customer(emu)
        cookie = sign_in(driver, emu, customer)
        stolen = cookie.pair
        assert driver.get("/paid", cookie=stolen).status == 200

        clock.now = t0 + 5
        out = driver.get(SIGN_OUT, cookie=cookie.pair)
        assert out.status == 303
        assert out.session is not None
        assert out.session.clears
        assert customer.id in merchant.signed_out

        clock.now = t0 + 6
        charges_before = len(driver.sends.to("/transactions"))
        runs_before = len(driver.log.snapshot())
        replay = driver.get("/paid", cookie=stolen)
        assert replay.status == 401
        assert replay.session is not None
        assert replay.session.clears
        assert len(driver.sends.to("/transactions")) == charges_before, "a replay was charged"
        assert len(driver.log.snapshot()) == runs_before

        clock.now = t0 + 10
        fresh = sign_in(driver, emu, customer)
        assert driver.get("/paid", cookie=fresh.pair).status == 200
        assert driver.get("/paid", cookie=stolen).status == 401
    _tally(**{"replays refused": 2})


def test_a_cookie_copied_before_sign_out_is_refused_after_it(make: Any, emu: Any) -> None:
    """Sign-out revokes the session in the store: a copy taken earlier opens no more.

    (Before the store, this was the documented limit of a stateless cookie.)
    """
    driver = make()
    customer = new_customer(emu)
    cookie = sign_in(driver, emu, customer)
    assert driver.get("/paid", cookie=cookie.pair).status == 200
    charges_before = len(driver.sends.to("/transactions"))
    driver.get(SIGN_OUT, cookie=cookie.pair)
    replay = driver.get("/paid", cookie=cookie.pair)
    assert replay.status == 401
    assert replay.session is not None
    assert replay.session.clears
    assert len(driver.sends.to("/transactions")) == charges_before, "a replay was charged"
    free = driver.get("/free", cookie=cookie.pair)
    assert free.status == 200
    assert free.customer is None
    _tally(**{"replays refused": 1})


def test_a_raising_reject_hook_fails_closed(make: Any, emu: Any) -> None:
    def broken(customer: Any, issued_at: int) -> bool:
        raise RuntimeError("deny list unreachable")

    driver = make(reject_session=broken)
    gate = make()
    cookie = sign_in(gate, emu, new_customer(emu))
    refused = driver.get("/paid", cookie=cookie.pair)
    assert refused.status == 401
    assert driver.sends.to("/transactions") == []
    _tally()


# -- Set-Cookie only on change ----------------------------------------------------------------


def test_plain_signed_in_requests_carry_no_set_cookie(make: Any, emu: Any) -> None:
    driver = make()
    cookie = sign_in(driver, emu, new_customer(emu))
    answers = [driver.get(path, cookie=cookie.pair) for path in ("/paid", "/free", "/paid/x")]
    for answer in answers:
        assert answer.status == 200
        assert answer.all("Set-Cookie") == []
    _tally(**{"plain requests checked": len(answers)})


def test_a_slow_response_never_overwrites_a_newer_cookie(make: Any, emu: Any) -> None:
    driver = make()
    customer = new_customer(emu)
    old = sign_in(driver, emu, customer)
    slow = driver.in_thread("GET", "/slow", cookie=old.pair)
    try:
        assert wait_for(driver.log.slow_started.is_set, 10)
        # Meanwhile the visitor signs out and in again: the browser now holds `new`.
        out = driver.get(SIGN_OUT, cookie=old.pair)
        assert out.session is not None
        assert out.session.clears
        new = sign_in(driver, emu, customer)
    finally:
        driver.log.release.set()
    answer = slow.result(timeout=20)
    assert answer.status == 200
    assert answer.all("Set-Cookie") == [], "the slow answer would overwrite the newer cookie"
    assert driver.get("/paid", cookie=new.pair).status == 200
    _tally()


def test_a_slow_reseal_during_rotation_is_caught_by_the_reject_hook(make: Any, emu: Any) -> None:
    """The one answer that does re-seal (a retired secret) can resurrect a signed-out
    session if it is slow; the ``reject_session`` hook is what stops that cookie."""
    with frozen_clock() as clock:
        t0 = clock.now
        merchant = SignOutLedger(clock)
        old = make(clock=clock.time)
        rotated = make(
            clock=clock.time,
            session_secret=[NEW_SECRET, SECRET],
            on_sign_out=merchant.on_sign_out,
            reject_session=merchant.reject,
        )
        customer = new_customer(emu)
        cookie = sign_in(old, emu, customer)
        slow = rotated.in_thread("GET", "/slow", cookie=cookie.pair)
        try:
            assert wait_for(rotated.log.slow_started.is_set, 10)
            clock.now = t0 + 5
            rotated.get(SIGN_OUT, cookie=cookie.pair)
        finally:
            rotated.log.release.set()
        answer = slow.result(timeout=20)
        resurrected = answer.session
        assert resurrected is not None
        assert not resurrected.clears
        clock.now = t0 + 6
        assert rotated.get("/paid", cookie=resurrected.pair).status == 401
    _tally()


def test_session_cookie_fits_whatever_the_customer_profile(make: Any, emu: Any) -> None:
    """A very long profile from Small Transfers still signs in (details shortened), no 500."""
    driver = make()
    customer = emu.create_customer(first_name="A" * 3000, last_name="B", email="b@example.com")
    session = sign_in(driver, emu, customer)
    assert len(session.raw) < 4096
    assert driver.get("/paid", cookie=session.pair).status == 200
    _tally()
