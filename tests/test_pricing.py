"""The mapping shortcut's precedence rules and what a pricing callable may return."""

from __future__ import annotations

import pytest

from st_middleware import Price, PricingError
from st_middleware._pricing import Decision, Preflight, compile_pricing, to_price
from st_middleware._request import Request


def decide(rules: object, path: str, method: str = "GET") -> Decision:
    """What the core would decide for one request (tables inline, callables asked)."""
    rule = compile_pricing(rules)
    assert rule is not None
    request = Request(method=method, scheme="http", host="h", path=path)
    if rule.table is not None:
        return rule.table.price_for(request.method, request.path)
    return rule.settle(request, rule.ask(request))


def price(rules: object, path: str, method: str = "GET") -> int | None:
    result = decide(rules, path, method)
    assert not isinstance(result, Preflight)
    return None if result is None else result.micros


RULES = {
    "/x": 1,
    "POST /x": 2,
    "/x/*": 3,
    "/x/y/*": 4,
    "POST /x/y/*": 5,
    "/*": 6,
    "/free": 0,
}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/x", 1),  # exact
        ("POST", "/x", 2),  # a method beats the same rule without one
        ("GET", "/x/a", 3),  # wildcard below /x/
        ("GET", "/x/", 3),
        ("GET", "/x/y/z", 4),  # a longer wildcard beats a shorter one
        ("POST", "/x/y/z", 5),
        ("GET", "/elsewhere", 6),
        ("GET", "/free", None),  # 0 is free
    ],
)
def test_mapping_precedence(method: str, path: str, expected: int | None) -> None:
    assert price(RULES, path, method) == expected


def test_wildcard_does_not_match_its_own_root() -> None:
    assert price({"/x/*": 5}, "/x") is None
    assert price({"/x/*": 5}, "/xy") is None


def test_exact_beats_wildcard_even_with_a_method() -> None:
    assert price({"/x": 1, "GET /x/*": 9}, "/x/") == 9
    assert price({"/x/a": 1, "GET /x/*": 9}, "/x/a") == 1


def test_unmatched_paths_are_free() -> None:
    assert price({"/paid": 3000}, "/other") is None


@pytest.mark.parametrize(
    "rules",
    [
        {"/x": 1.5},
        {"/x": -1},
        {"/x": True},
        {"/x": "3000"},
        {"x": 1},
        {"/x*": 1},
        {"/*/y": 1},
        {"GE1 /x": 1},
        {1: 1},
    ],
)
def test_bad_rules_fail_at_construction(rules: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        compile_pricing(rules)


@pytest.mark.parametrize("raw", [1.0, -5, "10", True, object()])
def test_a_callable_returning_a_non_price_is_a_pricing_error(raw: object) -> None:
    with pytest.raises(PricingError):
        to_price(raw)


def test_price_objects_carry_a_mode() -> None:
    p = to_price(Price(5000, mode="authorize-capture", capture_micros=10))
    assert p is not None
    assert p.mode == "authorize-capture"
    assert to_price(Price(0)) is None
    assert to_price(0) is None
    assert to_price(None) is None


def test_price_refuses_floats_and_unknown_modes() -> None:
    with pytest.raises(TypeError):
        Price(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        Price(1, mode="later")  # type: ignore[arg-type]


async def _async_price(request: Request) -> int:
    return 1


def test_async_callables_are_recognised() -> None:
    rule = compile_pricing(_async_price)
    assert rule is not None
    assert rule.is_async
    sync_rule = compile_pricing(lambda request: 1)
    assert sync_rule is not None
    assert not sync_rule.is_async
