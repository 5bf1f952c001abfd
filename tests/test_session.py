"""Sealing and opening cookies: every cookie that does not open is simply no session."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from st_middleware._config import Settings
from st_middleware._customer import Customer
from st_middleware._errors import CookieTooLarge
from st_middleware._request import Request
from st_middleware._session import Cookies, Session

SECRET_A = "a" * 32
SECRET_B = "b" * 40


def make_cookies(secrets: list[str] | str = SECRET_A, **options: object) -> Cookies:
    settings = Settings.from_options(
        publishable_key="pk",
        secret_key="sk",
        session_secret=secrets,
        base_url="http://127.0.0.1:9",
        pricing=None,
        options=options,
        environ={},
    )
    return Cookies(settings)


def request(cookie: str = "", *, scheme: str = "http", host: str = "localhost") -> Request:
    return Request(method="GET", scheme=scheme, host=host, path="/", cookie=cookie)


ADA = Customer("c1", "Ada", "Lovelace", "ada@example.com", False)


def sealed(cookies: Cookies, req: Request, session: Session | None = None) -> str:
    header = cookies.set_session(req, session or Session("tok", ADA, int(time.time())))
    name_value = header.split(";", 1)[0]
    return name_value


def test_a_sealed_session_opens_with_the_same_customer() -> None:
    cookies = make_cookies()
    req = request(sealed(cookies, request()))
    read = cookies.read_session(req)
    assert read.session is not None
    assert read.session.customer == ADA
    assert read.session.access_token == "tok"
    assert read.set_cookies == ()


def test_no_cookie_is_no_session_and_no_cookie_work() -> None:
    read = make_cookies().read_session(request("other=1"))
    assert read.session is None
    assert read.set_cookies == ()


def flip_bit(token: str, position: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[position % len(raw)] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("position", [0, 9, 25, 40, -1, -20])
def test_a_tampered_cookie_is_no_session_and_is_cleared(position: int) -> None:
    cookies = make_cookies()
    name, value = sealed(cookies, request()).split("=", 1)
    read = cookies.read_session(request(f"{name}={flip_bit(value, position)}"))
    assert read.session is None
    assert len(read.set_cookies) == 1
    assert "Max-Age=0" in read.set_cookies[0]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[: len(v) // 2],  # truncated
        lambda v: v + "é",  # non-ASCII (Fernet raises ValueError, not InvalidToken)
        lambda v: "é" * 60,
        lambda v: v.replace("A", "!", 1) if "A" in v else "!" + v,  # outside the alphabet
        lambda v: "",
        lambda v: "x" * 5000,
    ],
)
def test_a_mangled_cookie_is_no_session(mangle: object) -> None:
    cookies = make_cookies()
    name, value = sealed(cookies, request()).split("=", 1)
    assert callable(mangle)
    read = cookies.read_session(request(f"{name}={mangle(value)}"))
    assert read.session is None


def test_an_expired_session_is_no_session() -> None:
    cookies = make_cookies(session_max_age=60)
    old = Session("tok", ADA, int(time.time()) - 120)
    req = request(sealed(cookies, request(), old))
    assert cookies.read_session(req).session is None


def test_a_cookie_of_a_foreign_secret_is_no_session() -> None:
    mine, theirs = make_cookies(SECRET_A), make_cookies(SECRET_B)
    req = request(sealed(theirs, request()))
    assert mine.read_session(req).session is None


def test_a_state_cookie_never_opens_as_a_session() -> None:
    cookies = make_cookies(cookie_name="same_name_test", state_cookie_name="st_state")
    _, state_header = cookies.new_state(request(), "/next")
    state_value = state_header.split(";", 1)[0].split("=", 1)[1]
    req = request(f"same_name_test={state_value}")
    assert cookies.read_session(req).session is None


def test_a_session_cookie_never_opens_as_a_state() -> None:
    cookies = make_cookies()
    value = sealed(cookies, request()).split("=", 1)[1]
    assert cookies.read_state(request(f"st_state={value}")) is None


def test_rotation_opens_old_cookies_and_reseals_them_keeping_the_sign_in_time() -> None:
    old = make_cookies([SECRET_B])
    issued = int(time.time()) - 1000
    req = request(sealed(old, request(), Session("tok", ADA, issued)))
    rotated = make_cookies([SECRET_A, SECRET_B], session_max_age=5000)
    read = rotated.read_session(req)
    assert read.session is not None
    assert read.session.issued_at == issued
    assert len(read.set_cookies) == 1
    # The re-sealed cookie opens under the new secret alone, with the same iat,
    # and its Max-Age runs to the original end of the session, not further.
    fresh = make_cookies([SECRET_A], session_max_age=5000)
    reread = fresh.read_session(request(read.set_cookies[0].split(";", 1)[0]))
    assert reread.session is not None
    assert reread.session.issued_at == issued
    max_age = int(read.set_cookies[0].split("Max-Age=")[1].split(";")[0])
    assert 3990 <= max_age <= 4000


def test_two_different_session_cookies_mean_no_session() -> None:
    cookies = make_cookies()
    one = sealed(cookies, request())
    two = sealed(cookies, request(), Session("other", ADA, int(time.time())))
    read = cookies.read_session(request(f"{one}; {two}"))
    assert read.session is None


def test_the_same_session_cookie_twice_is_still_the_session() -> None:
    cookies = make_cookies()
    one = sealed(cookies, request())
    assert cookies.read_session(request(f"{one}; {one}")).session is not None


def test_cookie_attributes_on_loopback_http() -> None:
    header = make_cookies().set_session(request(), Session("tok", ADA, int(time.time())))
    assert header.startswith("st_session=")
    parts = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= parts
    assert "secure" not in parts
    assert "domain" not in parts
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert len(header) < 4096


@pytest.mark.parametrize(
    ("scheme", "host"),
    [("https", "shop.example"), ("http", "shop.example"), ("https", "localhost")],
)
def test_secure_cookies_take_the_host_prefix(scheme: str, host: str) -> None:
    req = request(scheme=scheme, host=host)
    header = make_cookies().set_session(req, Session("tok", ADA, int(time.time())))
    assert header.startswith("__Host-st_session=")
    assert "Secure" in header


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:5000", "[::1]:80", "LOCALHOST"])
def test_plain_http_on_loopback_is_not_secure(host: str) -> None:
    req = request(host=host)
    header = make_cookies().set_session(req, Session("tok", ADA, int(time.time())))
    assert "Secure" not in header


def test_secure_cookies_option_forces_the_flag() -> None:
    on = make_cookies(secure_cookies=True).clear_session(request())
    off = make_cookies(secure_cookies=False).clear_session(request(scheme="https", host="x.io"))
    assert "Secure" in on
    assert "Secure" not in off


def test_clearing_uses_the_same_name_path_and_flags() -> None:
    cookies = make_cookies()
    req = request(scheme="https", host="shop.example")
    set_ = cookies.set_session(req, Session("tok", ADA, int(time.time())))
    clear = cookies.clear_session(req)
    assert clear.split("=", 1)[0] == set_.split("=", 1)[0]
    strip = lambda h: sorted(p.strip() for p in h.split(";")[1:] if "Max-Age" not in p)  # noqa: E731
    assert strip(clear) == strip(set_)
    assert "Max-Age=0" in clear


def test_long_customer_details_are_shortened_to_fit_the_cookie() -> None:
    huge = Customer("c1", "A" * 4000, "B" * 4000, "c@d", False)
    cookies = make_cookies()
    header = cookies.set_session(request(), Session("tok", huge, int(time.time())))
    assert len(header) < 4096
    read = cookies.read_session(request(header.split(";", 1)[0]))
    assert read.session is not None
    assert read.session.customer.id == "c1"
    assert read.session.customer.first_name == "A" * 64


def test_a_token_too_big_for_a_cookie_fails_loudly_at_seal_time() -> None:
    with pytest.raises(CookieTooLarge):
        make_cookies().set_session(request(), Session("t" * 4000, ADA, int(time.time())))


def test_state_round_trip_and_expiry() -> None:
    cookies = make_cookies()
    state, header = cookies.new_state(request(), "/paid?x=1")
    req = request(header.split(";", 1)[0])
    read = cookies.read_state(req)
    assert read == state
    assert cookies.read_state(req, now=int(time.time()) + 601) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_no_cookie_value_makes_the_opener_raise(value: str) -> None:
    cookies = make_cookies()
    read = cookies.read_session(request(f"st_session={value}"))
    assert read.session is None


def test_bumping_the_session_generation_signs_everybody_out() -> None:
    before = make_cookies()
    req = request(sealed(before, request()))
    assert before.read_session(req).session is not None
    after = make_cookies(session_generation=1)
    read = after.read_session(req)
    assert read.session is None
    assert "Max-Age=0" in read.set_cookies[0]


def test_reject_session_denies_a_replayed_cookie_after_sign_out() -> None:
    signed_out_at: dict[str, int] = {}

    def reject(customer: Customer, issued_at: int) -> bool:
        return issued_at <= signed_out_at.get(customer.id, -1)

    cookies = make_cookies(reject_session=reject)
    replayed = request(sealed(cookies, request()))
    assert cookies.read_session(replayed).session is not None
    signed_out_at[ADA.id] = int(time.time())  # the merchant records the sign-out
    read = cookies.read_session(replayed)
    assert read.session is None
    assert "Max-Age=0" in read.set_cookies[0]


def test_a_failing_reject_hook_fails_closed() -> None:
    def reject(customer: Customer, issued_at: int) -> bool:
        raise RuntimeError("deny list down")

    cookies = make_cookies(reject_session=reject)
    assert cookies.read_session(request(sealed(cookies, request()))).session is None


def test_a_cookie_opened_before_still_expires_on_time() -> None:
    cookies = make_cookies(session_max_age=100)
    issued = int(time.time())
    req = request(sealed(cookies, request(), Session("tok", ADA, issued)))
    assert cookies.read_session(req, now=issued + 10).session is not None  # now cached
    assert cookies.read_session(req, now=issued + 50).session is not None
    assert cookies.read_session(req, now=issued + 101).session is None


def test_the_opened_cookie_cache_stays_bounded() -> None:
    from st_middleware._session import _OPENED_CACHE_SIZE

    cookies = make_cookies()
    for n in range(_OPENED_CACHE_SIZE + 50):
        session = Session(f"tok{n}", ADA, int(time.time()))
        assert cookies.read_session(request(sealed(cookies, request(), session))).session
    assert len(cookies._sessions.seen) == _OPENED_CACHE_SIZE


def test_a_bearer_token_opened_before_still_expires_on_time() -> None:
    clock = [1_000_000.0]
    settings = make_cookies(session_max_age=100)._settings
    cookies = Cookies(settings, clock=lambda: clock[0])
    token, lifetime = cookies.new_bearer(Session("tok", ADA, int(clock[0])))
    assert lifetime == 100
    assert cookies.open_bearer(token) is not None
    clock[0] += 50
    assert cookies.open_bearer(token) is not None  # from the cache of opened tokens
    clock[0] += 51
    assert cookies.open_bearer(token) is None


def test_a_cookie_opened_once_is_never_taken_for_a_bearer_token() -> None:
    # The opened-value caches are per kind: a cookie value already opened (and
    # remembered) must not open as a bearer token, nor a bearer token as a cookie.
    cookies = make_cookies()
    pair = sealed(cookies, request())
    assert cookies.read_session(request(pair)).session is not None
    assert cookies.open_bearer(pair.split("=", 1)[1]) is None
    token, _ = cookies.new_bearer(Session("tok", ADA, int(time.time())))
    assert cookies.open_bearer(token) is not None
    name = pair.split("=", 1)[0]
    assert cookies.read_session(request(f"{name}={token}")).session is None
