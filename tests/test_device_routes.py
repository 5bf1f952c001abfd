"""Programs pay too: the device authorization routes and bearer tokens, server side.

The program is a plain httpx client; the customer's browser is another,
signed in with the testing kit (the real sign-in flow against the emulator).
Both adapters; the whole flow in a real Chromium with ``SmallTransfersAuth``
is in tests/browser/test_device_flow.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any

import httpx
import pytest

from st_middleware import SmallTransfersWSGI
from st_middleware._store import MemoryStore
from st_middleware.emulator import Emulator
from st_middleware.testing import charges, emulator_options, new_customer, sign_in

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PRICING = {"/paid": 3000, "/api/*": 500}


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    customer = environ["smalltransfers.customer"]
    charge = environ["smalltransfers.charge"]
    who = customer.id if customer else "nobody"
    amount = charge.amount_micros if charge else 0
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{who} {amount}".encode()]


class Shop:
    """One wrapped app, a program's client and a browser's client on it."""

    def __init__(self, emu: Emulator, **options: Any) -> None:
        options = {"pricing": PRICING, "device_interval": 1, **options}
        self.mw = SmallTransfersWSGI(app, **emulator_options(emu, **options))
        self.emu = emu

    def client(self) -> httpx.Client:
        transport = httpx.WSGITransport(app=self.mw, remote_addr="127.0.0.1")
        return httpx.Client(transport=transport, base_url="http://localhost")

    def close(self) -> None:
        self.mw.close()


@pytest.fixture
def shop(st_emulator: Emulator) -> Iterator[Shop]:
    made = Shop(st_emulator)
    yield made
    made.close()


def start(program: httpx.Client, name: str = "my-agent") -> dict[str, Any]:
    answer = program.post("/smalltransfers/device", data={"client_name": name})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"].startswith("no-store")
    data: dict[str, Any] = answer.json()
    return data


def poll(program: httpx.Client, device_code: str) -> httpx.Response:
    return program.post(
        "/smalltransfers/token", data={"grant_type": GRANT, "device_code": device_code}
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:400]
    return unescape(found.group(1))


def approve(browser: httpx.Client, device: dict[str, Any], decision: str = "allow") -> str:
    """The customer's side: confirm the code, then Allow or Deny (browser already signed in)."""
    page = browser.get(device["verification_uri_complete"])
    assert page.status_code == 200
    assert 'id="st-device-code"' in page.text
    assert device["user_code"] in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    csrf = csrf_of(page.text)
    confirm = browser.post(
        device["verification_uri"], data={"csrf": csrf, "user_code": device["user_code"]}
    )
    assert confirm.status_code == 303, confirm.text
    approval = browser.get(confirm.headers["location"])
    assert 'id="st-allow"' in approval.text
    assert 'id="st-deny"' in approval.text
    done = browser.post(
        device["verification_uri"], data={"csrf": csrf_of(approval.text), "decision": decision}
    )
    assert done.status_code == 200
    assert 'id="st-device-done"' in done.text
    return done.text


@contextmanager
def signed_in_browser(shop: Shop, customer: Any) -> Iterator[httpx.Client]:
    with shop.client() as browser:
        sign_in(browser, shop.emu, customer)
        yield browser


def approved_token(shop: Shop, customer: Any) -> str:
    with shop.client() as program, signed_in_browser(shop, customer) as browser:
        device = start(program)
        approve(browser, device)
        answer = poll(program, device["device_code"])
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


# -- the flow ---------------------------------------------------------------------------------


def test_a_program_gets_a_token_after_one_approval_and_pays_with_it(
    shop: Shop, st_customer: Any
) -> None:
    with shop.client() as program, signed_in_browser(shop, st_customer) as browser:
        device = start(program)
        assert re.fullmatch(
            r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", device["user_code"]
        )
        assert device["verification_uri"] == "http://localhost/smalltransfers/device/verify"
        assert device["verification_uri_complete"].startswith(device["verification_uri"] + "?")
        assert device["token_url"] == "http://localhost/smalltransfers/token"
        assert (device["expires_in"], device["interval"]) == (600, 1)

        pending = poll(program, device["device_code"])
        assert (pending.status_code, pending.json()) == (400, {"error": "authorization_pending"})
        assert poll(program, device["device_code"]).json() == {"error": "slow_down"}
        assert "my-agent" in approve(browser, device)
        time.sleep(1.05)
        granted = poll(program, device["device_code"])
        assert granted.status_code == 200
        assert granted.headers["cache-control"].startswith("no-store")
        body = granted.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 30 * 24 * 3600
        again = poll(program, device["device_code"])
        assert again.json()["error"] == "invalid_grant"  # handed out once

        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        assert program.get("/paid", headers=bearer).text == f"{st_customer.id} 3000"
        assert program.get("/free", headers=bearer).text == f"{st_customer.id} 0"
    assert charges(shop.emu, st_customer) == [3000]


def test_deny_and_expiry(st_emulator: Emulator, st_customer: Any) -> None:
    shop = Shop(st_emulator, device_expires_in=1)
    try:
        with shop.client() as program, signed_in_browser(shop, st_customer) as browser:
            denied = start(program)
            assert "Nothing was allowed" in approve(browser, denied, "deny")
            assert poll(program, denied["device_code"]).json() == {"error": "access_denied"}
            lapsed = start(program)
            time.sleep(1.1)
            assert poll(program, lapsed["device_code"]).json() == {"error": "expired_token"}
            unknown = poll(program, "no-such-code")
            assert unknown.json()["error"] == "invalid_grant"
    finally:
        shop.close()
    assert charges(st_emulator, st_customer) == []


def test_the_token_route_speaks_rfc_6749_errors(shop: Shop) -> None:
    with shop.client() as program:
        wrong = program.post("/smalltransfers/token", data={"grant_type": "password"})
        assert (wrong.status_code, wrong.json()["error"]) == (400, "unsupported_grant_type")
        missing = program.post("/smalltransfers/token", data={"grant_type": GRANT})
        assert missing.json()["error"] == "invalid_request"
        as_json = program.post(
            "/smalltransfers/token", json={"grant_type": GRANT, "device_code": "x" * 43}
        )
        assert as_json.json()["error"] == "invalid_grant"
        assert program.get("/smalltransfers/token").status_code == 405


def test_a_signed_out_browser_signs_in_on_the_way(shop: Shop, st_customer: Any) -> None:
    with shop.client() as program, shop.client() as browser:
        device = start(program)
        page = browser.get(device["verification_uri_complete"])
        confirm = browser.post(
            device["verification_uri"],
            data={"csrf": csrf_of(page.text), "user_code": device["user_code"]},
        )
        assert confirm.status_code == 303
        assert confirm.headers["location"].startswith("/smalltransfers/sign-in?next=")
        assert "%2Fsmalltransfers%2Fdevice%2Fverify" in confirm.headers["location"]


# -- the verification page's defences -------------------------------------------------


def test_the_verification_form_needs_its_token_and_this_site(shop: Shop, st_customer: Any) -> None:
    with shop.client() as program, signed_in_browser(shop, st_customer) as browser:
        device = start(program)
        page = browser.get(device["verification_uri_complete"])
        csrf = csrf_of(page.text)
        forged = browser.post(device["verification_uri"], data={"user_code": device["user_code"]})
        assert forged.status_code == 403
        foreign = browser.post(
            device["verification_uri"],
            data={"csrf": csrf, "user_code": device["user_code"]},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert poll(program, device["device_code"]).json()["error"] == "authorization_pending"


def test_a_few_wrong_codes_then_refused(shop: Shop) -> None:
    with shop.client() as browser:
        page = browser.get("/smalltransfers/device/verify")
        csrf = csrf_of(page.text)
        for _ in range(5):
            wrong = browser.post(
                "/smalltransfers/device/verify", data={"csrf": csrf, "user_code": "BBBB-BBBB"}
            )
            assert wrong.status_code == 400
        refused = browser.post(
            "/smalltransfers/device/verify", data={"csrf": csrf, "user_code": "BBBB-BBBB"}
        )
        assert refused.status_code == 429


def test_a_user_code_is_single_use(shop: Shop, st_customer: Any) -> None:
    with shop.client() as program, signed_in_browser(shop, st_customer) as browser:
        device = start(program)
        approve(browser, device)
        page = browser.get("/smalltransfers/device/verify")
        reuse = browser.post(
            "/smalltransfers/device/verify",
            data={"csrf": csrf_of(page.text), "user_code": device["user_code"]},
        )
        assert reuse.status_code == 400


# -- bearer tokens on requests ------------------------------------------------------------------


def test_api_clients_are_told_how_to_get_a_token(shop: Shop) -> None:
    with shop.client() as program:
        answer = program.get("/paid", headers={"Accept": "application/json"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="smalltransfers"'
    problem = answer.json()
    assert problem["device_authorization_url"] == "http://localhost/smalltransfers/device"
    assert problem["token_url"] == "http://localhost/smalltransfers/token"
    assert problem["price_micros"] == 3000
    assert problem["sign_in_url"].startswith("http://localhost/smalltransfers/sign-in")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: token[:-4] + "AAA=",  # tampered
        lambda token: token[: len(token) // 2],  # truncated
        lambda token: "not-a-token",
    ],
)
def test_a_bad_token_is_invalid_on_priced_paths_and_anonymous_on_free_ones(
    shop: Shop, st_customer: Any, spoil: Any
) -> None:
    token = spoil(approved_token(shop, st_customer))
    with shop.client() as program:
        priced = program.get("/paid", headers={"Authorization": f"Bearer {token}"})
        assert priced.status_code == 401
        assert 'error="invalid_token"' in priced.headers["www-authenticate"]
        assert priced.json()["code"] == "invalid_token"
        free = program.get("/free", headers={"Authorization": f"Bearer {token}"})
        assert free.text == "nobody 0"
    assert charges(shop.emu, st_customer) == []


def test_a_token_of_another_secret_does_not_open(st_emulator: Emulator, st_customer: Any) -> None:
    other = Shop(st_emulator, session_secret="another-secret-" + "x" * 20)
    try:
        token = approved_token(other, st_customer)
    finally:
        other.close()
    shop = Shop(st_emulator)
    try:
        with shop.client() as program:
            assert (
                program.get("/paid", headers={"Authorization": f"Bearer {token}"}).status_code
                == 401
            )
    finally:
        shop.close()


def test_a_token_is_never_taken_from_the_query_string(shop: Shop, st_customer: Any) -> None:
    token = approved_token(shop, st_customer)
    with shop.client() as program:
        for name in ("access_token", "token", "bearer"):
            answer = program.get(
                "/paid", params={name: token}, headers={"Accept": "application/json"}
            )
            assert answer.status_code == 401
    assert charges(shop.emu, st_customer) == []


def test_bearer_and_cookie_together_pay_once_with_the_bearer(shop: Shop, st_customer: Any) -> None:
    token = approved_token(shop, st_customer)
    other = new_customer(shop.emu)
    with signed_in_browser(shop, other) as both:  # carries the other customer's cookie
        answer = both.get("/paid", headers={"Authorization": f"Bearer {token}"})
        assert answer.text == f"{st_customer.id} 3000"
    assert charges(shop.emu, st_customer) == [3000]
    assert charges(shop.emu, other) == []


def test_sign_out_with_the_token_revokes_it_everywhere(
    st_emulator: Emulator, st_customer: Any
) -> None:
    store = MemoryStore()
    one, two = Shop(st_emulator, store=store), Shop(st_emulator, store=store)
    try:
        token = approved_token(one, st_customer)
        bearer = {"Authorization": f"Bearer {token}"}
        with one.client() as program:
            assert program.post("/smalltransfers/sign-out", headers=bearer).status_code == 204
        with two.client() as elsewhere:
            refused = elsewhere.get("/paid", headers=bearer)
            assert refused.status_code == 401
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    finally:
        one.close()
        two.close()
    assert charges(st_emulator, st_customer) == []


def test_a_revoked_authorization_kills_the_token_at_the_next_charge(
    shop: Shop, st_customer: Any
) -> None:
    token = approved_token(shop, st_customer)
    bearer = {"Authorization": f"Bearer {token}"}
    shop.emu.revoke(st_customer.id)
    with shop.client() as program:
        first = program.get("/paid", headers=bearer)
        assert first.status_code == 401
        assert 'error="invalid_token"' in first.headers["www-authenticate"]
        calls_before = len(charges(shop.emu, st_customer))
        again = program.get("/paid", headers=bearer)  # refused from the store, no call
        assert again.status_code == 401
    assert len(charges(shop.emu, st_customer)) == calls_before == 0


def test_tokens_never_reach_the_log(
    shop: Shop, st_customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    token = approved_token(shop, st_customer)
    with shop.client() as program:
        program.get("/paid", headers={"Authorization": f"Bearer {token}"})
    assert token not in caplog.text
    assert token[:40] not in repr(shop.mw)


@pytest.mark.anyio
async def test_the_whole_flow_on_asgi(st_emulator: Emulator, st_customer: Any) -> None:
    from st_middleware import SmallTransfersASGI
    from st_middleware.testing import async_sign_in

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        customer = scope["smalltransfers.customer"]
        body = (customer.id if customer else "nobody").encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    mw = SmallTransfersASGI(
        asgi_app, **emulator_options(st_emulator, pricing=PRICING, device_interval=1)
    )
    transport = httpx.ASGITransport(app=mw)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as program,
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as browser,
    ):
        await async_sign_in(browser, st_emulator, st_customer)
        device = (await program.post("/smalltransfers/device", json={"client_name": "bot"})).json()
        page = await browser.get(device["verification_uri_complete"])
        confirm = await browser.post(
            device["verification_uri"],
            data={"csrf": csrf_of(page.text), "user_code": device["user_code"]},
        )
        approval = await browser.get(confirm.headers["location"])
        await browser.post(
            device["verification_uri"],
            data={"csrf": csrf_of(approval.text), "decision": "allow"},
        )
        fields = {"grant_type": GRANT, "device_code": device["device_code"]}
        token = (await program.post("/smalltransfers/token", data=fields)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await program.get("/paid", headers=bearer)).text == st_customer.id
        assert (await program.get("/free", headers=bearer)).text == st_customer.id
        await mw.aclose()
    assert charges(st_emulator, st_customer) == [3000]
