"""Where a price is decided: the merchant's callable, or the mapping shortcut.

Mapping rules (``{"/path": micros, "/prefix/*": micros, "POST /x": micros}``),
matched against the path *inside* the app (``PATH_INFO`` / the ASGI path
without ``root_path``), so mounting the app elsewhere keeps its prices:

1. ``"/x"`` is exact; ``"/x/*"`` matches every path below ``/x/`` (not ``/x``);
   ``"/*"`` matches everything.
2. An exact rule beats any wildcard.
3. A longer wildcard beats a shorter one.
4. Between otherwise equal rules, one with a method (``"POST /x"``) beats one
   without.
5. Unmatched paths are free.
6. ``OPTIONS`` requests (CORS preflights, which never carry cookies) match
   only rules that name ``OPTIONS``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .charge import Price, check_micros
from .errors import PricingError

if TYPE_CHECKING:
    from .request import Request

__all__ = ["PriceRule", "compile_pricing", "to_price"]

RawPrice = int | Price | None


class PriceRule:
    """A compiled pricing: call it with a request description to get a raw price."""

    __slots__ = ("_call", "is_async", "price_for_path")

    def __init__(self, call: Callable[[Request], Any], is_async: bool) -> None:
        self._call = call
        #: True when the call returns an awaitable (ASGI only).
        self.is_async = is_async
        #: ``(method, path) -> Price | None`` for rule tables; ``None`` for callables.
        self.price_for_path: Callable[[str, str], Price | None] | None = (
            call.price_for if isinstance(call, _MappingPrices) else None
        )

    def __call__(self, request: Request) -> RawPrice | Awaitable[RawPrice]:
        result: RawPrice | Awaitable[RawPrice] = self._call(request)
        return result


def compile_pricing(pricing: object) -> PriceRule | None:
    """Turn the ``pricing`` keyword into a :class:`PriceRule` (``None``: all free)."""
    if pricing is None:
        return None
    if isinstance(pricing, Mapping):
        return PriceRule(_MappingPrices(pricing), is_async=False)
    if callable(pricing):
        call_method = getattr(pricing, "__call__", None)  # noqa: B004 - callable objects too
        is_async = inspect.iscoroutinefunction(pricing) or inspect.iscoroutinefunction(call_method)
        return PriceRule(pricing, is_async=is_async)
    raise TypeError("must be a callable, a mapping of path rules to micros, or None")


class _MappingPrices:
    """The mapping shortcut, compiled into an exact table and ordered wildcards."""

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, rules: Mapping[Any, Any]) -> None:
        exact: dict[tuple[str | None, str], Price | None] = {}
        wildcards: list[tuple[int, int, str | None, str, Price | None]] = []
        for key, value in rules.items():
            method, path = _parse_rule(key)
            price = _rule_price(key, value)
            if path.endswith("/*"):
                prefix = path[:-1]
                wildcards.append((len(prefix), method is not None, method, prefix, price))
            else:
                exact[(method, path)] = price
        # Longest prefix first; a rule with a method before one without.
        wildcards.sort(key=lambda rule: (-rule[0], -rule[1]))
        self._exact = exact
        self._wildcards = [(method, prefix, price) for _, _, method, prefix, price in wildcards]

    def __call__(self, request: Request) -> Price | None:
        return self.price_for(request.method, request.path)

    def price_for(self, method: str, path: str) -> Price | None:
        if method == "OPTIONS":
            # CORS preflights never carry cookies: pricing them would break CORS.
            # Only a rule that names OPTIONS applies.
            return self._exact.get(("OPTIONS", path)) or self._wildcard(path, method, True)
        exact = self._exact
        if exact:
            if (method, path) in exact:
                return exact[(method, path)]
            if (None, path) in exact:
                return exact[(None, path)]
        return self._wildcard(path, method, False)

    def _wildcard(self, path: str, method: str, method_only: bool) -> Price | None:
        for rule_method, prefix, price in self._wildcards:
            if path.startswith(prefix) and (
                rule_method == method or (rule_method is None and not method_only)
            ):
                return price
        return None


def _parse_rule(key: object) -> tuple[str | None, str]:
    if not isinstance(key, str):
        raise TypeError(f"rule {key!r} must be a string like '/path' or 'POST /path'")
    method, _, path = key.strip().rpartition(" ")
    method = method.strip()
    if not path.startswith("/") or (method and not method.isalpha()):
        raise ValueError(f"rule {key!r} must look like '/path', '/prefix/*' or 'POST /path'")
    if "*" in path[:-1] or (path.endswith("*") and not path.endswith("/*")):
        raise ValueError(f"rule {key!r}: '*' is only allowed as a final '/*'")
    return (method.upper() or None), path


def _rule_price(key: str, value: object) -> Price | None:
    if isinstance(value, Price):
        return value if value.micros else None
    micros = check_micros(value, f"price of {key!r}")
    return Price(micros) if micros else None


def to_price(raw: object) -> Price | None:
    """What a pricing callable returned, as a :class:`Price` (``None``: free).

    Anything else than ``None``, a non-negative ``int`` or a :class:`Price` is
    a merchant bug, reported as :class:`PricingError` (the request is refused,
    nothing is charged).
    """
    if raw is None:
        return None
    if isinstance(raw, Price):
        return raw if raw.micros else None
    try:
        micros = check_micros(raw, "price")
    except (TypeError, ValueError) as exc:
        raise PricingError(str(exc)) from None
    return Price(micros) if micros else None
