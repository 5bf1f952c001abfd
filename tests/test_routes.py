"""`next` is honoured only as a same-site path; URLs are built from the request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from st_middleware._config import Settings
from st_middleware._request import Request, forwarded_origin, is_loopback_host
from st_middleware._routes import Routes, safe_next


@pytest.mark.parametrize(
    "value",
    [
        "//evil.com",
        "/\\evil.com",
        "/\\/evil.com",
        "https://evil.com",
        "javascript:alert(1)",
        "evil.com",
        "/ok\r\nSet-Cookie: x=1",
        "/ok\x00",
        "/a\\b",
        "",
        None,
        "/" + "a" * 3000,
    ],
)
def test_unsafe_next_falls_back(value: str | None) -> None:
    assert safe_next(value, "/app/") == "/app/"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/paid", "/paid"),
        ("/paid?x=1&y=2", "/paid?x=1&y=2"),
        ("/app/paid", "/app/paid"),
        ("/caf\u00e9", "/caf%C3%A9"),
        ("/%2F%2Fevil.com", "/%2F%2Fevil.com"),
    ],
)
def test_same_site_paths_are_kept(value: str, expected: str) -> None:
    assert safe_next(value, "/") == expected


@given(st.text(max_size=200))
def test_next_is_always_a_same_site_path_without_control_characters(value: str) -> None:
    result = safe_next(value, "/")
    assert result.startswith("/")
    assert not result.startswith(("//", "/\\"))
    assert all(32 < ord(c) < 127 for c in result)


def routes(**options: object) -> Routes:
    return Routes(
        Settings.from_options(
            publishable_key="pk",
            secret_key="sk",
            session_secret="s" * 32,
            base_url="http://127.0.0.1:8100",
            pricing=None,
            options=options,
            environ={},
        )
    )


def test_redirect_uri_is_built_from_the_request_and_mount() -> None:
    req = Request(method="GET", scheme="https", host="shop.example", path="/x", root_path="/app")
    assert routes().redirect_uri(req) == "https://shop.example/app/smalltransfers/callback"


def test_configured_redirect_uri_wins() -> None:
    req = Request(method="GET", scheme="http", host="a", path="/")
    fixed = "https://shop.example/cb"
    assert routes(redirect_uri=fixed).redirect_uri(req) == fixed


@pytest.mark.parametrize("host", ["evil.com/x", "a b", "a@b", "", "a\r\nb"])
def test_a_host_header_that_is_not_a_host_gives_no_redirect_uri(host: str) -> None:
    req = Request(method="GET", scheme="http", host=host, path="/")
    assert routes().redirect_uri(req) is None


def test_forwarded_headers_count_only_from_trusted_proxies() -> None:
    args = ("http", "internal:8000")
    assert forwarded_origin(*args, "10.0.0.1", frozenset(), "https", "shop.example") == args
    assert forwarded_origin(*args, "10.0.0.9", frozenset({"10.0.0.1"}), "https", "x") == args
    assert forwarded_origin(
        *args, "10.0.0.1", frozenset({"10.0.0.1"}), "https", "shop.example"
    ) == (
        "https",
        "shop.example",
    )
    # The last value is the one the nearest (trusted) proxy appended.
    assert forwarded_origin(*args, None, frozenset({"*"}), "http, HTTPS", "evil, shop") == (
        "https",
        "shop",
    )
    assert forwarded_origin(*args, None, frozenset({"*"}), "gopher", None) == args


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("127.0.0.1:80", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("127.0.0.2", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
