"""What a flow may ask its driver to do: the only I/O the core knows of.

A *flow* is a generator: it yields one of the effects below, and the driver
(the WSGI adapter synchronously, the ASGI one with ``await``) carries it out
and sends back the result, or throws in the exception it raised. When the
flow returns, its value is the decision. Adding a kind of I/O is one class
here and one entry in each driver's table of handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

if TYPE_CHECKING:
    from ._pricing import PriceRule
    from ._request import Request

__all__ = ["AskPricing", "Effect", "Flow", "ReadBody", "Reply", "Run", "Send", "StoreCall"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` to Small Transfers; the result is a :class:`Reply`.

    Transport failures are thrown back into the flow as ``httpx`` errors; the
    flow alone decides whether a retry is safe.
    """

    request: httpx.Request
    #: Which call this is ("transactions", "charges", "capture", "tokens"), for logs.
    endpoint: str


@dataclass(frozen=True, slots=True)
class AskPricing:
    """Call the merchant's pricing callable; the result is what it returned (awaited if async)."""

    rule: PriceRule
    request: Request


@dataclass(frozen=True, slots=True)
class StoreCall:
    """Call ``method(*args)`` on the state store (sync or async); the result is its return.

    The store's own failures come back into the flow as ``StoreUnavailable``.
    """

    method: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read the request's body, at most ``limit`` bytes; the result is the bytes read.

    Only the middleware's own routes read a body (the program's POSTs of the
    device flow): the app's requests are never touched.
    """

    request: Request
    limit: int


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back from Small Transfers: status and (at most a capped part of) the body."""

    status: int
    body: bytes = b""
    truncated: bool = False


Effect = Send | AskPricing | StoreCall | ReadBody
#: A flow: yields effects, receives their results, returns ``T``.
Flow = Generator[Effect, Any, T]


class Run(Generic[T]):
    """One flow being run: iterate it for the effects to carry out.

    A driver sets ``result`` (or ``error``) after each effect; the next
    iteration hands it to the flow. When the flow returns, the iteration ends
    and ``value`` holds its decision. An exception the flow does not catch
    comes out of the iteration as it is.
    """

    __slots__ = ("_flow", "error", "result", "value")

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.result: Any = None
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Effect]:
        flow = self._flow
        try:
            effect = next(flow)
            while True:
                yield effect
                error, self.error = self.error, None
                effect = flow.throw(error) if error is not None else flow.send(self.result)
        except StopIteration as stop:
            self.value: T = stop.value

    def settle(self, handler: Callable[[Any], Any], effect: Effect) -> None:
        """Carry out ``effect`` with a synchronous ``handler``, keeping its result or error."""
        try:
            self.result = handler(effect)
        except BaseException as exc:
            self.error = exc
