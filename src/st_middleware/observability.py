"""Ready observers for operators: Prometheus metrics and OpenTelemetry client spans.

One line switches each on::

    from st_middleware.observability import opentelemetry, prometheus

    app = SmallTransfersASGI(app, pricing=..., observers=[prometheus(), opentelemetry()])

Both are optional extras and never runtime dependencies of the middleware:
``pip install "st-middleware[prometheus]"`` (``prometheus_client``) and
``pip install "st-middleware[otel]"`` (``opentelemetry-api``; an SDK and an
exporter are the merchant's choice). Their imports happen inside
:func:`prometheus` and :func:`opentelemetry`, so ``import st_middleware`` (and
this module) loads neither.

Labels are bounded on purpose: an outcome, a mode, the pricing *rule* that
priced the request (``"/api/*"``; ``"callable"`` for a pricing callable), an
endpoint, an HTTP status, a reason. A raw path, a customer, an amount or a
charge id is never a label: each would make a new time series per visitor.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ._charge import ChargeEvent
from ._observe import CallObservation, CaptureKind, Observer, SessionKind
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Status, Tracer, TracerProvider
    from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["API_DURATION_BUCKETS", "opentelemetry", "prometheus"]

#: Seconds: a loopback emulator answers in ~5 ms, a healthy remote Small Transfers in
#: tens of ms, and the middleware's default timeout is 10 s.
API_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The label of a request priced by a callable (it has no rule to name).
CALLABLE_ROUTE = "callable"
#: Why a session is refused (see ``Observer.session``); anything else is counted as
#: "other", so a future reason can never grow the label set without bound.
_REJECT_REASONS = ("invalid", "duplicate", "revoked", "rejected_hook")
_CAPTURE_KINDS: tuple[CaptureKind, ...] = ("recorded", "retried", "captured", "lost")
#: The ``status`` label of a call that got no answer (its kind is in api_errors_total).
NO_ANSWER = "none"


# -- Prometheus ---------------------------------------------------------------------


class _Metrics:
    """The metric families of one registry and namespace (shared by its observers)."""

    def __init__(
        self, registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...]
    ) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.buckets = buckets
        ns, reg = namespace, registry
        self.charges = Counter(
            "charges",
            "Charge outcomes (transactions, authorizations, captures and their failures).",
            ["outcome", "mode", "route"],
            namespace=ns,
            registry=reg,
        )
        self.charged_micros = Counter(
            "charged_micros",
            "Micros (millionths of a USD) charged by accepted transactions.",
            ["route"],
            namespace=ns,
            registry=reg,
        )
        self.authorized_micros = Counter(
            "authorized_micros",
            "Micros reserved by accepted authorizations (authorize-capture mode).",
            ["route"],
            namespace=ns,
            registry=reg,
        )
        self.captured_micros = Counter(
            "captured_micros",
            "Micros taken by confirmed captures (authorize-capture mode).",
            ["route"],
            namespace=ns,
            registry=reg,
        )
        self.api_requests = Counter(
            "api_requests",
            'Calls to Small Transfers by endpoint and HTTP status ("none": no answer came).',
            ["endpoint", "status"],
            namespace=ns,
            registry=reg,
        )
        self.api_errors = Counter(
            "api_errors",
            "Calls to Small Transfers that got no answer, by endpoint and error type.",
            ["endpoint", "error_type"],
            namespace=ns,
            registry=reg,
        )
        self.api_duration = Histogram(
            "api_request_duration_seconds",
            "Time of one call to Small Transfers, answered or not.",
            ["endpoint"],
            namespace=ns,
            registry=reg,
            buckets=buckets,
        )
        self.captures = Counter(
            "captures",
            "Captures recorded in the outbox, retried, confirmed, or lost for good.",
            ["kind"],
            namespace=ns,
            registry=reg,
        )
        self.captures_pending = Gauge(
            "captures_pending",
            "Captures waiting in the outbox (sampled by the capture worker).",
            namespace=ns,
            registry=reg,
        )
        self.captures_failed = Gauge(
            "captures_failed",
            "Captures that failed for good and are kept in the outbox for inspection.",
            namespace=ns,
            registry=reg,
        )
        self.sign_ins = Counter("sign_ins", "Visitors signed in.", namespace=ns, registry=reg)
        self.sign_outs = Counter("sign_outs", "Visitors signed out.", namespace=ns, registry=reg)
        self.sessions_rejected = Counter(
            "sessions_rejected",
            "Sessions refused, by reason (invalid, duplicate, revoked, rejected_hook).",
            ["reason"],
            namespace=ns,
            registry=reg,
        )
        # Series that exist from the start read as 0, not "no data": rate() and
        # alerts on them work before the first event.
        for kind in _CAPTURE_KINDS:
            self.captures.labels(kind)
        for reason in _REJECT_REASONS:
            self.sessions_rejected.labels(reason)


_REGISTRIES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_REGISTRIES_LOCK = threading.Lock()


def _metrics(registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...]) -> _Metrics:
    # A registry refuses a name twice; an app with two middlewares (say a WSGI and
    # an ASGI mount) calling prometheus() twice shares one set of metric families.
    with _REGISTRIES_LOCK:
        known = _REGISTRIES.setdefault(registry, {})
        metrics = known.get(namespace)
        if metrics is None:
            metrics = known[namespace] = _Metrics(registry, namespace, buckets)
        elif metrics.buckets != buckets:
            raise ValueError(
                f"{namespace}_api_request_duration_seconds is already registered with "
                f"buckets {metrics.buckets}; pass the same buckets or another namespace"
            )
        return metrics


class _PrometheusCall:
    __slots__ = ("_endpoint", "_observer", "_started")

    def __init__(self, observer: _PrometheusObserver, endpoint: str) -> None:
        self._observer = observer
        self._endpoint = endpoint
        self._started = time.perf_counter()

    def end(self, status: int | None, error: str | None) -> None:
        took = time.perf_counter() - self._started
        count, duration = self._observer._calls(self._endpoint, status)
        count.inc()
        duration.observe(took)
        if status is None:
            errors = self._observer._metrics.api_errors
            errors.labels(self._endpoint, error or "unknown").inc()


class _PrometheusObserver:
    """Counts what the middleware does into a Prometheus registry."""

    __slots__ = ("_by_call", "_by_charge", "_metrics")

    def __init__(self, metrics: _Metrics) -> None:
        self._metrics = metrics
        # ``labels()`` takes a lock and builds a key each time: about as much as the
        # increment itself. A priced request touches four series, so their children
        # are kept here, one dict lookup per event (the label sets are bounded).
        self._by_charge: dict[tuple[str, str, str | None], tuple[Counter, Counter | None]] = {}
        self._by_call: dict[tuple[str, int | None], tuple[Counter, Histogram]] = {}

    def charge(self, event: ChargeEvent) -> None:
        key = (event.outcome, event.mode, event.route)
        children = self._by_charge.get(key)
        if children is None:
            children = self._by_charge[key] = self._charge_children(*key)
        count, micros = children
        count.inc()
        if micros is not None:
            micros.inc(event.amount_micros)

    def call(self, endpoint: str, method: str, url: str) -> CallObservation:
        return _PrometheusCall(self, endpoint)

    def session(self, kind: SessionKind, reason: str | None) -> None:
        if kind == "sign_in":
            self._metrics.sign_ins.inc()
        elif kind == "sign_out":
            self._metrics.sign_outs.inc()
        else:
            known = reason if reason in _REJECT_REASONS else "other"
            self._metrics.sessions_rejected.labels(known).inc()

    def capture(self, kind: CaptureKind) -> None:
        self._metrics.captures.labels(kind).inc()

    def captures_pending(self, pending: int, failed: int) -> None:
        self._metrics.captures_pending.set(pending)
        self._metrics.captures_failed.set(failed)

    def _charge_children(
        self, outcome: str, mode: str, route: str | None
    ) -> tuple[Counter, Counter | None]:
        metrics = self._metrics
        label = CALLABLE_ROUTE if route is None else route
        micros = {
            "charged": metrics.charged_micros,
            "authorized": metrics.authorized_micros,
            "captured": metrics.captured_micros,
        }.get(outcome)
        count = metrics.charges.labels(outcome, mode, label)
        return count, None if micros is None else micros.labels(label)

    def _calls(self, endpoint: str, status: int | None) -> tuple[Counter, Histogram]:
        key = (endpoint, status)
        children = self._by_call.get(key)
        if children is None:
            label = NO_ANSWER if status is None else str(status)
            children = self._by_call[key] = (
                self._metrics.api_requests.labels(endpoint, label),
                self._metrics.api_duration.labels(endpoint),
            )
        return children


def prometheus(
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "smalltransfers",
    buckets: Sequence[float] = API_DURATION_BUCKETS,
) -> Observer:
    """An observer that counts charges, calls, sessions and captures in Prometheus metrics.

    ``registry``: where the metrics live (default: ``prometheus_client.REGISTRY``,
    what ``start_http_server`` and ``make_asgi_app`` serve). Calling this again with
    the same registry and namespace shares the metrics. ``buckets``: of the API
    latency histogram, in seconds. Needs ``pip install "st-middleware[prometheus]"``.

    Metrics (with the default namespace):

    - ``smalltransfers_charges_total{outcome,mode,route}``
    - ``smalltransfers_charged_micros_total{route}`` (transactions accepted),
      ``smalltransfers_authorized_micros_total{route}``,
      ``smalltransfers_captured_micros_total{route}``
    - ``smalltransfers_api_requests_total{endpoint,status}``,
      ``smalltransfers_api_errors_total{endpoint,error_type}``,
      ``smalltransfers_api_request_duration_seconds{endpoint}`` (histogram)
    - ``smalltransfers_captures_total{kind}`` (recorded, retried, captured, lost),
      ``smalltransfers_captures_pending``, ``smalltransfers_captures_failed`` (gauges)
    - ``smalltransfers_sign_ins_total``, ``smalltransfers_sign_outs_total``,
      ``smalltransfers_sessions_rejected_total{reason}``
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "st_middleware.observability.prometheus() needs prometheus_client: "
            'pip install "st-middleware[prometheus]"'
        ) from exc
    chosen = prometheus_client.REGISTRY if registry is None else registry
    return _PrometheusObserver(_metrics(chosen, namespace, tuple(buckets)))


# -- OpenTelemetry ------------------------------------------------------------------


@lru_cache(maxsize=64)
def _server(host_port: str, scheme: str) -> tuple[str, int]:
    """``server.address`` and ``server.port`` of ``host[:port]`` (a few origins: cached)."""
    parts = urlsplit(f"{scheme}://{host_port}")
    return parts.hostname or "", parts.port or (443 if scheme == "https" else 80)


def _target(endpoint: str, url: str) -> tuple[str, str, str, int, str | None]:
    """``url.full`` (no query, no credentials), ``url.template``, address, port, charge id."""
    full = url.split("#", 1)[0].split("?", 1)[0]
    scheme, _, rest = full.partition("://")
    authority, slash, path = rest.partition("/")
    path = slash + path or "/"
    if "@" in authority:
        # The configuration refuses credentials in base_url; never export one all the same.
        authority = authority.rpartition("@")[2]
        full = f"{scheme}://REDACTED:REDACTED@{authority}{path}"
    charge_id = None
    if endpoint == "capture":
        # ".../charges/{id}/capture": the id would make every span name unique.
        head, _, charge_id = path.rpartition("/")[0].rpartition("/")
        path = head + "/{id}/capture"
    address, port = _server(authority, scheme)
    return full, path, address, port, charge_id


class _SpanCall:
    __slots__ = ("_error", "_span")

    def __init__(self, span: Span, error: Status) -> None:
        self._span = span
        self._error = error

    def end(self, status: int | None, error: str | None) -> None:
        span = self._span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400 and error is None:
                # The HTTP conventions: a client span with a 4xx/5xx answer failed,
                # and its error.type is the status code.
                error = str(status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(self._error)
        span.end()


class _TracingObserver:
    """Opens a CLIENT span per call to Small Transfers; notes charges on the current span."""

    __slots__ = ("_client", "_current_span", "_error", "_tracer")

    def __init__(self, tracer: Tracer) -> None:
        # Imported once here (the caller checked that the extra is installed).
        from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span

        self._tracer = tracer
        self._current_span = get_current_span
        self._client = SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)

    def charge(self, event: ChargeEvent) -> None:
        span = self._current_span()
        # Not recording: no server span (the capture worker), or one already ended.
        if not span.is_recording():
            return
        attributes: dict[str, str | int] = {
            "smalltransfers.charge.outcome": event.outcome,
            "smalltransfers.charge.amount_micros": event.amount_micros,
            "smalltransfers.charge.mode": event.mode,
            "smalltransfers.route": CALLABLE_ROUTE if event.route is None else event.route,
        }
        if event.charge_id is not None:
            attributes["smalltransfers.charge.id"] = event.charge_id
        if event.code is not None:
            attributes["smalltransfers.charge.error_code"] = event.code
        # On the span, the request's last word (an authorization, then its capture);
        # as events, every outcome in order.
        span.set_attributes(attributes)
        span.add_event("smalltransfers.charge", attributes)

    def call(self, endpoint: str, method: str, url: str) -> CallObservation:
        full, template, address, port, charge_id = _target(endpoint, url)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "server.address": address,
            "server.port": port,
            "url.full": full,
            "url.template": template,
            "smalltransfers.endpoint": endpoint,
        }
        if charge_id is not None:
            # A capture comes after the request's span has ended (or from the worker):
            # the id ties it to the smalltransfers.charge.id of the request that authorized.
            attributes["smalltransfers.charge.id"] = unquote(charge_id)
        # Started in the current context, not made current: its parent is the server
        # span of the request, and nothing the middleware does next nests under it.
        span = self._tracer.start_span(
            f"{method} {template}", kind=self._client, attributes=attributes
        )
        return _SpanCall(span, self._error)

    def session(self, kind: SessionKind, reason: str | None) -> None:
        span = self._current_span()
        if span.is_recording():
            attributes: dict[str, str] = {"smalltransfers.session.event": kind}
            if reason is not None:
                attributes["smalltransfers.session.reason"] = reason
            span.add_event("smalltransfers.session", attributes)

    def capture(self, kind: CaptureKind) -> None:
        """Counted by metrics; a capture's call has its own span already."""

    def captures_pending(self, pending: int, failed: int) -> None:
        """A gauge's job (see :func:`prometheus`), not a span's."""


def opentelemetry(tracer_provider: TracerProvider | None = None) -> Observer:
    """An observer that traces each call to Small Transfers as an OpenTelemetry CLIENT span.

    Spans follow the HTTP client conventions (``http.request.method``,
    ``server.address``, ``server.port``, ``url.full`` without its query,
    ``url.template``, ``http.response.status_code``, ``error.type``), named
    ``POST /api/v1/transactions`` and the like, and are children of the span the
    merchant's ASGI/WSGI instrumentation opened for the request. That span gets
    ``smalltransfers.charge.outcome``, ``.amount_micros``, ``.mode``, ``.id`` and
    ``smalltransfers.route``, plus a ``smalltransfers.charge`` event per outcome.
    No attribute holds a token, a key, a code or a cookie.

    ``tracer_provider``: default, the global one (``opentelemetry.trace``). Needs
    ``pip install "st-middleware[otel]"``.
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(
            "st_middleware.observability.opentelemetry() needs opentelemetry-api: "
            'pip install "st-middleware[otel]"'
        ) from exc
    tracer = trace.get_tracer("st_middleware", __version__, tracer_provider)
    return _TracingObserver(tracer)
