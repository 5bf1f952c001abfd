"""The decisions, with no I/O: route -> session -> price -> charge -> answer.

Both adapters run the same few steps, and every choice is made here:

1. ``core.begin(request)`` gives one of the *steps* below.
2. :class:`NeedsPrice`: the adapter calls ``step.price_of(request)`` (awaiting
   it in ASGI when it is async) and hands the result to ``core.priced``.
3. :class:`Call`: the adapter drives ``step.flow`` (see :mod:`.api`), which
   returns the next step.
4. :class:`Respond`: send ``step.answer``. :class:`Forward`: run the app with
   ``step.customer`` and ``step.charge`` in its environ/scope, add
   ``step.set_cookies`` to its response, and, in authorize-capture mode, drive
   ``core.capture(step, status, failed)`` once the response has been sent.

Every charge outcome is logged on the ``st_middleware`` logger and offered to
the merchant's hooks from here, once.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import api
from .answers import Answer, error_answer, redirect
from .charge import Charge, ChargeEvent, Outcome, Price
from .config import Settings
from .customer import Customer
from .errors import (
    ChargeRefused,
    CookieTooLarge,
    PricingError,
    ProtocolError,
    ServiceUnavailable,
    SessionInvalid,
    SignInFailed,
    SignInRequired,
    SmallTransfersError,
)
from .pricing import PriceRule, to_price
from .request import Request
from .routes import Route, Routes, query_params, safe_next
from .session import Cookies, Session, SessionRead

__all__ = ["Call", "Core", "Forward", "NeedsPrice", "Respond", "Step"]

log = logging.getLogger("st_middleware")


@dataclass(slots=True)
class Respond:
    """Answer the request ourselves; the app does not run."""

    answer: Answer


@dataclass(slots=True)
class Forward:
    """Run the app for this visitor."""

    customer: Customer | None
    charge: Charge | None = None
    set_cookies: list[str] = field(default_factory=list)
    #: What the capture needs (authorize-capture mode only).
    capture: _CapturePlan | None = None


@dataclass(slots=True)
class NeedsPrice:
    """The adapter must price the request, then call ``Core.priced``."""

    request: Request
    read: SessionRead
    price_of: PriceRule


@dataclass(slots=True)
class Call:
    """The adapter must drive ``flow``; its return value is the next step."""

    flow: Generator[httpx.Request, api.Reply, Respond | Forward]


Step = Respond | Forward | NeedsPrice | Call


@dataclass(slots=True)
class _CapturePlan:
    token: str = field(repr=False)
    request: Request
    customer_id: str


class Core:
    """Every decision of one middleware instance (sans-IO, shared by both adapters)."""

    __slots__ = ("_quick_price", "cookies", "routes", "settings")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cookies = Cookies(settings)
        self.routes = Routes(settings)
        # Only rule tables can be asked about a bare (method, path); a callable
        # may look at anything, so it always gets the full request.
        rule = settings.price_of
        self._quick_price = None if rule is None else rule.price_for_path

    # -- 0. the free, anonymous fast path ------------------------------------------

    def plainly_free(self, method: str, path: str, cookie: str) -> bool:
        """Whether a request is free and anonymous, decided from three strings.

        True means: not one of our routes, no session cookie at all (so no
        cookie work either), and a rule table that prices it at nothing. The
        adapter may then run the app at once with no customer and no charge,
        which is exactly what :meth:`begin` would decide, minus building a
        :class:`Request`. False means: take the full path.
        """
        if self.settings.cookie_name in cookie or self.routes.owns(path):
            return False
        rule = self.settings.price_of
        if rule is None:
            return True
        quick = self._quick_price
        return quick is not None and quick(method, path) is None

    # -- 1. route and session ------------------------------------------------

    def begin(self, request: Request) -> Step:
        """The first step for ``request``."""
        route = self.routes.match(request)
        if route is not None:
            return self._route(route, request)
        read = self.cookies.read_session(request)
        customer = read.session.customer if read.session is not None else None
        request.customer = customer
        price_of = self.settings.price_of
        if price_of is None:
            return Forward(customer, None, read.set_cookies)
        return NeedsPrice(request, read, price_of)

    # -- 2. price ---------------------------------------------------------------

    def priced(self, step: NeedsPrice, raw: object) -> Step:
        """The step after pricing: free, 401, or a charge to send.

        ``raw`` is what the pricing returned, or the exception it raised.
        """
        request, read = step.request, step.read
        try:
            if isinstance(raw, BaseException):
                raise PricingError(f"pricing raised {type(raw).__name__}") from raw
            price = to_price(raw)
        except PricingError as error:
            log.error("pricing failed for %r: %s", request, error.detail, exc_info=error.__cause__)
            return self._error(error, request, set_cookies=read.set_cookies)
        if price is None:
            return Forward(request.customer, None, read.set_cookies)
        if read.session is None:
            return self._error(SignInRequired(), request, price=price, set_cookies=read.set_cookies)
        return Call(self._charge(request, read.session, price, read.set_cookies))

    # -- 3. charge --------------------------------------------------------------

    def _charge(
        self, request: Request, session: Session, price: Price, set_cookies: list[str]
    ) -> Generator[httpx.Request, api.Reply, Respond | Forward]:
        settings = self.settings
        mode = price.mode or settings.charge_mode
        key = api.new_idempotency_key()
        token, customer = session.access_token, session.customer
        charge = Charge(
            mode=mode,
            authorized_micros=price.micros,
            idempotency_key=key,
            capture_micros=price.capture_micros,
        )
        try:
            if mode == "transaction":
                charge.id = yield from api.create_transaction(settings, token, price.micros, key)
            else:
                charge.id = yield from api.authorize_charge(settings, token, price.micros, key)
        except SmallTransfersError as error:
            failed_open = isinstance(error, ServiceUnavailable) and settings.fail_open
            outcome = "failed_open" if failed_open else _outcome_of(error)
            self._report(_event(outcome, charge, request, customer, error.code), error)
            if failed_open:
                return Forward(customer, None, set_cookies)
            if isinstance(error, SessionInvalid):
                set_cookies = [self.cookies.clear_session(request)]
            return self._error(error, request, price=price, set_cookies=set_cookies)
        if mode == "transaction":
            self._report(_event("charged", charge, request, customer))
            return Forward(customer, charge, set_cookies)
        self._report(_event("authorized", charge, request, customer))
        return Forward(customer, charge, set_cookies, _CapturePlan(token, request, customer.id))

    # -- 4. capture, after the response -----------------------------------------

    def capture(
        self, step: Forward, status: int | None, app_failed: bool
    ) -> Generator[httpx.Request, api.Reply, None] | None:
        """The capture flow once the response is over, or ``None`` when nothing is owed.

        Nothing is captured when the app raised, never started a response, or
        answered with a status the merchant counts as failure (default >= 400);
        the authorization then simply lapses.
        """
        plan, charge = step.capture, step.charge
        if plan is None or charge is None:
            return None
        if app_failed or status is None or self.settings.failure_status(status):
            reason = "app_failed" if app_failed or status is None else "failure_status"
            charge.captured_micros = 0
            self._report(
                _event("not_captured", charge, plan.request, Customer(plan.customer_id), reason)
            )
            return None
        return self._capture(plan, charge)

    def _capture(
        self, plan: _CapturePlan, charge: Charge
    ) -> Generator[httpx.Request, api.Reply, None]:
        wanted = charge.amount_micros
        if charge.capture_micros is not None and charge.capture_micros > charge.authorized_micros:
            log.warning(
                "capture of %d micros clamped to the %d authorized (charge %s, key %s)",
                charge.capture_micros,
                charge.authorized_micros,
                charge.id,
                charge.idempotency_key,
            )
        customer = Customer(plan.customer_id)
        assert charge.id is not None
        try:
            yield from api.capture_charge(
                self.settings,
                plan.token,
                charge.id,
                wanted,
                charge.idempotency_key + ":capture",
            )
        except SmallTransfersError as error:
            event = _event("capture_failed", charge, plan.request, customer, error.code)
            self._report(event, error)
            return
        charge.captured_micros = wanted
        self._report(_event("captured", charge, plan.request, customer))

    # -- our own routes ------------------------------------------------------------

    def _route(self, route: Route, request: Request) -> Step:
        if route is Route.SIGN_IN:
            return self._sign_in(request)
        if route is Route.CALLBACK:
            return self._callback(request)
        return self._sign_out(request)

    def _sign_in(self, request: Request) -> Step:
        params = query_params(request.query_string)
        next_path = safe_next(params.get("next"), self.routes.home(request))
        redirect_uri = self.routes.redirect_uri(request)
        if redirect_uri is None:
            return self._error(
                SignInFailed("the Host header is not a valid host", code="bad_host"), request
            )
        state, cookie = self.cookies.new_state(request, next_path)
        return Respond(redirect(self.routes.authorize_url(redirect_uri, state.state), [cookie]))

    def _callback(self, request: Request) -> Step:
        params = query_params(request.query_string)
        state = self.cookies.read_state(request)
        # The state cookie is single use: gone after this answer, whatever it is.
        cleared = [self.cookies.clear_state(request)]
        home = self.routes.home(request)
        error = params.get("error")
        if error == "access_denied":
            # The customer said no: a quiet way back, no session, no error page.
            target = state.next_path if state is not None else home
            return Respond(redirect(target, cleared))
        if state is None:
            return self._error(
                SignInFailed("no valid sign-in state cookie", code="invalid_state"),
                request,
                next_path=home,
                set_cookies=cleared,
            )
        if error is not None:
            # The provider's own error_description is never shown.
            log.warning("sign-in failed: Small Transfers returned error=%.40r", error)
            return self._error(
                SignInFailed("provider error", code="provider_error"),
                request,
                next_path=state.next_path,
                set_cookies=cleared,
            )
        echoed = params.get("state")
        if echoed is not None and not hmac.compare_digest(
            echoed.encode("utf-8", "surrogateescape"), state.state.encode("ascii")
        ):
            return self._error(
                SignInFailed("state does not match", code="invalid_state"),
                request,
                next_path=state.next_path,
                set_cookies=cleared,
            )
        code = params.get("code")
        if not code:
            return self._error(
                SignInFailed("callback without a code", code="missing_code"),
                request,
                next_path=state.next_path,
                set_cookies=cleared,
            )
        return Call(self._exchange(request, code, state.next_path, cleared))

    def _exchange(
        self, request: Request, code: str, next_path: str, cleared: list[str]
    ) -> Generator[httpx.Request, api.Reply, Respond | Forward]:
        try:
            grant = yield from api.exchange_code(self.settings, code)
        except SmallTransfersError as error:
            # Rejected merchant keys or a malformed exchange are ours to fix: an error.
            level = logging.ERROR if isinstance(error, ProtocolError) else logging.WARNING
            log.log(level, "sign-in failed: %s", api.describe(error))
            return self._error(error, request, next_path=next_path, set_cookies=cleared)
        session = Session(grant.access_token, grant.customer, int(time.time()))
        try:
            cookies = [*cleared, self.cookies.set_session(request, session)]
        except CookieTooLarge as error:
            log.error("sign-in failed: %s", error.detail)
            failure = ProtocolError("access token too large for a cookie", code="token_too_large")
            return self._error(failure, request, next_path=next_path, set_cookies=cleared)
        log.info("sign-in: customer %s", grant.customer.id)
        _call_hook(self.settings.on_sign_in, grant.customer, "on_sign_in")
        return Respond(redirect(next_path, cookies))

    def _sign_out(self, request: Request) -> Step:
        params = query_params(request.query_string)
        next_path = safe_next(params.get("next"), self.routes.home(request))
        read = self.cookies.read_session(request)
        if read.session is not None:
            log.info("sign-out: customer %s", read.session.customer.id)
            _call_hook(self.settings.on_sign_out, read.session.customer, "on_sign_out")
        return Respond(redirect(next_path, [self.cookies.clear_session(request)]))

    # -- shared ---------------------------------------------------------------

    def _error(
        self,
        error: SmallTransfersError,
        request: Request,
        *,
        price: Price | None = None,
        next_path: str | None = None,
        set_cookies: list[str] | tuple[str, ...] = (),
    ) -> Respond:
        if isinstance(error, ServiceUnavailable):
            error.retry_after = self.settings.retry_after
        return Respond(
            error_answer(
                error,
                request,
                self.routes,
                price_micros=price.micros if price is not None else None,
                next_path=next_path,
                set_cookies=set_cookies,
            )
        )

    def _report(self, event: ChargeEvent, error: SmallTransfersError | None = None) -> None:
        """Log a charge outcome and hand it to the merchant's hook."""
        level = logging.INFO if event.ok else _LEVELS.get(event.outcome, logging.WARNING)
        log.log(
            level,
            "charge %s: %s %s %d micros (%s) customer=%s key=%s id=%s%s",
            event.outcome,
            event.method,
            event.path,
            event.amount_micros,
            event.mode,
            event.customer_id,
            event.idempotency_key,
            event.charge_id,
            f" error={api.describe(error)}" if error is not None else "",
        )
        hook = self.settings.on_charge if event.ok else self.settings.on_charge_failed
        _call_hook(hook, event, "on_charge" if event.ok else "on_charge_failed")


_LEVELS = {"protocol_error": logging.ERROR, "capture_failed": logging.ERROR}


def _outcome_of(error: SmallTransfersError) -> Outcome:
    if isinstance(error, ChargeRefused):
        return "refused"
    if isinstance(error, SessionInvalid):
        return "session_invalid"
    if isinstance(error, ServiceUnavailable):
        return "unavailable"
    # ProtocolError, and anything else a charge call can raise: ours to fix.
    return "protocol_error"


def _event(
    outcome: Outcome,
    charge: Charge,
    request: Request,
    customer: Customer,
    code: str | None = None,
) -> ChargeEvent:
    amount = charge.authorized_micros if outcome != "captured" else charge.amount_micros
    if outcome == "not_captured":
        amount = 0
    return ChargeEvent(
        outcome=outcome,
        mode=charge.mode,
        amount_micros=amount,
        customer_id=customer.id,
        method=request.method,
        path=request.root_path + request.path,
        idempotency_key=charge.idempotency_key,
        charge_id=charge.id,
        code=code,
    )


def _call_hook(hook: Callable[[Any], object] | None, value: Any, name: str) -> None:
    if hook is None:
        return
    try:
        hook(value)
    except Exception:
        # A merchant's bookkeeping bug must not break a paid response.
        log.exception("%s hook raised", name)
