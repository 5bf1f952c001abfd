"""The decisions, with no I/O: one request as one flow.

:meth:`Core.handle` is a generator (a *flow*, see :mod:`._effects`) that
takes a canonical :class:`Request` through route -> session -> price -> charge
and returns the decision: :class:`Respond` (the middleware answers) or
:class:`Forward` (the app runs, with these values). Whatever it needs done on
the way (call the merchant's pricing, send a request to Small Transfers) it
yields; the WSGI and ASGI drivers carry it out. Once the app's response is
over, :meth:`Core.after_response` gives the capture flow, run by the same
drivers.

Every charge outcome is logged on the ``st_middleware`` logger and offered to
the merchant's hooks from here, once.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _api as api
from ._answers import Answer, Headers, error_answer, preflight_answer, private_cache, redirect
from ._charge import Charge, ChargeEvent, Outcome, Price
from ._config import Settings
from ._customer import Customer
from ._effects import AskPricing, Flow
from ._errors import (
    BadRequest,
    CookieTooLarge,
    PricingError,
    ProtocolError,
    ServiceUnavailable,
    SessionInvalid,
    SignInFailed,
    SignInRequired,
    SmallTransfersError,
)
from ._pricing import PREFLIGHT, Decision
from ._request import Request, is_plain_path
from ._routes import Route, Routes, query_params, safe_next
from ._session import Cookies, Session

__all__ = ["Core", "Forward", "Respond"]

_log = logging.getLogger("st_middleware")


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the request ourselves; the app does not run."""

    answer: Answer


@dataclass(frozen=True, slots=True)
class _CapturePlan:
    token: str = field(repr=False)
    request: Request
    customer_id: str


@dataclass(frozen=True, slots=True)
class Forward:
    """Run the app for this visitor, with these values in its environ/scope."""

    customer: Customer | None
    charge: Charge | None = None
    #: Set-Cookie values the response must carry (clear or re-seal a cookie).
    set_cookies: tuple[str, ...] = ()
    #: Keep the answer out of shared caches (priced, or carrying our cookies).
    private: bool = False
    #: What the capture needs (authorize-capture mode only).
    capture: _CapturePlan | None = None

    @property
    def plain(self) -> bool:
        """Nothing to add to the response and nothing owed after it: run the app untouched."""
        return not (self.set_cookies or self.private or self.capture)

    def response_headers(self, headers: Headers) -> Headers:
        """The app's response headers as they go out."""
        if self.private:
            headers = private_cache(headers)
        if self.set_cookies:
            headers = [*headers, *(("Set-Cookie", cookie) for cookie in self.set_cookies)]
        return headers


class Core:
    """Every decision of one middleware instance (sans-IO, shared by both adapters).

    ``clock`` (seconds, like :func:`time.time`), ``new_key`` (idempotency keys)
    and ``log`` are the core's only links to the world, so tests can pin them.
    """

    __slots__ = ("_clock", "_log", "_new_key", "cookies", "routes", "settings")

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        new_key: Callable[[], str] = api.new_idempotency_key,
        log: logging.Logger = _log,
    ) -> None:
        self.settings = settings
        self.cookies = Cookies(settings, clock)
        self.routes = Routes(settings)
        self._clock = clock
        self._new_key = new_key
        self._log = log

    # -- 0. the free, anonymous fast path ------------------------------------------

    def plainly_free(self, method: str, path: str, cookie: str) -> bool:
        """Whether a request is free and anonymous, decided from three strings.

        True means: a path already canonical, not one of our routes, no session
        cookie at all (so no cookie work either), and a rule table that prices
        it at nothing. The adapter may then run the app at once with no
        customer and no charge, which is exactly what :meth:`handle` would
        decide, minus building a :class:`Request`. False means: take the flow.
        """
        if self.settings.cookie_name in cookie or not is_plain_path(path):
            return False
        if self.routes.owns(path):
            return False
        rule = self.settings.price_of
        if rule is None:
            return True
        return rule.table is not None and rule.table.price_for(method.upper(), path) is None

    # -- 1. the flow of one request -------------------------------------------------

    def handle(self, request: Request) -> Flow[Respond | Forward]:
        """Route -> session -> price -> charge: the decision for ``request``."""
        if request.unfit:
            return self._fail(BadRequest("the path cannot be routed safely"), request)
        route = self.routes.match(request)
        if route is not None:
            return (yield from self._route(route, request))
        read = self.cookies.read_session(request)
        session = read.session
        customer = request.customer = session.customer if session is not None else None
        try:
            decision = yield from self._price(request)
        except PricingError as error:
            self._log.error(
                "pricing failed for %r: %s", request, error.detail, exc_info=error.__cause__
            )
            return self._fail(error, request, set_cookies=read.set_cookies)
        if decision is None:
            return Forward(customer, None, read.set_cookies, private=bool(read.set_cookies))
        if decision is PREFLIGHT:
            return self._respond(request, preflight_answer(request, self.settings))
        assert isinstance(decision, Price)
        if not request.is_canonical:
            # Routers serve this variant from the canonical path's handler (and
            # often redirect to it): send the visitor there before charging, so
            # one page view costs one charge.
            location = self.routes.current_path(request)
            return self._respond(request, redirect(location, read.set_cookies, status=308))
        if session is None:
            return self._fail(
                SignInRequired(), request, price=decision, set_cookies=read.set_cookies
            )
        return (yield from self._charge(request, session, decision, read.set_cookies))

    def _price(self, request: Request) -> Flow[Decision]:
        rule = self.settings.price_of
        if rule is None:
            return None
        if rule.table is not None:
            return rule.table.price_for(request.method, request.path)
        try:
            raw = yield AskPricing(rule, request)
            return rule.settle(request, raw)
        except PricingError:
            raise
        except Exception as exc:
            # Any failure of the merchant's callable is one answer: 500, nothing charged.
            raise PricingError(f"pricing raised {type(exc).__name__}") from exc

    # -- 2. charge --------------------------------------------------------------

    def _charge(
        self, request: Request, session: Session, price: Price, set_cookies: tuple[str, ...]
    ) -> Flow[Respond | Forward]:
        settings = self.settings
        mode = price.mode or settings.charge_mode
        token, customer = session.access_token, session.customer
        charge = Charge(
            mode=mode,
            authorized_micros=price.micros,
            idempotency_key=self._new_key(),
            capture_micros=price.capture_micros,
        )
        private = not settings.cache_paid_answers or bool(set_cookies)
        try:
            if mode == "transaction":
                flow = api.create_transaction(settings, token, price.micros, charge.idempotency_key)
            else:
                flow = api.authorize_charge(settings, token, price.micros, charge.idempotency_key)
            charge.id = yield from flow
        except SmallTransfersError as error:
            failed_open = isinstance(error, ServiceUnavailable) and settings.fail_open
            outcome: Outcome = "failed_open" if failed_open else error.outcome
            self._report(_event(outcome, charge, request, customer, error.code), error)
            if failed_open:
                return Forward(customer, None, set_cookies, private=private)
            if isinstance(error, SessionInvalid):
                set_cookies = (self.cookies.clear_session(request),)
            return self._fail(error, request, price=price, set_cookies=set_cookies)
        except BaseException:
            # Cancelled (a timeout, a shutdown) with the call in flight: the
            # charge may have happened, so it is reported for reconciliation.
            self._report(_event("interrupted", charge, request, customer, "interrupted"))
            raise
        if mode == "transaction":
            self._report(_event("charged", charge, request, customer))
            return Forward(customer, charge, set_cookies, private=private)
        self._report(_event("authorized", charge, request, customer))
        plan = _CapturePlan(token, request, customer.id)
        return Forward(customer, charge, set_cookies, private=private, capture=plan)

    # -- 3. capture, after the response -----------------------------------------

    def after_response(
        self, forward: Forward, status: int | None, app_failed: bool
    ) -> Flow[None] | None:
        """The capture flow once the response is over, or ``None`` when nothing is owed.

        Nothing is captured when the app raised, never started a response, or
        answered with a status the merchant's ``failure_status`` refuses
        (default: an error >= 400, or a redirect, which delivers nothing worth
        paying for); the authorization then simply lapses.
        """
        plan, charge = forward.capture, forward.charge
        if plan is None or charge is None:
            return None
        if app_failed or status is None or self.settings.failure_status(status):
            if app_failed or status is None:
                reason = "app_failed"
            else:
                reason = "redirect" if 300 <= status < 400 else "failure_status"
            charge.captured_micros = 0
            event = _event("not_captured", charge, plan.request, Customer(plan.customer_id), reason)
            self._report(event)
            return None
        return self._capture(plan, charge)

    def _capture(self, plan: _CapturePlan, charge: Charge) -> Flow[None]:
        wanted = charge.amount_micros
        if charge.capture_micros is not None and charge.capture_micros > charge.authorized_micros:
            self._log.warning(
                "capture of %d micros clamped to the %d authorized (charge %s, key %s)",
                charge.capture_micros,
                charge.authorized_micros,
                charge.id,
                charge.idempotency_key,
            )
        customer = Customer(plan.customer_id)
        assert charge.id is not None
        key = charge.idempotency_key + ":capture"
        try:
            yield from api.capture_charge(self.settings, plan.token, charge.id, wanted, key)
        except SmallTransfersError as error:
            event = _event("capture_failed", charge, plan.request, customer, error.code)
            self._report(event, error)
            return
        except BaseException:
            self._report(_event("interrupted", charge, plan.request, customer, "interrupted"))
            raise
        charge.captured_micros = wanted
        self._report(_event("captured", charge, plan.request, customer))

    # -- our own routes ------------------------------------------------------------

    def _route(self, route: Route, request: Request) -> Flow[Respond | Forward]:
        if route is Route.CALLBACK:
            return (yield from self._callback(request))
        if route is Route.SIGN_IN:
            return self._sign_in(request)
        return self._sign_out(request)

    def _sign_in(self, request: Request) -> Respond:
        params = query_params(request.query_string)
        next_path = safe_next(params.get("next"), self.routes.home(request))
        redirect_uri = self.routes.redirect_uri(request)
        if redirect_uri is None:
            failure = SignInFailed("the Host header is not a valid host", code="bad_host")
            return self._fail(failure, request)
        state, cookie = self.cookies.new_state(request, next_path)
        location = self.routes.authorize_url(redirect_uri, state.state)
        return self._respond(request, redirect(location, [cookie]))

    def _callback(self, request: Request) -> Flow[Respond | Forward]:
        params = query_params(request.query_string)
        state = self.cookies.read_state(request)
        # The state cookie is single use: gone after this answer, whatever it is.
        cleared = (self.cookies.clear_state(request),)
        home = self.routes.home(request)
        error = params.get("error")
        if error == "access_denied":
            # The customer said no: a quiet way back, no session, no error page.
            target = state.next_path if state is not None else home
            return self._respond(request, redirect(target, cleared))
        if state is None:
            failure = SignInFailed("no valid sign-in state cookie", code="invalid_state")
            return self._fail(failure, request, next_path=home, set_cookies=cleared)
        if error is not None:
            # The provider's own error_description is never shown.
            self._log.warning("sign-in failed: Small Transfers returned error=%.40r", error)
            failure = SignInFailed("provider error", code="provider_error")
            return self._fail(failure, request, next_path=state.next_path, set_cookies=cleared)
        echoed = params.get("state")
        if echoed is not None and not hmac.compare_digest(
            echoed.encode("utf-8", "surrogateescape"), state.state.encode("ascii")
        ):
            failure = SignInFailed("state does not match", code="invalid_state")
            return self._fail(failure, request, next_path=state.next_path, set_cookies=cleared)
        code = params.get("code")
        if not code:
            failure = SignInFailed("callback without a code", code="missing_code")
            return self._fail(failure, request, next_path=state.next_path, set_cookies=cleared)
        return (yield from self._exchange(request, code, state.next_path, cleared))

    def _exchange(
        self, request: Request, code: str, next_path: str, cleared: tuple[str, ...]
    ) -> Flow[Respond | Forward]:
        try:
            grant = yield from api.exchange_code(self.settings, code)
        except SmallTransfersError as error:
            # Rejected merchant keys or a malformed exchange are ours to fix: an error.
            level = logging.ERROR if isinstance(error, ProtocolError) else logging.WARNING
            self._log.log(level, "sign-in failed: %s", api.describe(error))
            return self._fail(error, request, next_path=next_path, set_cookies=cleared)
        session = Session(grant.access_token, grant.customer, int(self._clock()))
        try:
            cookies = (*cleared, self.cookies.set_session(request, session))
        except CookieTooLarge as error:
            self._log.error("sign-in failed: %s", error.detail)
            failure = ProtocolError("access token too large for a cookie", code="token_too_large")
            return self._fail(failure, request, next_path=next_path, set_cookies=cleared)
        self._log.info("sign-in: customer %s", grant.customer.id)
        self._call_hook(self.settings.on_sign_in, grant.customer, "on_sign_in")
        return self._respond(request, redirect(next_path, cookies))

    def _sign_out(self, request: Request) -> Respond:
        params = query_params(request.query_string)
        next_path = safe_next(params.get("next"), self.routes.home(request))
        read = self.cookies.read_session(request)
        if read.session is not None:
            self._log.info("sign-out: customer %s", read.session.customer.id)
            self._call_hook(self.settings.on_sign_out, read.session.customer, "on_sign_out")
        cleared = [self.cookies.clear_session(request)]
        return self._respond(request, redirect(next_path, cleared))

    # -- answers, reports -----------------------------------------------------------

    def _respond(self, request: Request, answer: Answer) -> Respond:
        # Whatever we answer, a HEAD gets its headers only: a body would be
        # read as the start of the next response on a kept-alive connection.
        return Respond(answer.without_body() if request.is_head else answer)

    def _fail(
        self,
        error: SmallTransfersError,
        request: Request,
        *,
        price: Price | None = None,
        next_path: str | None = None,
        set_cookies: tuple[str, ...] | list[str] = (),
    ) -> Respond:
        if isinstance(error, ServiceUnavailable):
            error.retry_after = self.settings.retry_after
        answer = error_answer(
            error,
            request,
            self.routes,
            price_micros=price.micros if price is not None else None,
            next_path=next_path,
            set_cookies=set_cookies,
        )
        return self._respond(request, answer)

    def _report(self, event: ChargeEvent, error: SmallTransfersError | None = None) -> None:
        """Log a charge outcome and hand it to the merchant's hook."""
        level = logging.INFO if event.ok else _LEVELS.get(event.outcome, logging.WARNING)
        self._log.log(
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
        self._call_hook(hook, event, "on_charge" if event.ok else "on_charge_failed")

    def _call_hook(self, hook: Callable[[Any], object] | None, value: Any, name: str) -> None:
        if hook is None:
            return
        try:
            hook(value)
        except Exception:
            # A merchant's bookkeeping bug must not break a paid response.
            self._log.exception("%s hook raised", name)


_LEVELS = {
    "protocol_error": logging.ERROR,
    "capture_failed": logging.ERROR,
    "interrupted": logging.ERROR,
}


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
