"""What the servers under test and the load generator must agree on."""

from __future__ import annotations

import time

from st_middleware import Customer, Price, Request
from st_middleware._config import Settings
from st_middleware._session import Cookies, Session

PUBLISHABLE_KEY = "pk_test_bench"
SECRET_KEY = "sk_test_bench"
SESSION_SECRET = "bench-session-secret-0123456789-abcdefghij"
COOKIE_NAME = "st_session"  # plain http on loopback: no __Host- prefix
SESSION_MAX_AGE = 30 * 24 * 3600
PRICE = 3000

#: The app's routes (the same app behind every variant):
#: ``/`` free, ``/me`` free and reads the customer, ``/paid`` charged up front,
#: ``/stream`` authorize-capture around a streamed (chunked, paced) response,
#: ``/ac`` authorize-capture around a short unpaced two-chunk response.
PRICING = {
    "/paid": PRICE,
    "/stream": Price(PRICE, mode="authorize-capture"),
    "/ac": Price(PRICE, mode="authorize-capture"),
}
#: Seconds between the chunks of ``/stream`` (3 gaps after the first chunk).
STREAM_GAP = 0.002
STREAM_CHUNKS = 4

CUSTOMER = Customer("cus_bench_1", "Ada", "Lovelace", "ada@example.com", False)
ACCESS_TOKEN = "tok_bench_" + "x" * 40


def settings(charge_url: str) -> Settings:
    return Settings.from_options(
        publishable_key=PUBLISHABLE_KEY,
        secret_key=SECRET_KEY,
        session_secret=SESSION_SECRET,
        base_url=charge_url,
        pricing=PRICING,
        options={},
    )


def middleware_options(charge_url: str) -> dict[str, object]:
    """The keywords every wrapped variant gets (and the floor reads)."""
    return {
        "publishable_key": PUBLISHABLE_KEY,
        "secret_key": SECRET_KEY,
        "session_secret": SESSION_SECRET,
        "base_url": charge_url,
        "pricing": PRICING,
    }


def session_cookie(host: str = "127.0.0.1:8000") -> str:
    """``st_session=<sealed>`` for CUSTOMER, as the middleware itself seals it.

    Built with the package's own ``Cookies`` and the servers' settings, so the
    load generator needs no browser and no sign-in round trip.
    """
    cookies = Cookies(settings("http://127.0.0.1:1"))
    request = Request(method="GET", scheme="http", host=host, path="/")
    header = cookies.set_session(request, Session(ACCESS_TOKEN, CUSTOMER, int(time.time())))
    pair = header.split(";", 1)[0]
    assert pair.startswith(COOKIE_NAME + "="), pair
    return pair


def cookie_header(host: str = "127.0.0.1:8000") -> str:
    """A realistic Cookie header: the session between two unrelated cookies."""
    return f"_ga=GA1.2.123456789.1700000000; {session_cookie(host)}; theme=dark"


def bad_cookie_header() -> str:
    """A session cookie that does not open (tampered): the middleware clears it."""
    pair = session_cookie()
    return f"_ga=GA1.2.123456789.1700000000; {pair[:-8]}AAAAAAAA; theme=dark"


def bearer_header() -> str:
    """``Bearer <token>`` for CUSTOMER, as the middleware's token route issues it."""
    cookies = Cookies(settings("http://127.0.0.1:1"))
    token, _ = cookies.new_bearer(Session(ACCESS_TOKEN, CUSTOMER, int(time.time())))
    return f"Bearer {token}"
