"""The public contract, row by row, for BOTH adapters (every test runs as wsgi and asgi).

Each test drives a wrapped app the way a browser (``Accept: text/html``) or an
API client (``application/json`` or ``*/*``) would, against a real Small
Transfers emulator, and looks only at what a visitor or a merchant can see:
status, ``Location``, ``Set-Cookie``, the page or problem+json, what the app
was handed, and the emulator's ledger.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from helpers import (
    ANY,
    BROWSER,
    CALLBACK,
    JSON,
    OPEN_REDIRECTS,
    OTHER_SECRET,
    PRICE,
    REDIRECTS,
    SECRET,
    SIGN_IN,
    SIGN_OUT,
    Reply,
    Site,
    charges,
    exchange_directly,
    hidden_fields,
    issue_code,
    new_customer,
    path_and_query,
    query_of,
    sign_in,
    sign_in_button_href,
    start_sign_in,
)
from st_middleware import ConfigurationError, Customer
from st_middleware._core import Core

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., Site]
API_CLIENTS = [JSON, ANY]
ALL_CLIENTS = [BROWSER, JSON, ANY]


def accept_id(accept: str) -> str:
    return {BROWSER: "browser", JSON: "json", ANY: "any"}[accept]


# -- small assertions -----------------------------------------------------------------


def assert_refused_sign_in(reply: Reply) -> None:
    """A callback that failed: a 4xx page (never a 500) and no session cookie."""
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    assert not reply.sets_session(), reply.cookies


def assert_sign_in_required(reply: Reply, accept: str, next_path: str, mount: str = "") -> None:
    """The 401 of a priced request without a usable session, as the contract words it."""
    assert reply.status == 401, (reply.status, reply.body[:300])
    assert reply.header("Cache-Control") == "no-store"
    if "text/html" in accept:
        assert reply.content_type == "text/html"
        href = sign_in_button_href(reply.text)
        assert href is not None, "no 'Sign In with Small Transfers' button"
        assert urlsplit(href).path == mount + SIGN_IN
        assert query_of(href)["next"] == next_path
    else:
        assert reply.content_type == "application/problem+json"
        problem = reply.json()
        assert problem["status"] == 401
        url = problem["sign_in_url"]
        assert urlsplit(url).path == mount + SIGN_IN
        assert query_of(url)["next"] == next_path
        assert problem["price_micros"] == PRICE


def assert_clears(cookie: Any, like: Any = None) -> None:
    """``cookie`` deletes the session, with the name, path and flags it was set with."""
    assert cookie is not None, "the session cookie was not cleared"
    assert cookie.clears, cookie.raw
    assert cookie.attrs.get("max-age") == "0", cookie.raw
    if like is not None:
        assert cookie.flags == like.flags, (cookie.raw, like.raw)


# -- the sign-in route ----------------------------------------------------------------


async def test_sign_in_sends_the_browser_to_the_authorize_page(site: Site, emu: Any) -> None:
    reply, params = await start_sign_in(site, "/paid")
    assert reply.location is not None
    assert reply.location.startswith(f"{emu.url}/customer/authorize?")
    assert params["publishable_key"] == emu.publishable_key
    assert params["redirect_uri"] == "http://localhost" + CALLBACK
    assert params["response_type"] == "code"
    assert params["scope"]
    assert len(params["state"]) >= 16
    assert reply.header("Cache-Control") == "no-store"


async def test_sign_in_never_puts_the_secret_key_in_the_redirect(site: Site, emu: Any) -> None:
    reply, _ = await start_sign_in(site)
    assert emu.secret_key not in (reply.location or "")


async def test_each_sign_in_gets_a_fresh_state(site: Site) -> None:
    _, first = await start_sign_in(site)
    _, second = await start_sign_in(site)
    assert first["state"] != second["state"]


async def test_sign_in_sets_a_short_lived_encrypted_state_cookie(site: Site) -> None:
    reply, params = await start_sign_in(site, "/paid")
    cookie = reply.state_cookie()
    assert cookie is not None
    assert not cookie.clears
    assert "httponly" in cookie.attrs
    assert cookie.attrs["samesite"].lower() == "lax"
    assert cookie.attrs["path"] == "/"
    assert 0 < int(cookie.attrs["max-age"]) <= 600
    assert "domain" not in cookie.attrs
    assert params["state"] not in cookie.value
    assert "/paid" not in cookie.value


@pytest.mark.parametrize(
    ("scheme", "host"),
    [("https", "localhost"), ("https", "shop.example.com"), ("http", "127.0.0.1:8000")],
)
async def test_redirect_uri_is_built_from_the_request(
    make_site: MakeSite, scheme: str, host: str
) -> None:
    site = make_site(scheme=scheme, host=host)
    _, params = await start_sign_in(site)
    assert params["redirect_uri"] == f"{scheme}://{host}{CALLBACK}"


async def test_a_configured_redirect_uri_wins(make_site: MakeSite) -> None:
    site = make_site(redirect_uri="https://shop.example.com/smalltransfers/callback")
    _, params = await start_sign_in(site)
    assert params["redirect_uri"] == "https://shop.example.com/smalltransfers/callback"


async def test_forwarded_host_from_an_untrusted_client_is_ignored(site: Site) -> None:
    reply = await site.get(
        SIGN_IN, headers={"X-Forwarded-Host": "evil.com", "X-Forwarded-Proto": "https"}
    )
    assert reply.location is not None
    assert query_of(reply.location)["redirect_uri"] == "http://localhost" + CALLBACK


# -- the callback -------------------------------------------------------------------


async def test_callback_signs_in_and_returns_to_next(site: Site, emu: Any, customer: Any) -> None:
    done = await sign_in(site, emu, customer, "/paid?item=7")
    reply = done.callback
    assert reply.status == 303
    assert reply.location == "/paid?item=7"
    assert reply.sets_session()
    state = reply.state_cookie()
    assert state is not None
    assert state.clears
    assert reply.header("Cache-Control") == "no-store"
    assert reply.header("Referrer-Policy") == "no-referrer"
    assert len(site.calls) == 0


async def test_the_signed_in_visitor_is_the_customer_who_allowed(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    await site.get("/free")
    seen = site.calls.last.customer
    assert isinstance(seen, Customer)
    assert seen.id == customer.id
    assert (seen.first_name, seen.last_name, seen.email) == (
        customer.first_name,
        customer.last_name,
        customer.email,
    )
    assert seen.live is False


async def test_callback_without_an_echoed_state_trusts_the_state_cookie(
    site: Site, emu: Any, customer: Any
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    reply = await site.get(CALLBACK, {"code": code})
    assert reply.status == 303
    assert reply.location == "/paid"
    assert reply.sets_session()


async def test_access_denied_returns_quietly_to_next_without_a_session(
    site: Site, customer: Any
) -> None:
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"error": "access_denied", "state": params["state"]})
    assert reply.status in REDIRECTS
    assert reply.location == "/paid"
    assert not reply.sets_session()
    assert site.session_value is None
    assert len(site.calls) == 0


@pytest.mark.parametrize("error", ["server_error", "invalid_scope", "temporarily_unavailable"])
async def test_other_provider_errors_are_a_4xx_that_never_echoes_the_description(
    site: Site, error: str
) -> None:
    _, params = await start_sign_in(site, "/paid")
    marker = "<script>alert('ECHOED-DESCRIPTION')</script>"
    reply = await site.get(
        CALLBACK, {"error": error, "error_description": marker, "state": params["state"]}
    )
    assert_refused_sign_in(reply)
    assert b"ECHOED-DESCRIPTION" not in reply.body
    assert b"<script>" not in reply.body


async def test_callback_without_a_state_cookie_is_refused_before_any_token_exchange(
    site: Site, emu: Any, customer: Any
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    site.jar.clear()  # another browser, or a forged link
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert_refused_sign_in(reply)
    # The middleware never spent the code: it is still good at Small Transfers.
    assert exchange_directly(emu, code).status_code == 200


async def test_callback_with_a_state_that_does_not_match_is_refused_before_any_exchange(
    site: Site, emu: Any, customer: Any
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"] + "x"})
    assert_refused_sign_in(reply)
    assert exchange_directly(emu, code).status_code == 200


@pytest.mark.parametrize("forged", ["garbage", "gAAAAA" + "A" * 100, "é"])
async def test_callback_with_a_forged_state_cookie_is_refused(
    site: Site, emu: Any, customer: Any, forged: str
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    (name,) = [n for n in site.jar if n.endswith("st_state")]
    site.jar[name] = forged
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert_refused_sign_in(reply)
    assert exchange_directly(emu, code).status_code == 200


async def test_a_state_cookie_from_another_site_is_refused(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    other = make_site(session_secret=OTHER_SECRET)
    site = make_site()
    _, params = await start_sign_in(other, "/paid")
    site.jar.update(other.jar)
    code = issue_code(emu, customer, params["redirect_uri"])
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert_refused_sign_in(reply)


async def test_reloading_the_callback_after_signing_in_is_refused(
    site: Site, emu: Any, customer: Any
) -> None:
    done = await sign_in(site, emu, customer)
    reply = await site.get(CALLBACK, {"code": done.code, "state": done.state})
    assert_refused_sign_in(reply)


async def test_a_reused_code_is_refused(site: Site, emu: Any, customer: Any) -> None:
    done = await sign_in(site, emu, customer)
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"code": done.code, "state": params["state"]})
    assert_refused_sign_in(reply)


async def test_an_unknown_code_is_refused(site: Site) -> None:
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"code": "no-such-code", "state": params["state"]})
    assert_refused_sign_in(reply)


async def test_a_callback_without_a_code_is_refused(site: Site) -> None:
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"state": params["state"]})
    assert_refused_sign_in(reply)


async def test_a_failed_callback_clears_the_state_cookie(site: Site) -> None:
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"code": "no-such-code", "state": params["state"]})
    state = reply.state_cookie()
    assert state is not None
    assert state.clears


async def test_a_failed_callback_offers_to_sign_in_again(site: Site) -> None:
    _, params = await start_sign_in(site, "/paid")
    reply = await site.get(CALLBACK, {"code": "no-such-code", "state": params["state"]})
    href = sign_in_button_href(reply.text)
    assert href is not None
    assert urlsplit(href).path == SIGN_IN
    assert query_of(href)["next"] == "/paid"


async def test_rejected_merchant_keys_at_sign_in_are_a_502_not_the_visitors_fault(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(secret_key="sk_test_wrong")
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert reply.status == 502
    assert not reply.sets_session()


@pytest.mark.parametrize("fault", [{"error": "maintenance_mode"}, {"drop": "before"}])
async def test_an_outage_during_sign_in_is_a_503_and_no_session(
    site: Site, emu: Any, customer: Any, fault: dict[str, Any]
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    emu.set_faults(count=1, **fault)
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert reply.status == 503
    assert reply.header("Retry-After") is not None
    assert not reply.sets_session()


@pytest.mark.parametrize("fault", [{"malformed": True}, {"huge_body": True}])
async def test_an_unreadable_token_reply_is_a_502(
    site: Site, emu: Any, customer: Any, fault: dict[str, Any]
) -> None:
    _, params = await start_sign_in(site, "/paid")
    code = issue_code(emu, customer, params["redirect_uri"])
    emu.set_faults(count=1, **fault)
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert reply.status == 502
    assert not reply.sets_session()


# -- a full browser flow through the emulator's own authorize page ----------------------


async def _authorize_page_decision(
    site: Site, emu: Any, decision: str, customer: Any
) -> tuple[str, Reply]:
    """Press Allow or Deny on the emulator's page, then follow its redirect to the callback."""
    start, _ = await start_sign_in(site, "/paid")
    assert start.location is not None
    with httpx.Client(timeout=5, follow_redirects=False) as browser:
        page = browser.get(start.location)
        assert page.status_code == 200, page.text
        form = hidden_fields(page.text)
        form.update(decision=decision, customer_id=customer.id)
        answer = browser.post(f"{emu.url}/customer/authorize", data=form)
    assert answer.status_code == 303, answer.text
    back = answer.headers["location"]
    assert back.startswith("http://localhost" + CALLBACK)
    return back, await site.get(path_and_query(back))


async def test_a_visitor_who_presses_allow_is_signed_in_and_charged(
    site: Site, emu: Any, customer: Any
) -> None:
    back, reply = await _authorize_page_decision(site, emu, "allow", customer)
    assert "code" in query_of(back)
    assert reply.status == 303
    assert reply.location == "/paid"
    paid = await site.get("/paid")
    assert paid.status == 200
    assert site.calls.last.customer.id == customer.id
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]


async def test_a_visitor_who_presses_deny_is_back_on_the_page_without_a_session(
    site: Site, emu: Any, customer: Any
) -> None:
    back, reply = await _authorize_page_decision(site, emu, "deny", customer)
    assert query_of(back)["error"] == "access_denied"
    assert reply.status in REDIRECTS
    assert reply.location == "/paid"
    assert not reply.sets_session()
    paid = await site.get("/paid")
    assert_sign_in_required(paid, BROWSER, "/paid")


# -- sign-out -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_sign_out_clears_the_session_with_the_same_name_path_and_flags(
    site: Site, emu: Any, customer: Any, method: str
) -> None:
    done = await sign_in(site, emu, customer)
    set_cookie = done.callback.session_cookie()
    reply = await site.request(method, SIGN_OUT, {"next": "/bye"})
    assert reply.status in REDIRECTS
    assert reply.location == "/bye"
    assert_clears(reply.session_cookie(), like=set_cookie)
    assert site.session_value is None
    assert_sign_in_required(await site.get("/paid"), BROWSER, "/paid")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_sign_out_without_next_goes_home(site: Site, method: str) -> None:
    reply = await site.request(method, SIGN_OUT)
    assert reply.status in REDIRECTS
    assert reply.location == "/"
    assert_clears(reply.session_cookie())


async def test_sign_out_over_https_clears_the_secure_host_prefixed_cookie(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(scheme="https", host="shop.example.com")
    done = await sign_in(site, emu, customer)
    set_cookie = done.callback.session_cookie()
    assert set_cookie is not None
    assert set_cookie.name == "__Host-st_session"
    reply = await site.post(SIGN_OUT)
    assert_clears(reply.session_cookie(), like=set_cookie)


async def test_sign_out_calls_the_on_sign_out_hook(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    seen: list[Any] = []
    site = make_site(on_sign_out=seen.append)
    await sign_in(site, emu, customer)
    await site.post(SIGN_OUT)
    assert [c.id for c in seen] == [customer.id]


# -- where `next` may send the visitor ----------------------------------------------------


@pytest.mark.parametrize("target", OPEN_REDIRECTS, ids=repr)
async def test_sign_out_never_redirects_off_site(site: Site, target: str) -> None:
    reply = await site.get(SIGN_OUT, {"next": target})
    assert reply.status in REDIRECTS
    assert reply.location == "/"


@pytest.mark.parametrize("target", OPEN_REDIRECTS, ids=repr)
async def test_sign_in_never_returns_off_site(
    site: Site, emu: Any, customer: Any, target: str
) -> None:
    done = await sign_in(site, emu, customer, target)
    assert done.callback.location == "/"


@pytest.mark.parametrize("target", OPEN_REDIRECTS[:6], ids=repr)
async def test_access_denied_never_returns_off_site(site: Site, target: str) -> None:
    _, params = await start_sign_in(site, target)
    reply = await site.get(CALLBACK, {"error": "access_denied", "state": params["state"]})
    assert reply.location == "/"


@pytest.mark.parametrize(
    "raw_query",
    ["next=/%0d%0aSet-Cookie:x", "next=%2F%0D%0ASet-Cookie%3Ax%3D1", "next=/%0aLocation:%20//e"],
)
async def test_header_injection_through_next_is_refused(site: Site, raw_query: str) -> None:
    reply = await site.get(SIGN_OUT, raw_query)
    assert reply.location == "/"
    assert all(not c.name.lower().startswith("x") for c in reply.cookies)
    assert [name.lower() for name, _ in reply.headers].count("location") == 1


async def test_a_same_site_next_with_a_query_is_kept(site: Site) -> None:
    reply = await site.get(SIGN_OUT, {"next": "/shop/item?id=7&x=%2F"})
    assert reply.location == "/shop/item?id=7&x=%2F"


# -- mounted under a prefix (SCRIPT_NAME / root_path) -------------------------------------


async def test_mounted_sign_in_builds_the_redirect_uri_with_the_prefix(
    make_site: MakeSite,
) -> None:
    site = make_site(mount="/app")
    _, params = await start_sign_in(site, "/app/paid")
    assert params["redirect_uri"] == "http://localhost/app" + CALLBACK


async def test_mounted_sign_in_returns_to_the_prefixed_next(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(mount="/app")
    done = await sign_in(site, emu, customer, "/app/paid")
    assert done.callback.location == "/app/paid"
    paid = await site.get("/app/paid")
    assert paid.status == 200
    assert site.calls.last.amount == PRICE


@pytest.mark.parametrize("accept", ALL_CLIENTS, ids=accept_id)
async def test_mounted_sign_in_prompt_points_at_the_prefixed_routes(
    make_site: MakeSite, accept: str
) -> None:
    site = make_site(mount="/app")
    reply = await site.get("/app/paid", accept=accept)
    assert_sign_in_required(reply, accept, "/app/paid", mount="/app")


@pytest.mark.parametrize("target", ["//evil.com", "https://evil.com", "/\\evil.com"])
async def test_mounted_off_site_next_lands_on_the_mount_root(
    make_site: MakeSite, target: str
) -> None:
    site = make_site(mount="/app")
    reply = await site.get("/app" + SIGN_OUT, {"next": target})
    assert reply.location == "/app/"


async def test_mounted_sign_out_without_next_lands_on_the_mount_root(
    make_site: MakeSite,
) -> None:
    site = make_site(mount="/app")
    reply = await site.post("/app" + SIGN_OUT)
    assert reply.location == "/app/"


# -- a priced request -------------------------------------------------------------------


@pytest.mark.parametrize("accept", ALL_CLIENTS, ids=accept_id)
async def test_a_signed_in_visitor_is_charged_once_and_served(
    site: Site, emu: Any, customer: Any, accept: str
) -> None:
    await sign_in(site, emu, customer)
    reply = await site.get("/paid", accept=accept)
    assert reply.status == 200
    assert reply.json()["charge"] == PRICE
    assert len(site.calls) == 1
    assert site.calls.last.customer.id == customer.id
    assert site.calls.last.amount == PRICE
    (row,) = charges(emu, customer)
    assert row.kind == "transaction"
    assert row.merchant == emu.publishable_key
    assert row.captured_micros == PRICE
    assert row.idempotency_key


async def test_every_paid_request_is_one_charge_with_its_own_idempotency_key(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    for _ in range(3):
        assert (await site.get("/paid")).status == 200
    rows = charges(emu, customer)
    assert [r.captured_micros for r in rows] == [PRICE] * 3
    assert len({r.idempotency_key for r in rows}) == 3
    assert len(site.calls) == 3


async def test_the_charge_the_app_sees_carries_the_idempotency_key_of_the_ledger_row(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    await site.get("/paid")
    (row,) = charges(emu, customer)
    assert site.calls.last.charge.idempotency_key == row.idempotency_key


@pytest.mark.parametrize("accept", ALL_CLIENTS, ids=accept_id)
async def test_an_anonymous_visitor_is_asked_to_sign_in_and_the_app_does_not_run(
    site: Site, accept: str
) -> None:
    reply = await site.get("/paid", accept=accept)
    assert_sign_in_required(reply, accept, "/paid")
    assert len(site.calls) == 0


async def test_the_sign_in_prompt_returns_to_the_full_path_and_query(site: Site) -> None:
    reply = await site.get("/paid/report", "year=2024&q=a%20b", accept=BROWSER)
    href = sign_in_button_href(reply.text)
    assert href is not None
    assert query_of(href)["next"] == "/paid/report?year=2024&q=a%20b"


async def test_the_sign_in_prompt_shows_the_price_to_browsers(site: Site) -> None:
    reply = await site.get("/paid", accept=BROWSER)
    assert "0.003 USD" in reply.text


async def test_the_api_sign_in_url_is_absolute_and_leads_to_the_sign_in_route(
    site: Site,
) -> None:
    reply = await site.get("/paid", accept=JSON)
    url = reply.json()["sign_in_url"]
    assert url.startswith("http://localhost" + SIGN_IN + "?")
    follow = await site.get(path_and_query(url))
    assert follow.status in REDIRECTS
    assert follow.location is not None
    assert "/customer/authorize?" in follow.location


async def test_after_signing_in_from_the_prompt_the_visitor_gets_the_page(
    site: Site, emu: Any, customer: Any
) -> None:
    prompt = await site.get("/paid/report", "year=2024", accept=BROWSER)
    href = sign_in_button_href(prompt.text)
    assert href is not None
    start = await site.get(path_and_query(href))
    assert start.location is not None
    params = query_of(start.location)
    code = issue_code(emu, customer, params["redirect_uri"])
    back = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert back.location == "/paid/report?year=2024"
    paid = await site.get(back.location)
    assert paid.status == 200
    assert site.calls.last.path == "/paid/report"


def _tampered(value: str) -> str:
    middle = len(value) // 2
    flipped = "A" if value[middle] != "A" else "B"
    return value[:middle] + flipped + value[middle + 1 :]


BAD_COOKIES: dict[str, Callable[[str], str]] = {
    "tampered": _tampered,
    "truncated": lambda value: value[:-7],
    "empty-ish": lambda value: "x",
    "garbage": lambda value: "not-a-fernet-token-at-all-" * 3,
    "non-ascii": lambda value: value[:20] + "é" + value[21:],
    "quoted": lambda value: '"' + value[:-3] + '"',
    "base64-of-plaintext": lambda value: base64.urlsafe_b64encode(
        b'{"v":1,"iat":0,"d":{"t":"x","c":["x","","","",false]}}'
    ).decode(),
}


@pytest.mark.parametrize("accept", [BROWSER, ANY], ids=accept_id)
@pytest.mark.parametrize("damage", list(BAD_COOKIES))
async def test_a_damaged_session_cookie_is_no_session_and_is_cleared(
    site: Site, emu: Any, customer: Any, damage: str, accept: str
) -> None:
    done = await sign_in(site, emu, customer)
    name = site.session_name
    assert name is not None
    site.jar[name] = BAD_COOKIES[damage](site.jar[name])
    reply = await site.get("/paid", accept=accept)
    assert_sign_in_required(reply, accept, "/paid")
    assert_clears(reply.session_cookie(), like=done.callback.session_cookie())
    assert len(site.calls) == 0
    assert charges(emu, customer) == []


@pytest.mark.parametrize("accept", [BROWSER, JSON], ids=accept_id)
async def test_a_cookie_sealed_under_an_unknown_secret_is_no_session_and_is_cleared(
    make_site: MakeSite, emu: Any, customer: Any, accept: str
) -> None:
    elsewhere = make_site(session_secret=OTHER_SECRET)
    await sign_in(elsewhere, emu, customer)
    site = make_site()
    site.jar.update(elsewhere.jar)
    reply = await site.get("/paid", accept=accept)
    assert_sign_in_required(reply, accept, "/paid")
    assert_clears(reply.session_cookie())
    assert len(site.calls) == 0
    assert charges(emu, customer) == []


async def test_an_expired_session_is_no_session_and_is_cleared(
    site: Site, emu: Any, customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_in(site, emu, customer)
    later = time.time() + 31 * 24 * 3600  # past the default 30-day session
    # The core's clock comes through its constructor.
    monkeypatch.setattr(site.mw, "_core", Core(site.mw.settings, clock=lambda: later))
    reply = await site.get("/paid", accept=BROWSER)
    assert_sign_in_required(reply, BROWSER, "/paid")
    assert_clears(reply.session_cookie())
    assert len(site.calls) == 0


async def test_a_state_cookie_replayed_as_a_session_is_no_session(
    site: Site, emu: Any, customer: Any
) -> None:
    start, _ = await start_sign_in(site)
    state = start.state_cookie()
    assert state is not None
    site.jar["st_session"] = state.value
    reply = await site.get("/paid", accept=JSON)
    assert_sign_in_required(reply, JSON, "/paid")
    assert_clears(reply.session_cookie())


async def test_two_different_session_cookies_are_no_session(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    first, second = make_site(), make_site()
    await sign_in(first, emu, customer)
    await sign_in(second, emu, new_customer(emu))
    assert first.session_value != second.session_value
    cookie = f"st_session={first.session_value}; st_session={second.session_value}"
    reply = await first.get("/paid", accept=JSON, cookie=cookie.encode())
    assert reply.status == 401
    assert len(first.calls) == 0


@pytest.mark.parametrize("accept", [BROWSER, JSON], ids=accept_id)
async def test_a_customer_over_their_spending_limit_gets_a_402_and_the_app_does_not_run(
    site: Site, emu: Any, accept: str
) -> None:
    poor = new_customer(emu, limit_micros=PRICE - 1)
    await sign_in(site, emu, poor)
    reply = await site.get("/paid", accept=accept)
    assert reply.status == 402
    assert reply.header("Cache-Control") == "no-store"
    if accept == BROWSER:
        assert reply.content_type == "text/html"
    else:
        assert reply.content_type == "application/problem+json"
        assert reply.json()["status"] == 402
    assert len(site.calls) == 0
    assert charges(emu, poor) == []
    assert site.session_value is not None  # still signed in: they may raise the limit


async def test_the_limit_stops_charges_exactly_when_it_is_reached(site: Site, emu: Any) -> None:
    exact = new_customer(emu, limit_micros=2 * PRICE)
    await sign_in(site, emu, exact)
    statuses = [(await site.get("/paid", accept=JSON)).status for _ in range(3)]
    assert statuses == [200, 200, 402]
    assert len(site.calls) == 2
    assert sum(r.captured_micros for r in charges(emu, exact)) == 2 * PRICE


async def test_a_blocked_customer_gets_a_402(site: Site, emu: Any, customer: Any) -> None:
    await sign_in(site, emu, customer)
    emu.update_customer(customer.id, blocked=True)
    reply = await site.get("/paid", accept=JSON)
    assert reply.status == 402
    assert len(site.calls) == 0


@pytest.mark.parametrize("accept", [BROWSER, JSON], ids=accept_id)
async def test_a_revoked_grant_asks_to_sign_in_again_and_clears_the_session(
    site: Site, emu: Any, customer: Any, accept: str
) -> None:
    done = await sign_in(site, emu, customer)
    emu.revoke(customer_id=customer.id)
    reply = await site.get("/paid", accept=accept)
    assert_sign_in_required(reply, accept, "/paid")
    assert_clears(reply.session_cookie(), like=done.callback.session_cookie())
    assert len(site.calls) == 0
    assert charges(emu, customer) == []


async def test_after_a_revocation_signing_in_again_works(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    emu.revoke(customer_id=customer.id)
    assert (await site.get("/paid")).status == 401
    await sign_in(site, emu, customer)
    assert (await site.get("/paid")).status == 200


OUTAGES: dict[str, dict[str, Any]] = {
    "maintenance_mode": {"error": "maintenance_mode"},
    "server_error": {"error": "server_error"},
    "slow": {"latency": 1.0},
    "dropped-before-processing": {"drop": "before"},
    "dropped-after-processing": {"drop": "after"},
    "endless-body": {"endless_body": True},
}


# How many ledger rows the one failed attempt may leave: a retry would add one more.
ROWS_LEFT = {
    "maintenance_mode": {0},
    "server_error": {0},
    "slow": {0, 1},  # the emulator may still be processing it
    "dropped-before-processing": {0},
    "dropped-after-processing": {1},
    "endless-body": {1},
}


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_an_outage_is_a_503_with_retry_after_and_the_charge_is_never_resent(
    make_site: MakeSite, emu: Any, customer: Any, outage: str
) -> None:
    site = make_site(timeout=0.5)
    await sign_in(site, emu, customer)
    # Only the first attempt fails: a second one would succeed, run the app, add a row.
    emu.set_faults(count=1, path="/api/v1/transactions", **OUTAGES[outage])
    reply = await site.get("/paid", accept=JSON)
    assert reply.status == 503
    assert reply.content_type == "application/problem+json"
    retry_after = reply.header("Retry-After")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert reply.header("Cache-Control") == "no-store"
    assert len(site.calls) == 0
    assert site.session_value is not None  # an outage is nobody's sign-in problem
    rows = charges(emu, customer)
    assert len(rows) in ROWS_LEFT[outage]
    assert len({r.idempotency_key for r in rows}) == len(rows)


async def test_an_outage_shows_browsers_a_page_with_retry_after(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    emu.set_faults(count=1, error="maintenance_mode")
    reply = await site.get("/paid", accept=BROWSER)
    assert reply.status == 503
    assert reply.content_type == "text/html"
    assert reply.header("Retry-After") is not None
    assert len(site.calls) == 0


async def test_an_unreachable_small_transfers_is_a_503(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    signed = make_site()
    await sign_in(signed, emu, customer)
    site = make_site(base_url="http://127.0.0.1:9")  # the discard port: nothing listens
    site.jar.update(signed.jar)
    reply = await site.get("/paid", accept=JSON)
    assert reply.status == 503
    assert reply.header("Retry-After") is not None
    assert len(site.calls) == 0


# Every Small Transfers error code a charge can meet, and what the visitor must get.
CHARGE_ERRORS = {
    "invalid_request": 502,
    "validation_error": 502,
    "unauthenticated": 502,
    "invalid_credentials": 502,
    "forbidden": 502,
    "admin_required": 502,
    "merchant_inactive": 502,
    "invalid_access_token": 401,
    "authorization_revoked": 401,
    "authorization_inactive": 401,
    "charges_blocked": 402,
    "charge_limit_exceeded": 402,
    "payment_provider_declined": 402,
    "maintenance_mode": 503,
    "server_error": 503,
}


@pytest.mark.parametrize(("code", "status"), list(CHARGE_ERRORS.items()))
async def test_each_small_transfers_error_maps_to_the_contract_status(
    site: Site, emu: Any, customer: Any, code: str, status: int
) -> None:
    await sign_in(site, emu, customer)
    emu.set_faults(count=1, error=code)
    reply = await site.get("/paid", accept=JSON)
    assert reply.status == status
    assert reply.content_type == "application/problem+json"
    assert len(site.calls) == 0
    session = reply.session_cookie()
    if status == 401:
        assert_clears(session)
    else:
        assert session is None, "only a revoked or invalid token ends the session"


async def test_rejected_merchant_keys_on_a_charge_are_a_502(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    good = make_site()
    await sign_in(good, emu, customer)
    wrong = make_site(secret_key="sk_test_wrong")
    wrong.jar.update(good.jar)
    reply = await wrong.get("/paid", accept=BROWSER)
    assert reply.status == 502
    assert reply.content_type == "text/html"
    assert "sk_test_wrong" not in reply.text
    assert len(wrong.calls) == 0
    assert charges(emu, customer) == []
    assert wrong.session_value is not None  # the visitor did nothing wrong


@pytest.mark.parametrize("outage", ["maintenance_mode", "dropped-before-processing"])
async def test_fail_open_serves_the_app_uncharged_during_an_outage(
    make_site: MakeSite, emu: Any, customer: Any, outage: str
) -> None:
    site = make_site(fail_open=True, timeout=0.5)
    await sign_in(site, emu, customer)
    emu.set_faults(count=1, **OUTAGES[outage])
    reply = await site.get("/paid")
    assert reply.status == 200
    assert len(site.calls) == 1
    assert site.calls.last.customer.id == customer.id
    assert site.calls.last.has_charge_key
    assert site.calls.last.charge is None
    assert charges(emu, customer) == []


async def test_fail_open_still_refuses_a_customer_over_the_limit(
    make_site: MakeSite, emu: Any
) -> None:
    site = make_site(fail_open=True)
    poor = new_customer(emu, limit_micros=1)
    await sign_in(site, emu, poor)
    assert (await site.get("/paid")).status == 402
    assert len(site.calls) == 0


# -- free requests ---------------------------------------------------------------------


async def test_a_free_request_from_an_anonymous_visitor_runs_with_no_customer(
    site: Site,
) -> None:
    reply = await site.get("/free")
    assert reply.status == 200
    seen = site.calls.last
    assert seen.has_customer_key
    assert seen.customer is None
    assert seen.has_charge_key
    assert seen.charge is None
    assert reply.cookies == []


async def test_a_free_request_from_a_signed_in_visitor_sees_the_customer_and_no_charge(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    reply = await site.get("/free")
    assert reply.status == 200
    assert site.calls.last.customer.id == customer.id
    assert site.calls.last.has_charge_key
    assert site.calls.last.charge is None
    assert charges(emu, customer) == []


async def test_everything_is_free_without_pricing(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(pricing=None)
    await sign_in(site, emu, customer)
    assert (await site.get("/paid")).status == 200
    assert site.calls.last.charge is None
    assert site.calls.last.customer.id == customer.id
    assert charges(emu, customer) == []


async def test_a_free_request_with_a_damaged_cookie_runs_anonymous_and_clears_it(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    name = site.session_name
    assert name is not None
    site.jar[name] = _tampered(site.jar[name])
    reply = await site.get("/free")
    assert reply.status == 200
    assert site.calls.last.customer is None
    assert_clears(reply.session_cookie())


async def test_the_mapping_shortcut_prices_by_method_and_prefix(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(pricing={"POST /buy": 5000, "/api/*": 100, "/api/free": 0})
    await sign_in(site, emu, customer)
    assert (await site.get("/buy")).status == 200
    assert site.calls.last.charge is None
    assert (await site.post("/buy")).status == 200
    assert site.calls.last.amount == 5000
    assert (await site.get("/api/items")).status == 200
    assert site.calls.last.amount == 100
    assert (await site.get("/api/free")).status == 200
    assert site.calls.last.charge is None
    assert (await site.get("/api")).status == 200
    assert site.calls.last.charge is None
    assert [r.captured_micros for r in charges(emu, customer)] == [5000, 100]


async def test_a_pricing_callable_sees_the_request_and_the_customer(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    seen: list[Any] = []

    def pricing(request: Any) -> int | None:
        seen.append(
            (
                request.method,
                request.path,
                request.query_string,
                request.headers.get("x-plan"),
                request.customer.id if request.customer else None,
            )
        )
        return 1234 if request.path.startswith("/metered") else None

    site = make_site(pricing=pricing)
    await sign_in(site, emu, customer)
    reply = await site.get("/metered", "n=2", headers={"X-Plan": "gold"})
    assert reply.status == 200
    assert site.calls.last.amount == 1234
    assert seen[-1] == ("GET", "/metered", "n=2", "gold", customer.id)


async def test_a_pricing_callable_that_fails_charges_nothing_and_runs_nothing(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    def pricing(request: Any) -> int:
        raise LookupError("price list unavailable")

    site = make_site(pricing=pricing)
    await sign_in(site, emu, customer)
    reply = await site.get("/paid", accept=JSON)
    assert 500 <= reply.status < 600
    assert len(site.calls) == 0
    assert charges(emu, customer) == []


# -- secret rotation -------------------------------------------------------------------


async def test_a_cookie_sealed_under_a_retired_secret_still_works_and_is_resealed(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    old = make_site(session_secret=SECRET)
    done = await sign_in(old, emu, customer)
    rotated = make_site(session_secret=[OTHER_SECRET, SECRET])
    rotated.jar.update(old.jar)
    before = rotated.session_value
    reply = await rotated.get("/paid")
    assert reply.status == 200
    assert rotated.calls.last.customer.id == customer.id
    resealed = reply.session_cookie()
    assert resealed is not None
    assert not resealed.clears
    assert resealed.value != before
    original = done.callback.session_cookie()
    assert original is not None
    assert resealed.flags == original.flags
    assert int(resealed.attrs["max-age"]) <= int(original.attrs["max-age"])
    # The new cookie opens under the new secret alone; the old one no longer does.
    only_new = make_site(session_secret=OTHER_SECRET)
    only_new.jar.update(rotated.jar)
    assert (await only_new.get("/paid")).status == 200
    only_new.jar["st_session"] = str(before)
    assert (await only_new.get("/paid", accept=JSON)).status == 401


async def test_a_cookie_under_the_current_secret_is_not_resealed(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(session_secret=[SECRET, OTHER_SECRET])
    await sign_in(site, emu, customer)
    reply = await site.get("/paid")
    assert reply.status == 200
    assert reply.session_cookie() is None


async def test_a_retired_cookie_on_a_free_page_is_resealed_too(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    old = make_site(session_secret=SECRET)
    await sign_in(old, emu, customer)
    rotated = make_site(session_secret=[OTHER_SECRET, SECRET])
    rotated.jar.update(old.jar)
    reply = await rotated.get("/free")
    assert reply.status == 200
    assert rotated.calls.last.customer.id == customer.id
    assert reply.sets_session()


# -- hooks -----------------------------------------------------------------------------


def _assert_holds_no_secret(value: Any, *secrets: str) -> None:
    text = (
        repr(value)
        + " "
        + " ".join(
            str(getattr(value, name, ""))
            for name in dir(value)
            if not name.startswith("_") and not callable(getattr(value, name, None))
        )
    )
    assert "st_at_" not in text  # the emulator's access tokens all start so
    for secret in secrets:
        assert secret not in text


async def test_hooks_hear_about_sign_ins_and_charges_without_any_token(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    signed: list[Any] = []
    charged: list[Any] = []
    failed: list[Any] = []
    site = make_site(
        on_sign_in=signed.append, on_charge=charged.append, on_charge_failed=failed.append
    )
    done = await sign_in(site, emu, customer)
    await site.get("/paid?x=1")
    emu.set_faults(count=1, error="charge_limit_exceeded")
    await site.get("/paid")

    assert [c.id for c in signed] == [customer.id]
    (ok,) = charged
    assert ok.outcome == "charged"
    assert ok.amount_micros == PRICE
    assert ok.customer_id == customer.id
    assert ok.path == "/paid"
    assert ok.method == "GET"
    (row,) = charges(emu, customer)
    assert ok.idempotency_key == row.idempotency_key
    (refused,) = failed
    assert refused.outcome == "refused"
    assert refused.code == "charge_limit_exceeded"
    assert refused.customer_id == customer.id
    for event in (*signed, ok, refused):
        _assert_holds_no_secret(event, done.code, emu.secret_key, SECRET, str(site.session_value))


async def test_a_hook_that_raises_does_not_break_the_paid_page(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("bookkeeping is down")

    site = make_site(on_charge=broken, on_sign_in=broken)
    await sign_in(site, emu, customer)
    reply = await site.get("/paid")
    assert reply.status == 200
    assert len(charges(emu, customer)) == 1


# -- the session cookie ----------------------------------------------------------------


async def test_the_session_cookie_is_httponly_lax_path_root_no_domain_and_small(
    site: Site, emu: Any, customer: Any
) -> None:
    done = await sign_in(site, emu, customer)
    cookie = done.callback.session_cookie()
    assert cookie is not None
    assert cookie.name == "st_session"
    assert "httponly" in cookie.attrs
    assert cookie.attrs["samesite"].lower() == "lax"
    assert cookie.attrs["path"] == "/"
    assert "domain" not in cookie.attrs
    assert int(cookie.attrs["max-age"]) == 30 * 24 * 3600
    assert len(cookie.raw.encode()) < 4096
    assert "secure" not in cookie.attrs  # http://localhost: local development works


async def test_session_max_age_sets_the_cookie_lifetime(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(session_max_age=3600)
    done = await sign_in(site, emu, customer)
    cookie = done.callback.session_cookie()
    assert cookie is not None
    assert cookie.attrs["max-age"] == "3600"


async def test_the_session_cookie_reveals_nothing_in_clear(
    site: Site, emu: Any, customer: Any
) -> None:
    await sign_in(site, emu, customer)
    value = str(site.session_value)
    padded = value + "=" * (-len(value) % 4)
    raw = base64.urlsafe_b64decode(padded)
    for clear in (customer.id, customer.email, customer.last_name, "st_at_"):
        assert clear not in value
        assert clear.encode() not in raw


async def test_a_long_but_ordinary_customer_still_fits_in_the_cookie(site: Site, emu: Any) -> None:
    long = new_customer(
        emu,
        first_name="Maria-Alexandra Josephine",
        last_name="Lovelace-Byron " * 8,
        email=("very.long.mailbox." * 8) + "@example.com",
    )
    done = await sign_in(site, emu, long)
    cookie = done.callback.session_cookie()
    assert cookie is not None
    assert len(cookie.raw.encode()) < 4096
    await site.get("/free")
    assert site.calls.last.customer.last_name == long.last_name


async def test_a_customer_whose_details_do_not_fit_a_cookie_is_still_signed_in(
    site: Site, emu: Any
) -> None:
    huge = new_customer(emu, first_name="山" * 255, last_name="田" * 255)
    _, params = await start_sign_in(site)
    code = issue_code(emu, huge, params["redirect_uri"])
    reply = await site.get(CALLBACK, {"code": code, "state": params["state"]})
    assert reply.status == 303
    assert all(len(c.raw.encode()) < 4096 for c in reply.cookies)
    await site.get("/free")
    assert site.calls.last.customer.id == huge.id


SECURE_CASES = [
    # scheme, host, secure_cookies option, expected Secure
    ("http", "localhost", None, False),
    ("http", "localhost:8000", None, False),
    ("http", "127.0.0.1", None, False),
    ("http", "127.0.0.1:5000", None, False),
    ("http", "[::1]:8000", None, False),
    ("https", "localhost", None, True),
    ("https", "shop.example.com", None, True),
    ("http", "shop.example.com", None, True),
    ("http", "10.0.0.5:8000", None, True),
    ("http", "localhost", True, True),
    ("https", "shop.example.com", False, False),
    ("http", "shop.example.com", False, False),
]


@pytest.mark.parametrize(("scheme", "host", "forced", "secure"), SECURE_CASES)
async def test_secure_flag_and_host_prefix_follow_the_origin(
    make_site: MakeSite,
    emu: Any,
    customer: Any,
    scheme: str,
    host: str,
    forced: bool | None,
    secure: bool,
) -> None:
    options: dict[str, Any] = {} if forced is None else {"secure_cookies": forced}
    site = make_site(scheme=scheme, host=host, **options)
    done = await sign_in(site, emu, customer)
    prefix = "__Host-" if secure else ""
    for cookie in (done.start.state_cookie(), done.callback.session_cookie()):
        assert cookie is not None
        assert ("secure" in cookie.attrs) is secure, cookie.raw
        assert cookie.name.startswith(prefix)
        assert cookie.name.endswith(("st_state", "st_session"))
        if secure:
            assert cookie.attrs["path"] == "/"
            assert "domain" not in cookie.attrs
    # The middleware reads back the cookie it set, under that name.
    assert (await site.get("/paid")).status == 200
    assert len(charges(emu, customer)) == 1


async def test_a_plain_named_cookie_is_ignored_where_the_cookie_must_be_secure(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    local = make_site()
    await sign_in(local, emu, customer)
    public = make_site(scheme="https", host="shop.example.com")
    public.jar.update(local.jar)  # st_session without the __Host- prefix
    reply = await public.get("/paid", accept=JSON)
    assert reply.status == 401
    assert len(public.calls) == 0


# -- nothing secret in logs or reprs ------------------------------------------------------


async def test_nothing_secret_reaches_the_logs(
    make_site: MakeSite, emu: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session_secret = "session-secret-that-must-never-be-logged-0123"
    site = make_site(
        session_secret=[session_secret, SECRET], timeout=0.5, on_charge=_raise_from_hook
    )
    customer = new_customer(emu)
    poor = new_customer(emu, limit_micros=1)
    secrets_seen: set[str] = set()

    # A cookie sealed under the retired secret: signed in elsewhere, re-sealed here.
    old = make_site(session_secret=SECRET)
    done = await sign_in(old, emu, customer)
    secrets_seen |= {done.code, str(old.session_value)}
    site.jar.update(old.jar)
    await site.get("/paid")
    secrets_seen.add(str(site.session_value))
    for fault in ({"error": "maintenance_mode"}, {"drop": "after"}, {"malformed": True}):
        emu.set_faults(count=1, **fault)
        await site.get("/paid", accept=JSON)
    emu.set_faults(count=1, error="invalid_credentials")
    await site.get("/paid", accept=JSON)
    # A failed sign-in, a reused code, a poor customer, a revocation, a sign-out.
    again = await sign_in(site, emu, poor)
    secrets_seen |= {again.code, str(site.session_value)}
    start, params = await start_sign_in(site)
    state_cookie = start.state_cookie()
    assert state_cookie is not None
    secrets_seen.add(state_cookie.value)
    await site.get(CALLBACK, {"code": again.code, "state": params["state"]})
    await site.get("/paid")
    emu.revoke(customer_id=poor.id)
    await site.get("/paid")
    await site.post(SIGN_OUT)
    name = "st_session"
    site.jar[name] = _tampered(str(old.session_value))
    await site.get("/paid")

    forbidden = {emu.secret_key, session_secret, SECRET, "st_at_", *secrets_seen}
    records = [
        r
        for r in caplog.records
        # The test's own client logs its requests to the site, query included:
        # those lines are about the test, not the middleware.
        if not (r.name.startswith("httpx") and "http://localhost" in r.getMessage())
        and not r.name.startswith("st_middleware.emulator")
    ]
    assert any(r.name.startswith("st_middleware") for r in records)
    for record in records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1]) + str(record.exc_info[1])
        for secret in forbidden:
            assert secret not in text, (record.name, record.levelname, text[:300])


def _raise_from_hook(event: Any) -> None:
    raise ValueError(f"hook failed for {event!r}")


async def test_the_middleware_repr_shows_no_secret(make_site: MakeSite, emu: Any) -> None:
    site = make_site(session_secret=["r" * 40, SECRET])
    for text in (repr(site.mw), str(site.mw)):
        assert emu.secret_key not in text
        assert "r" * 40 not in text
        assert SECRET not in text


# -- authorize-capture mode ---------------------------------------------------------------


async def test_authorize_capture_captures_what_the_app_sets(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    reply = await site.get("/paid", "capture=1000")
    assert reply.status == 200
    assert site.calls.last.charge.authorized_micros == PRICE
    (row,) = charges(emu, customer)
    assert row.kind == "charge"
    assert (row.authorized_micros, row.captured_micros, row.state) == (PRICE, 1000, "captured")


async def test_authorize_capture_captures_everything_when_the_app_sets_nothing(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    assert (await site.get("/paid")).status == 200
    (row,) = charges(emu, customer)
    assert row.captured_micros == PRICE


async def test_authorize_capture_clamps_a_capture_above_the_authorization(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    assert (await site.get("/paid", f"capture={PRICE * 10}")).status == 200
    (row,) = charges(emu, customer)
    assert row.captured_micros == PRICE


@pytest.mark.parametrize("status", ["400", "500"])
async def test_authorize_capture_captures_nothing_when_the_app_fails(
    make_site: MakeSite, emu: Any, customer: Any, status: str
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    reply = await site.get("/paid", f"status={status}")
    assert reply.status == int(status)
    (row,) = charges(emu, customer)
    assert row.captured_micros == 0
    assert row.state != "captured"


async def test_authorize_capture_captures_nothing_when_the_app_raises(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    with pytest.raises(RuntimeError, match="the app failed"):
        await site.get("/paid", "raise=1")
    (row,) = charges(emu, customer)
    assert row.captured_micros == 0


async def test_authorize_capture_refuses_early_at_the_spending_limit(
    make_site: MakeSite, emu: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    poor = new_customer(emu, limit_micros=PRICE - 1)
    await sign_in(site, emu, poor)
    assert (await site.get("/paid")).status == 402
    assert len(site.calls) == 0


async def test_authorize_capture_without_an_id_in_the_reply_is_a_502(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    emu.set_faults(count=1, malformed=True, path="/api/v1/charges")
    reply = await site.get("/paid", accept=JSON)
    assert reply.status == 502
    assert len(site.calls) == 0


# -- non-ASCII paths --------------------------------------------------------------------


async def test_a_priced_non_ascii_path_is_charged(make_site: MakeSite) -> None:
    site = make_site(pricing={"/café": PRICE})
    reply = await site.get("/caf%C3%A9", accept=JSON)
    assert reply.status == 401, "a priced page was served free"
    assert len(site.calls) == 0


async def test_the_sign_in_prompt_returns_to_the_non_ascii_path_the_browser_asked_for(
    site: Site,
) -> None:
    reply = await site.get("/paid/caf%C3%A9", accept=JSON)
    assert reply.status == 401
    next_path = query_of(reply.json()["sign_in_url"])["next"]
    assert unquote(next_path) == "/paid/café"


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("publishable_key", "SMALL_TRANSFERS_PUBLISHABLE_KEY"),
        ("secret_key", "SMALL_TRANSFERS_SECRET_KEY"),
        ("session_secret", "SMALL_TRANSFERS_SESSION_SECRET"),
    ],
)
@pytest.mark.parametrize("env", ["unset", "empty"])
async def test_a_missing_key_fails_at_construction_naming_keyword_and_variable(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch, missing: str, variable: str, env: str
) -> None:
    if env == "unset":
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, "")
    with pytest.raises(ConfigurationError) as caught:
        make_site(**{missing: None})
    assert missing in str(caught.value)
    assert variable in str(caught.value)


async def test_a_short_session_secret_fails_without_echoing_it(make_site: MakeSite) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_site(session_secret="too-short-secret")
    assert "session_secret" in str(caught.value)
    assert "SMALL_TRANSFERS_SESSION_SECRET" in str(caught.value)
    assert "too-short-secret" not in str(caught.value)


async def test_keys_can_come_from_the_environment(
    make_site: MakeSite, emu: Any, customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALL_TRANSFERS_PUBLISHABLE_KEY", emu.publishable_key)
    monkeypatch.setenv("SMALL_TRANSFERS_SECRET_KEY", emu.secret_key)
    monkeypatch.setenv("SMALL_TRANSFERS_SESSION_SECRET", f"{OTHER_SECRET},{SECRET}")
    monkeypatch.setenv("SMALL_TRANSFERS_BASE_URL", emu.url)
    site = make_site(publishable_key=None, secret_key=None, session_secret=None, base_url=None)
    await sign_in(site, emu, customer)
    assert (await site.get("/paid")).status == 200
