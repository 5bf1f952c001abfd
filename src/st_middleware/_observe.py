"""What operators can watch: the observer interface, and the one place it is called from.

The core reports what happens (a charge outcome, a call to Small Transfers,
a sign-in, a rejected session, a capture retried) to the ``observers`` the
merchant configured; :mod:`st_middleware.observability` has ready ones for
Prometheus and OpenTelemetry. An observer is called inline, on the request's
own thread or task (so an OpenTelemetry span started in :meth:`Observer.call`
is a child of the server span the merchant's instrumentation opened), and
must be quick; one that raises is logged and never breaks a request.

Nothing handed to an observer is secret: charge events hold no token, calls
are named by endpoint (``"transactions"``, ``"charges"``, ``"capture"``,
``"tokens"``) and the URL carries no query.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from ._charge import ChargeEvent

__all__ = [
    "CallObservation",
    "CaptureKind",
    "Observer",
    "SessionKind",
    "Watch",
]

log = logging.getLogger("st_middleware")

SessionKind = Literal["sign_in", "sign_out", "rejected"]
CaptureKind = Literal["recorded", "retried", "captured", "lost"]


@runtime_checkable
class CallObservation(Protocol):
    """One call to Small Transfers being watched; ended once with how it went."""

    def end(self, status: int | None, error: str | None) -> None:
        """``status``: the HTTP status (``None`` when no answer came); ``error``: its kind."""


@runtime_checkable
class Observer(Protocol):
    """Receives what the middleware does; see the module docstring for the rules."""

    def charge(self, event: ChargeEvent) -> None:
        """A charge outcome (the same event the log and the hooks get)."""

    def call(self, endpoint: str, method: str, url: str) -> CallObservation:
        """A call to Small Transfers starts; the returned object is ended with its result."""

    def session(self, kind: SessionKind, reason: str | None) -> None:
        """A sign-in, a sign-out, or a session refused (``reason``: ``"invalid"``,
        ``"duplicate"``, ``"revoked"``, ``"rejected_hook"``)."""

    def capture(self, kind: CaptureKind) -> None:
        """A capture recorded in the outbox, retried, confirmed, or lost for good."""

    def captures_pending(self, pending: int, failed: int) -> None:
        """How many captures wait in the outbox, and how many failed for good."""


class _Calls:
    __slots__ = ("_all",)

    def __init__(self, calls: list[CallObservation]) -> None:
        self._all = calls

    def end(self, status: int | None, error: str | None) -> None:
        for call in self._all:
            try:
                call.end(status, error)
            except Exception:
                log.exception("observer call %s failed in end", type(call).__name__)


class Watch:
    """The configured observers, called safely (one failing observer is logged, no more).

    Each observer's methods are looked up once, here: a priced request calls
    several of them, and the lookups would cost more than a counter's update.
    """

    __slots__ = ("_bound", "active")

    def __init__(self, observers: Sequence[Observer]) -> None:
        names = ("charge", "call", "session", "capture", "captures_pending")
        self._bound = {
            name: tuple((type(o).__name__, getattr(o, name)) for o in observers) for name in names
        }
        #: False when nothing watches: callers skip building what would be observed.
        self.active = bool(observers)

    def charge(self, event: ChargeEvent) -> None:
        self._each("charge", event)

    def call(self, endpoint: str, method: str, url: str) -> CallObservation:
        started = self._each("call", endpoint, method, url)
        if len(started) == 1:
            return started[0]  # type: ignore[no-any-return]
        return _Calls([c for c in started if c is not None])

    def session(self, kind: SessionKind, reason: str | None = None) -> None:
        self._each("session", kind, reason)

    def capture(self, kind: CaptureKind) -> None:
        self._each("capture", kind)

    def captures_pending(self, pending: int, failed: int) -> None:
        self._each("captures_pending", pending, failed)

    def _each(self, method: str, *args: Any) -> list[Any]:
        results = []
        for name, bound in self._bound[method]:
            try:
                results.append(bound(*args))
            except Exception:
                log.exception("observer %s failed in %s", name, method)
        return results
