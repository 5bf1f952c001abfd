"""What a priced request costs and what was charged for it.

:class:`Price` is what a pricing callable may return instead of a plain int
to choose the charge mode per route; :class:`Charge` is what the app finds in
``environ/scope["smalltransfers.charge"]``; :class:`ChargeEvent` is what the
log and the merchant's hooks receive for every charge outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Charge", "ChargeEvent", "ChargeMode", "Outcome", "Price"]

ChargeMode = Literal["transaction", "authorize-capture"]
CHARGE_MODES: tuple[ChargeMode, ...] = ("transaction", "authorize-capture")


def check_micros(value: object, what: str) -> int:
    """``value`` as a non-negative int of micros, or ``TypeError``/``ValueError``.

    Floats and bools are refused on purpose: money is never a float here.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int of micros, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Price:
    """A price with a charge mode of its own, for apps that mix flat and usage-based routes.

    ``micros`` is the amount charged (``"transaction"``) or the maximum
    authorized (``"authorize-capture"``). ``mode=None`` uses the middleware's
    ``charge_mode``. ``capture_micros`` is the amount captured when the app
    does not set one (default: all of ``micros``).
    """

    micros: int
    mode: ChargeMode | None = None
    capture_micros: int | None = None
    #: The route's own words for its price, shown on the sign-in and refusal
    #: pages (e.g. "0.0002 USD per word written").
    description: str | None = None

    def __post_init__(self) -> None:
        check_micros(self.micros, "Price.micros")
        if self.description is not None and not isinstance(self.description, str):
            raise TypeError("Price.description must be a string")
        if self.mode is not None and self.mode not in CHARGE_MODES:
            raise ValueError(f"Price.mode must be one of {CHARGE_MODES}, got {self.mode!r}")
        if self.capture_micros is not None:
            check_micros(self.capture_micros, "Price.capture_micros")


class Charge:
    """The charge behind a priced request, handed to the app.

    ``amount_micros`` is what the visitor pays for this request: the price in
    ``"transaction"`` mode; in ``"authorize-capture"`` mode the amount that will
    be (or was) captured. In that mode the app may set ``capture_micros``
    before its response ends; above ``authorized_micros`` it is clamped. In
    ``"transaction"`` mode setting it is allowed and changes nothing.
    """

    __slots__ = (
        "_capture_micros",
        "authorized_micros",
        "captured_micros",
        "id",
        "idempotency_key",
        "mode",
    )

    def __init__(
        self,
        *,
        mode: ChargeMode,
        authorized_micros: int,
        idempotency_key: str,
        id: str | None = None,
        capture_micros: int | None = None,
    ) -> None:
        self.mode: ChargeMode = mode
        self.authorized_micros = authorized_micros
        self.idempotency_key = idempotency_key
        self.id = id
        self._capture_micros = capture_micros
        #: Set once the capture was accepted (authorize-capture mode).
        self.captured_micros: int | None = authorized_micros if mode == "transaction" else None

    @property
    def capture_micros(self) -> int | None:
        """The amount the app asked to capture, if it set one."""
        return self._capture_micros

    @capture_micros.setter
    def capture_micros(self, value: int) -> None:
        # Checked even in "transaction" mode, where it changes nothing (the price
        # was charged up front), so one handler can serve routes of both modes.
        self._capture_micros = check_micros(value, "capture_micros")

    @property
    def amount_micros(self) -> int:
        """What this request costs the visitor (see the class docstring)."""
        if self.mode == "transaction":
            return self.authorized_micros
        if self.captured_micros is not None:
            return self.captured_micros
        wanted = self.authorized_micros if self._capture_micros is None else self._capture_micros
        return min(wanted, self.authorized_micros)

    def __repr__(self) -> str:
        return (
            f"Charge(mode={self.mode!r}, amount_micros={self.amount_micros}, "
            f"authorized_micros={self.authorized_micros}, id={self.id!r})"
        )


Outcome = Literal[
    "charged",  # transaction accepted
    "authorized",  # authorization accepted, capture pending
    "captured",  # capture accepted
    "not_captured",  # app failed: authorization left to lapse
    "refused",  # 402 from Small Transfers
    "session_invalid",  # token revoked or invalid
    "unavailable",  # unreachable, timeout, 5xx (fail closed)
    "failed_open",  # same, but fail_open let the app run uncharged
    "protocol_error",  # our request was wrong (keys, payload, reply)
    "capture_failed",  # capture refused or unreachable after the response
    "interrupted",  # the request was cancelled while the charge call was in flight
]


@dataclass(frozen=True, slots=True)
class ChargeEvent:
    """One charge outcome, as logged and as handed to ``on_charge``/``on_charge_failed``.

    Holds no token and no secret: safe to store as a usage record.
    """

    outcome: Outcome
    mode: ChargeMode
    amount_micros: int
    customer_id: str | None
    method: str
    path: str
    idempotency_key: str
    charge_id: str | None = None
    code: str | None = None
    #: The pricing rule that priced the request (``"/api/*"``; ``None`` for a callable).
    route: str | None = None
    #: Seconds the call(s) to Small Transfers behind this outcome took.
    duration_s: float | None = None

    @property
    def ok(self) -> bool:
        """Whether money moved (or was reserved) as intended."""
        return self.outcome in ("charged", "authorized", "captured", "not_captured")
