"""The free, anonymous fast path decides exactly what the full path would."""

from __future__ import annotations

from typing import Any

import pytest

from st_middleware._config import Settings
from st_middleware._core import Core, Forward, Respond
from st_middleware._effects import AskPricing
from st_middleware._request import Request


def core(pricing: Any) -> Core:
    return Core(
        Settings.from_options(
            publishable_key="pk",
            secret_key="sk",
            session_secret="s" * 32,
            base_url="http://127.0.0.1:9",
            pricing=pricing,
            options={},
            environ={},
        )
    )


RULES = {"/paid": 3000, "/api/*": 10, "POST /form": 5}
CASES = [
    ("GET", "/", ""),
    ("GET", "/paid", ""),
    ("GET", "/api/x", ""),
    ("POST", "/form", ""),
    ("GET", "/form", ""),
    ("OPTIONS", "/paid", ""),
    ("GET", "/smalltransfers/sign-in", ""),
    ("GET", "/", "st_session=abc"),
    ("GET", "/", "other=1"),
]


def decide(c: Core, request: Request) -> Forward | Respond:
    """Run the core's flow, answering its pricing questions (no other I/O is needed here)."""
    flow = c.handle(request)
    try:
        effect = next(flow)
        while True:
            assert isinstance(effect, AskPricing)
            effect = flow.send(effect.rule.ask(effect.request))
    except StopIteration as stop:
        decision: Forward | Respond = stop.value
        return decision


def full_path_says_free_and_anonymous(c: Core, method: str, path: str, cookie: str) -> bool:
    step = decide(
        c, Request(method=method, scheme="http", host="localhost", path=path, cookie=cookie)
    )
    return (
        isinstance(step, Forward)
        and step.customer is None
        and step.charge is None
        and not step.set_cookies
    )


@pytest.mark.parametrize(("method", "path", "cookie"), CASES)
@pytest.mark.parametrize("pricing", [RULES, None])
def test_fast_path_never_disagrees_with_the_full_path(
    pricing: Any, method: str, path: str, cookie: str
) -> None:
    c = core(pricing)
    if c.plainly_free(method, path, cookie):
        assert full_path_says_free_and_anonymous(c, method, path, cookie)


def test_fast_path_covers_the_common_free_request() -> None:
    assert core(RULES).plainly_free("GET", "/", "")
    assert core(None).plainly_free("GET", "/anything", "theme=dark")


def test_a_pricing_callable_always_takes_the_full_path() -> None:
    assert not core(lambda request: None).plainly_free("GET", "/", "")


def test_a_session_cookie_or_our_routes_take_the_full_path() -> None:
    c = core(None)
    assert not c.plainly_free("GET", "/", "st_session=x")
    assert not c.plainly_free("GET", "/smalltransfers/callback", "")
