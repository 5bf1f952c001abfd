"""Where a price is decided: the merchant's callable, or the mapping shortcut.

Mapping rules (``{"/path": micros, "/prefix/*": micros, "POST /x": micros}``),
matched against the canonical path *inside* the app (``PATH_INFO`` / the ASGI
path without ``root_path``), so mounting the app elsewhere keeps its prices:

1. ``"/x"`` is exact; ``"/x/*"`` matches every path below ``/x/`` (not ``/x``);
   ``"/*"`` matches everything.
2. An exact rule beats any wildcard.
3. A longer wildcard beats a shorter one.
4. Between otherwise equal rules, one with a method (``"POST /x"``) beats one
   without. Methods are compared upper-cased.
5. Unmatched paths are free.

Two methods are never priced on their own, because every framework routes
them to handlers written for other methods:

- ``HEAD`` runs the ``GET`` handler (its headers leak even without a body):
  it is priced as ``GET``, and a pricing callable sees ``GET``.
- ``OPTIONS`` (CORS preflights, which never carry cookies, and Django views
  that ignore the method) on a priced path gets :data:`PREFLIGHT`: the
  middleware answers it and the app never sees it. "Priced" means priced for
  any method by a rule table, or priced as ``GET`` by a callable (which cannot
  be asked about every method). A rule that names ``OPTIONS`` overrides this:
  OPTIONS is then charged, or free (``0``) on purpose, like any method.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from ._charge import Price, check_micros
from ._errors import PricingError
from ._request import canonical_path

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["PREFLIGHT", "Preflight", "PriceRule", "RuleTable", "compile_pricing", "to_price"]

RawPrice = int | Price | None


class Preflight:
    """The decision "an OPTIONS request to a priced path: answer it ourselves"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PREFLIGHT"


PREFLIGHT: Final = Preflight()
Decision = Price | Preflight | None
_MISSING: Final = object()
_AS_GET = frozenset({"HEAD", "OPTIONS"})


class PriceRule:
    """A compiled pricing: a rule table (decided inline) or the merchant's callable."""

    __slots__ = ("_call", "is_async", "table")

    def __init__(
        self,
        *,
        table: RuleTable | None = None,
        call: Callable[[Request], Any] | None = None,
        is_async: bool = False,
    ) -> None:
        #: The mapping shortcut; ``None`` for a callable.
        self.table = table
        self._call = call
        #: True when the callable returns an awaitable (ASGI only).
        self.is_async = is_async

    def ask(self, request: Request) -> RawPrice | Awaitable[RawPrice]:
        """Call the merchant's callable (HEAD and OPTIONS are shown as GET)."""
        assert self._call is not None
        view = request.as_method("GET") if request.method in _AS_GET else request
        result: RawPrice | Awaitable[RawPrice] = self._call(view)
        return result

    @staticmethod
    def settle(request: Request, raw: object) -> Decision:
        """What a callable's answer decides for ``request`` (``PricingError`` if it is no price)."""
        price = to_price(raw)
        if price is not None and request.method == "OPTIONS":
            return PREFLIGHT
        return price


def compile_pricing(pricing: object) -> PriceRule | None:
    """Turn the ``pricing`` keyword into a :class:`PriceRule` (``None``: all free)."""
    if pricing is None:
        return None
    if isinstance(pricing, Mapping):
        return PriceRule(table=RuleTable(pricing))
    if callable(pricing):
        call_method = getattr(pricing, "__call__", None)  # noqa: B004 - callable objects too
        is_async = inspect.iscoroutinefunction(pricing) or inspect.iscoroutinefunction(call_method)
        return PriceRule(call=pricing, is_async=is_async)
    raise TypeError("must be a callable, a mapping of path rules to micros, or None")


# One rule set for a path or prefix: method (None: any) -> price (None: free).
_ByMethod = dict[str | None, Price | None]


class RuleTable:
    """The mapping shortcut, compiled into an exact table and ordered wildcards."""

    __slots__ = ("_exact", "_names", "_wildcards")

    def __init__(self, rules: Mapping[Any, Any]) -> None:
        exact: dict[str, _ByMethod] = {}
        wildcards: dict[str, _ByMethod] = {}
        #: Each rule's own Price object -> the rule as written (a bounded metrics label).
        self._names: dict[int, str] = {}
        for key, value in rules.items():
            method, path = _parse_rule(key)
            price = _rule_price(key, value)
            if price is not None:
                price = replace(price)  # one object per rule, even if the merchant shared one
                self._names[id(price)] = " ".join(key.split())
            if path.endswith("/*"):
                wildcards.setdefault(path[:-1], {})[method] = price
            else:
                exact.setdefault(path, {})[method] = price
        self._exact = exact
        # Longest prefix first.
        self._wildcards = sorted(wildcards.items(), key=lambda rule: -len(rule[0]))

    def price_for(self, method: str, path: str) -> Decision:
        """The decision for an upper-case ``method`` and a canonical ``path``."""
        if method in _AS_GET:
            if method == "OPTIONS":
                return self._options(path)
            method = "GET"
        by_method = self._exact.get(path)
        if by_method is not None:
            found = by_method.get(method, _MISSING)
            if found is _MISSING:
                found = by_method.get(None, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[return-value]
        for prefix, by_method in self._wildcards:
            if path.startswith(prefix):
                found = by_method.get(method, _MISSING)
                if found is _MISSING:
                    found = by_method.get(None, _MISSING)
                if found is not _MISSING:
                    return found  # type: ignore[return-value]
        return None

    def rule_of(self, price: Price) -> str | None:
        """The rule (``"/api/*"``, ``"POST /x"``) that decided ``price``, if it came from here."""
        return self._names.get(id(price))

    def _options(self, path: str) -> Decision:
        # A rule naming OPTIONS decides; otherwise any price on the path means
        # "answer the preflight ourselves".
        rules = [self._exact.get(path)]
        rules += [by_method for prefix, by_method in self._wildcards if path.startswith(prefix)]
        for by_method in rules:
            if by_method is not None and "OPTIONS" in by_method:
                return by_method["OPTIONS"]
        if any(price for by_method in rules if by_method for price in by_method.values()):
            return PREFLIGHT
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
    if canonical_path(path) != path:
        # Requests are matched canonical: "//x" or "/a/../x" could never match.
        raise ValueError(f"rule {key!r}: write the path as routers see it (no '//', '.', '..')")
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
