"""The decisions, with no I/O: one request as one flow.

:meth:`Core.handle` is a generator (a *flow*, see :mod:`._effects`) that
takes a canonical :class:`Request` through route -> credential (the session
cookie, or a program's bearer token, not signed out in the store) -> price
-> charge and returns the decision: :class:`Respond` (the middleware answers)
or :class:`Forward` (the app runs, with these values). Whatever it needs done
on the way (call the merchant's pricing, send a request to Small Transfers,
read or write the state store) it yields; the WSGI and ASGI drivers carry it
out. Once the app's response is over, :meth:`Core.after_response` gives the
capture flow (:mod:`._captures`), run by the same drivers, as are the capture
worker's rounds (:meth:`Core.capture_round`) and the device flow's routes
(:mod:`._device`).

Every charge outcome is logged on the ``st_middleware`` logger and offered to
the observers and the merchant's hooks from here, once.
"""

from __future__ import annotations

import hmac
import logging
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _api as api
from ._answers import Answer, Headers, error_answer, preflight_answer, private_cache, redirect
from ._captures import CaptureRecord, Captures
from ._charge import Charge, ChargeEvent, Outcome, Price
from ._config import Settings
from ._customer import Customer
from ._device import DeviceFlow
from ._effects import AskPricing, Flow, ReadBody, StoreCall
from ._errors import (
    BadRequest,
    CookieTooLarge,
    InvalidToken,
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
from ._store import StoreUnavailable

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
    route: str | None = None


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

    ``clock`` (seconds, like :func:`time.time`), ``new_key`` (idempotency keys),
    ``random`` (jitter, in [0, 1)) and ``log`` are the core's only links to the
    world, so tests can pin them.
    """

    __slots__ = (
        "_clock",
        "_log",
        "_new_key",
        "captures",
        "cookies",
        "device",
        "routes",
        "settings",
    )

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        new_key: Callable[[], str] = api.new_idempotency_key,
        random: Callable[[], float] = _random.random,
        log: logging.Logger = _log,
    ) -> None:
        self.settings = settings
        self.cookies = Cookies(settings, clock)
        self.routes = Routes(settings)
        self._clock = clock
        self._new_key = new_key
        self._log = log
        self.captures = Captures(
            settings, self.cookies.store_tokens, self._report, clock=clock, random=random, log=log
        )
        self.device = DeviceFlow(settings, self.cookies, self.routes, clock=clock, log=log)

    # -- 0. the free, anonymous fast path ------------------------------------------

    def plainly_free(self, method: str, path: str, cookie: str) -> bool:
        """Whether a request is free and anonymous, decided from three strings.

        True means: a path already canonical, not one of our routes, no session
        cookie at all (so no cookie work either), and a rule table that prices
        it at nothing. The adapter may then run the app at once with no
        customer and no charge, which is exactly what :meth:`handle` would
        decide, minus building a :class:`Request`. False means: take the flow.
        """
        settings = self.settings
        if cookie and settings.cookie_name in cookie:
            return False
        if not is_plain_path(path) or self.routes.owns(path):
            return False
        rule = settings.price_of
        if rule is None:
            return True
        table = rule.table
        if table is None:
            return False
        return table.price_for(method if method.isupper() else method.upper(), path) is None

    # -- 1. the flow of one request -------------------------------------------------

    def handle(self, request: Request) -> Flow[Respond | Forward]:
        """Route -> session -> price -> charge: the decision for ``request``."""
        if request.unfit:
            return self._fail(BadRequest("the path cannot be routed safely"), request)
        route = self.routes.match(request)
        if route is not None:
            return (yield from self._route(route, request))
        credential = yield from self._credential(request)
        session, set_cookies, store_down = credential
        customer = request.customer = session.customer if session is not None else None
        try:
            decision = yield from self._price(request)
        except PricingError as error:
            self._log.error(
                "pricing failed for %r: %s", request, error.detail, exc_info=error.__cause__
            )
            return self._fail(error, request, set_cookies=set_cookies)
        if decision is None:
            return Forward(customer, None, set_cookies, private=bool(set_cookies))
        if decision is PREFLIGHT:
            return self._respond(request, preflight_answer(request, self.settings))
        assert isinstance(decision, Price)
        if not request.is_canonical:
            # Routers serve this variant from the canonical path's handler (and
            # often redirect to it): send the visitor there before charging, so
            # one page view costs one charge.
            location = self.routes.current_path(request)
            return self._respond(request, redirect(location, set_cookies, status=308))
        if store_down is not None:
            if self.settings.fail_open:
                self._log.warning("failed open: %r served uncharged (store unavailable)", request)
                return Forward(None, None, set_cookies, private=True)
            outage = ServiceUnavailable("the state store is unavailable", code="store_unavailable")
            return self._fail(outage, request, price=decision, set_cookies=set_cookies)
        if session is None:
            # A program whose token no longer works is told so (RFC 6750), not just "sign in".
            refusal = InvalidToken() if request.bearer is not None else SignInRequired()
            return self._fail(refusal, request, price=decision, set_cookies=set_cookies)
        return (yield from self._charge(request, session, decision, set_cookies))

    def _credential(
        self, request: Request
    ) -> Flow[tuple[Session | None, tuple[str, ...], StoreUnavailable | None]]:
        """Who is signed in: ``(session, Set-Cookie values, store failure)``.

        ``Authorization: Bearer`` wins over the cookie: a program that also
        carries a browser's cookie pays with its token, and the cookie is left
        alone (neither read nor cleared), so one request is never charged twice.
        Either way the session must not have been signed out (the store).
        """
        bearer = request.bearer
        if bearer is not None:
            session: Session | None = self.cookies.open_bearer(bearer)
            set_cookies: tuple[str, ...] = ()
            sid = self.cookies.bearer_id(bearer)
        else:
            read = self.cookies.read_session(request)
            session, set_cookies = read.session, read.set_cookies
            sid = self.cookies.session_id(session) if session is not None else ""
            if read.rejected is not None:
                self.settings.watch.session("rejected", read.rejected)
        if session is None:
            if bearer is not None:
                self.settings.watch.session("rejected", "invalid")
            return None, set_cookies, None
        try:
            if (yield StoreCall("get", (_revoked(sid),))):
                # Signed out (on any host sharing the store): a copy is no session.
                if bearer is None:
                    set_cookies = (self.cookies.clear_session(request),)
                self.settings.watch.session("rejected", "revoked")
                return None, set_cookies, None
        except StoreUnavailable as exc:
            # Sign-out cannot be checked: nobody is signed in for now.
            self._log.error("the state store is unavailable (%s): session not trusted", exc)
            return None, set_cookies, exc
        return session, set_cookies, None

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
        table = settings.price_of.table if settings.price_of is not None else None
        route = table.rule_of(price) if table is not None else None
        started = self._clock()
        try:
            if mode == "transaction":
                flow = api.create_transaction(settings, token, price.micros, charge.idempotency_key)
            else:
                flow = api.authorize_charge(settings, token, price.micros, charge.idempotency_key)
            charge.id = yield from flow
        except SmallTransfersError as error:
            failed_open = isinstance(error, ServiceUnavailable) and settings.fail_open
            outcome: Outcome = "failed_open" if failed_open else error.outcome
            event = _event(
                outcome,
                charge,
                request,
                customer,
                error.code,
                route=route,
                started=started,
                now=self._clock(),
            )
            self._report(event, error)
            if failed_open:
                return Forward(customer, None, set_cookies, private=private)
            if isinstance(error, SessionInvalid):
                bearer = request.bearer
                if bearer is None:
                    set_cookies = (self.cookies.clear_session(request),)
                else:
                    # The customer revoked this site: the token is dead everywhere.
                    yield from self._revoke(self.cookies.bearer_id(bearer), session)
                    error = InvalidToken(error.detail)
            return self._fail(error, request, price=price, set_cookies=set_cookies)
        except BaseException:
            # Cancelled (a timeout, a shutdown) with the call in flight: the
            # charge may have happened, so it is reported for reconciliation.
            self._report(
                _event(
                    "interrupted",
                    charge,
                    request,
                    customer,
                    "interrupted",
                    route=route,
                    started=started,
                    now=self._clock(),
                )
            )
            raise
        done = self._clock()
        if mode == "transaction":
            self._report(
                _event("charged", charge, request, customer, route=route, started=started, now=done)
            )
            return Forward(customer, charge, set_cookies, private=private)
        self._report(
            _event("authorized", charge, request, customer, route=route, started=started, now=done)
        )
        plan = _CapturePlan(token, request, customer.id, route)
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
            customer = Customer(plan.customer_id)
            event = _event("not_captured", charge, plan.request, customer, reason, route=plan.route)
            self._report(event)
            return None
        wanted = charge.amount_micros
        if charge.capture_micros is not None and charge.capture_micros > charge.authorized_micros:
            self._log.warning(
                "capture of %d micros clamped to the %d authorized (charge %s, key %s)",
                charge.capture_micros,
                charge.authorized_micros,
                charge.id,
                charge.idempotency_key,
            )
        assert charge.id is not None
        charge.captured_micros = wanted
        record = CaptureRecord(
            charge_id=charge.id,
            amount_micros=wanted,
            authorized_micros=charge.authorized_micros,
            customer_id=plan.customer_id,
            method=plan.request.method,
            path=plan.request.root_path + plan.request.path,
            idempotency_key=charge.idempotency_key,
            sealed_token="",
            route=plan.route,
        )
        return self.captures.new(record, plan.token)

    def capture_round(self, *, final: bool = False) -> Flow[float]:
        """One round of the capture worker (see :mod:`._captures`); seconds until the next."""
        return self.captures.round(final=final)

    # -- our own routes ------------------------------------------------------------

    def _route(self, route: Route, request: Request) -> Flow[Respond | Forward]:
        if route is Route.CALLBACK:
            return (yield from self._callback(request))
        if route is Route.SIGN_IN:
            return self._sign_in(request)
        if route is Route.SIGN_OUT:
            return (yield from self._sign_out(request))
        body = (yield ReadBody(request, _MAX_FORM + 1)) if request.method == "POST" else b""
        if route is Route.DEVICE:
            answer = yield from self.device.authorize(request, body)
        elif route is Route.TOKEN:
            answer = yield from self.device.token(request, body)
        else:
            session = (yield from self._credential(request))[0]
            answer = yield from self.device.verify(
                request, body, session, lambda back: self.routes.sign_in_url(request, back)
            )
        return self._respond(request, answer)

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
            self._log.info("sign-in denied by the visitor; nothing charged")
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
        self.settings.watch.session("sign_in")
        self._call_hook(self.settings.on_sign_in, grant.customer, "on_sign_in")
        return self._respond(request, redirect(next_path, cookies))

    def _sign_out(self, request: Request) -> Flow[Respond]:
        bearer = request.bearer
        if bearer is not None:
            # A program signs out its token: revoked everywhere the store reaches.
            session = self.cookies.open_bearer(bearer)
            if session is not None:
                yield from self._revoke(self.cookies.bearer_id(bearer), session)
                self._log.info("sign-out of a program: customer %s", session.customer.id)
                self.settings.watch.session("sign_out")
            return self._respond(request, Answer(204, [("Cache-Control", "no-store")]))
        params = query_params(request.query_string)
        next_path = safe_next(params.get("next"), self.routes.home(request))
        session = self.cookies.read_session(request).session
        if session is not None:
            # Every copy of this cookie, on every host sharing the store, stops
            # opening; the record lives as long as the session would have.
            yield from self._revoke(self.cookies.session_id(session), session)
            self._log.info("sign-out: customer %s", session.customer.id)
            self.settings.watch.session("sign_out")
            self._call_hook(self.settings.on_sign_out, session.customer, "on_sign_out")
        cleared = [self.cookies.clear_session(request)]
        return self._respond(request, redirect(next_path, cleared))

    def _revoke(self, sid: str, session: Session) -> Flow[None]:
        try:
            yield StoreCall("put", (_revoked(sid), b"1", self.cookies.remaining(session)))
        except StoreUnavailable as exc:
            self._log.error(
                "sign-out of customer %s could not be recorded (%s): copies of the "
                "credential stay valid until they expire",
                session.customer.id,
                exc,
            )

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
        if next_path is None and request.websocket:
            next_path = self.routes.home(request)  # a browser cannot "return" to a socket
        answer = error_answer(
            error,
            request,
            self.routes,
            price=price,
            charge_mode=self.settings.charge_mode,
            dashboard_url=self.settings.base_url + "/customer/dashboard",
            next_path=next_path,
            set_cookies=set_cookies,
        )
        return self._respond(request, answer)

    def _report(self, event: ChargeEvent, error: SmallTransfersError | None = None) -> None:
        """Log a charge outcome (with fields for JSON formatters), tell observers and hooks."""
        level = logging.INFO if event.ok else _LEVELS.get(event.outcome, logging.WARNING)
        if self._log.isEnabledFor(level):
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
                extra={
                    "outcome": event.outcome,
                    "amount_micros": event.amount_micros,
                    "mode": event.mode,
                    "route": event.route,
                    "charge_id": event.charge_id,
                    "idempotency_key": event.idempotency_key,
                    "customer_id": event.customer_id,
                    "method": event.method,
                    "path": event.path,
                    "error_code": event.code,
                    "duration_ms": None
                    if event.duration_s is None
                    else round(event.duration_s * 1000, 3),
                },
            )
        self.settings.watch.charge(event)
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


#: The largest body our own routes read (the device flow's small forms).
_MAX_FORM = 4096


def _revoked(session_id: str) -> str:
    """The store key that marks a session as signed out."""
    return f"revoked:{session_id}"


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
    *,
    route: str | None = None,
    started: float | None = None,
    now: float | None = None,
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
        route=route,
        duration_s=None if started is None or now is None else max(0.0, now - started),
    )
