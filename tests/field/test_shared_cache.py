"""Answers that carry money or a session must never be replayed by a shared cache.

A merchant's site usually sits behind a CDN or reverse proxy that stores
responses and replays them to *everyone*. Each test here puts a real RFC 9111
shared cache (hishel, in-memory, ``shared=True``) in front of the wrapped app,
lets a victim's request through it, then sends a stranger through the same
cache and checks that the stranger gets neither the paid body nor anybody's
session cookie, and that nobody pays for the stranger.

The deployment modelled: *every* request, the victim's sign-in included, goes
through the CDN, as it does in production (the middleware's own routes answer
``no-store``, so going through the cache changes nothing for them). Each
browser has its own cookie jar; only the cache is shared.

The spec under test (contract, "A priced request", "Caches"): a charged
answer, and any answer carrying a cookie the middleware set or cleared, goes
out with ``Cache-Control: private``; the app's ``public`` and ``s-maxage`` are
removed, its other directives kept; ``CDN-Cache-Control`` and
``Surrogate-Control`` are removed from charged answers; ``cache_paid_answers=True``
keeps a charged answer's caching headers as the app set them, but an answer
carrying the middleware's ``Set-Cookie`` is private regardless.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.utils import formatdate
from typing import Any

import anysqlite
import httpx
import pytest
from hishel import AsyncSqliteStorage, CacheOptions, SqliteStorage
from hishel.httpx import AsyncCacheTransport, CacheTransport

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import async_sign_in, emulator_options, ledger, new_customer, sign_in

pytestmark = pytest.mark.anyio

BASE_URL = "http://localhost"  # loopback: plain `st_session`, not Secure/__Host-
PRICING = {"/paid": 1000, "/file": 1000}
OLD_SECRET = "retired-session-secret-0000000000000000"  # test secrets only
NEW_SECRET = "current-session-secret-1111111111111111"

# What a shared cache should think of the app's own answers (before the middleware).
PAID_CACHING = [
    ("Cache-Control", "public, max-age=600, s-maxage=600"),
    ("CDN-Cache-Control", "max-age=600"),
    ("Surrogate-Control", "max-age=600"),
]
# A file as Starlette's FileResponse / Flask's send_file sends it: a validator and
# no Cache-Control. Modified 30 days ago, so RFC 9111 section 4.2.2 heuristics
# make it fresh for 10% of that (3 days) in a cache that applies them (hishel does).
FILE_CACHING = [("Last-Modified", formatdate(time.time() - 30 * 86400, usegmt=True))]
FREE_CACHING = [("Cache-Control", "public, max-age=600")]
PAID_MARK = "paid page for customer"
FILE_MARK = "paid file for customer"
FREE_BODY = b"free page, the same for everyone"
CDN_HEADERS = ("cdn-cache-control", "surrogate-control")


# -- the merchant's app (bare WSGI and ASGI, the same three routes) -------------------


def _page(path: str, customer: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    who = getattr(customer, "id", None)
    if path == "/paid":
        return 200, f"{PAID_MARK} {who}".encode(), [("Content-Type", "text/plain"), *PAID_CACHING]
    if path == "/file":
        body = f"{FILE_MARK} {who}".encode()
        return 200, body, [("Content-Type", "application/octet-stream"), *FILE_CACHING]
    if path == "/free":
        return 200, FREE_BODY, [("Content-Type", "text/plain"), *FREE_CACHING]
    return 404, b"not found", [("Content-Type", "text/plain")]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    status, body, headers = _page(environ["PATH_INFO"], environ.get("smalltransfers.customer"))
    phrase = "OK" if status == 200 else "Not Found"
    start_response(f"{status} {phrase}", [*headers, ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    status, body, headers = _page(scope["path"], scope.get("smalltransfers.customer"))
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# -- the shared cache and the browsers behind it --------------------------------------


def _shared_cache_options() -> CacheOptions:
    # shared=True: a proxy/CDN, which must not store `private` answers but may
    # store everything else, Set-Cookie included (RFC 9111 section 7.3 leaves
    # that to the origin). hishel 2.0 applies heuristic freshness (10% of the
    # Last-Modified age, at most a week) to heuristically cacheable statuses
    # whenever no explicit lifetime is given; there is no switch for it.
    return CacheOptions(shared=True, allow_stale=False)


class _SyncDoor(httpx.BaseTransport):
    """One browser's way into the shared cache: closing the browser leaves the cache up."""

    def __init__(self, cache: CacheTransport) -> None:
        self._cache = cache

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._cache.handle_request(request)


class _AsyncDoor(httpx.AsyncBaseTransport):
    def __init__(self, cache: AsyncCacheTransport) -> None:
        self._cache = cache

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._cache.handle_async_request(request)


class Browser:
    """One visitor (its own cookie jar), reaching the site through the shared cache."""

    def __init__(self, client: httpx.Client | httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        if isinstance(self.client, httpx.AsyncClient):
            return await self.client.get(path, headers=headers)
        return self.client.get(path, headers=headers)

    async def sign_in(self, emulator: Emulator, customer: Customer) -> None:
        """The real sign-in flow (the kit's helpers), through the cache like everything else."""
        if isinstance(self.client, httpx.AsyncClient):
            await async_sign_in(self.client, emulator, customer)
        else:
            sign_in(self.client, emulator, customer)
        assert self.client.cookies.get("st_session"), "no session cookie after sign-in"

    def take_cookies_of(self, other: Browser) -> None:
        """The same browser after a deploy: its cookies stay, the site changed."""
        for cookie in other.client.cookies.jar:
            self.client.cookies.jar.set_cookie(cookie)

    async def aclose(self) -> None:
        if isinstance(self.client, httpx.AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()


class Site:
    """One deployment of the wrapped app behind its own shared cache (the CDN)."""

    def __init__(self, adapter: str, emulator: Emulator, **options: Any) -> None:
        self.adapter = adapter
        keywords = emulator_options(emulator, pricing=PRICING, **options)
        self.browsers: list[Browser] = []
        self.sync_cache: CacheTransport | None = None
        self.async_cache: AsyncCacheTransport | None = None
        if adapter == "wsgi":
            self.wsgi = SmallTransfersWSGI(wsgi_app, **keywords)
            # In memory; check_same_thread=False because hishel may use it from
            # another thread (it probes for that and warns otherwise).
            connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self.sync_cache = CacheTransport(
                next_transport=httpx.WSGITransport(app=self.wsgi),
                storage=SqliteStorage(connection=connection),
                rfc=_shared_cache_options(),
            )
        else:
            self.asgi = SmallTransfersASGI(asgi_app, **keywords)

    async def start(self) -> Site:
        if self.adapter == "asgi":
            connection = await anysqlite.connect(":memory:", isolation_level=None)
            self.async_cache = AsyncCacheTransport(
                next_transport=httpx.ASGITransport(app=self.asgi),
                storage=AsyncSqliteStorage(connection=connection),
                rfc=_shared_cache_options(),
            )
        return self

    def browser(self) -> Browser:
        client: httpx.Client | httpx.AsyncClient
        if self.sync_cache is not None:
            client = httpx.Client(transport=_SyncDoor(self.sync_cache), base_url=BASE_URL)
        else:
            assert self.async_cache is not None
            client = httpx.AsyncClient(transport=_AsyncDoor(self.async_cache), base_url=BASE_URL)
        browser = Browser(client)
        self.browsers.append(browser)
        return browser

    async def aclose(self) -> None:
        for browser in self.browsers:
            await browser.aclose()
        if self.sync_cache is not None:
            self.sync_cache.close()
            self.wsgi.close()
        else:
            if self.async_cache is not None:
                await self.async_cache.aclose()
            await self.asgi.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """A real Small Transfers emulator on 127.0.0.1 for this module."""
    with Emulator(port=0) as emu:
        yield emu


@pytest.fixture(params=["wsgi", "asgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_site(
    anyio_backend: str, emulator: Emulator, adapter: str
) -> AsyncIterator[Callable[..., Awaitable[Site]]]:
    """Build deployments of this test's adapter; every one (and its cache) closed afterwards."""
    sites: list[Site] = []

    async def make(**options: Any) -> Site:
        site = Site(adapter, emulator, **options)
        sites.append(site)
        return await site.start()

    yield make
    for site in sites:
        await site.aclose()


# -- reading answers ----------------------------------------------------------------------


def cache_directives(response: httpx.Response) -> set[str]:
    """``Cache-Control`` as a set of lower-cased directives (``max-age=600`` whole)."""
    return {
        part.strip().lower().replace(" ", "")
        for value in response.headers.get_list("cache-control")
        for part in value.split(",")
        if part.strip()
    }


def session_set_cookies(response: httpx.Response) -> list[str]:
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.split("=", 1)[0].strip().endswith("st_session")
    ]


def hands_out_session_cookie(response: httpx.Response) -> bool:
    """A bool, so a failing assert never prints the cookie value (seen() shows a prefix)."""
    return bool(session_set_cookies(response))


def clears(set_cookie: str) -> bool:
    return "max-age=0" in set_cookie.lower().replace(" ", "")


def from_cache(response: httpx.Response) -> bool:
    """Whether the shared cache answered without asking the app."""
    return bool(response.extensions["caching"]["from_cache"])


def seen(response: httpx.Response) -> str:
    """What a stranger got, for failure messages (cookie values cut: never print them whole)."""
    cookies = [c[:30] + "..." for c in response.headers.get_list("set-cookie")]
    return (
        f"status {response.status_code}, from_cache={from_cache(response)}, "
        f"body {response.content[:60]!r}, set-cookie {cookies}"
    )


def assert_private(response: httpx.Response, *, kept: set[str] | None = None) -> None:
    """The spec's caching headers on an answer the middleware must keep out of shared caches."""
    directives = cache_directives(response)
    names = {d.partition("=")[0] for d in directives}
    assert "private" in directives, f"no bare `private` in Cache-Control: {directives}"
    assert not names & {"public", "s-maxage"}, f"public/s-maxage left in: {directives}"
    # The app's other directives stay (max-age still governs the browser's own cache).
    assert (kept or set()) <= directives, f"app directives {kept} dropped: {directives}"


def assert_no_cdn_headers(response: httpx.Response) -> None:
    # A CDN obeys these over Cache-Control (RFC 9213), so `private` alone would not stop it.
    left = {name: response.headers[name] for name in CDN_HEADERS if name in response.headers}
    assert not left, f"CDN-targeted caching headers left on a charged answer: {left}"


async def old_session(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> tuple[Browser, Customer]:
    """A browser signed in last week, under the secret that has since been retired."""
    before_rotation = await make_site(session_secret=OLD_SECRET)
    browser, customer = before_rotation.browser(), new_customer(emulator)
    await browser.sign_in(emulator, customer)
    return browser, customer


# -- (a) a paid page the app marked public ------------------------------------------------


async def test_a_public_paid_page_is_charged_and_never_replayed_to_strangers(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> None:
    site = await make_site()
    victim, customer = site.browser(), new_customer(emulator)
    await victim.sign_in(emulator, customer)

    paid = await victim.get("/paid")
    assert paid.status_code == 200
    assert f"{PAID_MARK} {customer.id}" in paid.text

    stranger = await site.browser().get("/paid")
    # The stranger, never signed in, must meet the sign-in answer, not the victim's page.
    assert PAID_MARK not in stranger.text, f"paid page replayed to a stranger: {seen(stranger)}"
    assert stranger.status_code == 401, seen(stranger)
    assert not from_cache(stranger)
    assert [row.authorized_micros for row in ledger(emulator, customer)] == [1000]

    assert_private(paid, kept={"max-age=600"})
    assert_no_cdn_headers(paid)


# -- (b) a paid file with only Last-Modified (heuristic freshness) ---------------------


async def test_b_heuristically_fresh_paid_file_is_never_replayed_to_strangers(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> None:
    site = await make_site()
    victim, customer = site.browser(), new_customer(emulator)
    await victim.sign_in(emulator, customer)

    paid = await victim.get("/file")
    assert paid.status_code == 200
    assert f"{FILE_MARK} {customer.id}" in paid.text
    assert "last-modified" in paid.headers  # the validator stays: revalidation needs it

    stranger = await site.browser().get("/file")
    assert FILE_MARK not in stranger.text, f"paid file replayed to a stranger: {seen(stranger)}"
    assert stranger.status_code == 401, seen(stranger)
    assert not from_cache(stranger)
    assert [row.authorized_micros for row in ledger(emulator, customer)] == [1000]

    # No Cache-Control from the app, yet a charged answer must say `private`.
    assert_private(paid)


# -- (c) session-secret rotation: a re-sealed cookie on a public free page ------------


async def test_c_resealed_session_on_a_public_page_is_never_handed_to_strangers(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> None:
    last_week, customer = await old_session(make_site, emulator)
    site = await make_site(session_secret=[NEW_SECRET, OLD_SECRET])
    victim = site.browser()
    victim.take_cookies_of(last_week)

    # A sealed-under-OLD cookie is re-sealed under NEW on its next use: the
    # middleware's Set-Cookie rides on the app's public free page.
    free = await victim.get("/free")
    assert free.status_code == 200
    resealed = session_set_cookies(free)
    assert len(resealed) == 1, seen(free)
    assert not clears(resealed[0])

    # The stranger opens the same page through the same CDN, keeps whatever
    # cookie comes with it (as any browser does), then opens the paid page.
    stranger = site.browser()
    landing = await stranger.get("/free")
    replay = await stranger.get("/paid")

    # The victim never opened /paid: any row in their ledger is the stranger's doing.
    assert [row.authorized_micros for row in ledger(emulator, customer)] == [], (
        f"the victim paid for a stranger's request; the stranger's /free was "
        f"{seen(landing)}; the stranger's /paid was {seen(replay)}"
    )
    assert replay.status_code == 401, seen(replay)
    assert not hands_out_session_cookie(landing), f"victim's cookie handed out: {seen(landing)}"

    assert_private(free, kept={"max-age=600"})


# -- (d) a clearing Set-Cookie on a public free page --------------------------------------


async def test_d_clearing_cookie_on_a_public_page_never_signs_out_later_visitors(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> None:
    site = await make_site()
    visitor, customer = site.browser(), new_customer(emulator)
    await visitor.sign_in(emulator, customer)

    # Anyone can send a cookie that does not open; the middleware clears it.
    poisoned = await site.browser().get("/free", headers={"Cookie": "st_session=garbage"})
    assert poisoned.status_code == 200
    cleared = session_set_cookies(poisoned)
    assert len(cleared) == 1, cleared
    assert clears(cleared[0])

    # A signed-in visitor opens the same page through the same CDN, then pays for one.
    later = await visitor.get("/free")
    paid = await visitor.get("/paid")

    assert not hands_out_session_cookie(later), f"clearing cookie replayed: {seen(later)}"
    assert paid.status_code == 200, f"the later visitor was signed out: {seen(paid)}"
    assert [row.authorized_micros for row in ledger(emulator, customer)] == [1000]

    assert_private(poisoned, kept={"max-age=600"})


# -- the merchant's opt-in --------------------------------------------------------------


async def test_opt_in_keeps_paid_caching_headers_but_never_caches_the_cookie(
    make_site: Callable[..., Awaitable[Site]], emulator: Emulator
) -> None:
    last_week, _ = await old_session(make_site, emulator)
    site = await make_site(session_secret=[NEW_SECRET, OLD_SECRET], cache_paid_answers=True)

    # Charged *and* re-sealing the session: the cookie wins, private regardless.
    rotated = site.browser()
    rotated.take_cookies_of(last_week)
    with_cookie = await rotated.get("/paid")
    assert with_cookie.status_code == 200
    assert len(session_set_cookies(with_cookie)) == 1, seen(with_cookie)
    assert_private(with_cookie, kept={"max-age=600"})
    stranger = site.browser()
    after = await stranger.get("/paid")
    assert not hands_out_session_cookie(after), f"re-sealed cookie replayed: {seen(after)}"
    assert after.status_code == 401, seen(after)

    # Charged, no cookie: the app's caching headers go out as the app set them.
    fresh, customer = site.browser(), new_customer(emulator)
    await fresh.sign_in(emulator, customer)
    kept = await fresh.get("/paid")
    assert kept.status_code == 200
    assert not hands_out_session_cookie(kept)
    assert cache_directives(kept) == {"public", "max-age=600", "s-maxage=600"}
    assert {name: kept.headers.get(name) for name in CDN_HEADERS} == {
        "cdn-cache-control": "max-age=600",
        "surrogate-control": "max-age=600",
    }
    # ... so the CDN stores it, which is what the merchant asked for.
    assert from_cache(await stranger.get("/paid"))
