"""What an operator sees: Prometheus metrics, OpenTelemetry spans and the charge log.

Everything is read from the real thing after real requests through the
emulator: metrics from a ``prometheus_client.CollectorRegistry``, spans from
the SDK's ``InMemorySpanExporter``, with the server span opened by
OpenTelemetry's own WSGI/ASGI instrumentation around the middleware, as a
merchant's stack would have it.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as TracedASGI
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as TracedWSGI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from st_middleware import ChargeEvent, Price, Request, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.emulator import Customer as EmuCustomer
from st_middleware.emulator import Emulator
from st_middleware.observability import opentelemetry, prometheus
from st_middleware.testing import (
    async_signed_in_client,
    emulator_options,
    ledger,
    new_customer,
    signed_in_client,
)

PRICE = 3000
PRICING: dict[str, int | Price] = {
    "/api/*": PRICE,
    "/ac": Price(PRICE, mode="authorize-capture"),
}
CAPTURED = 1200  # what /ac captures of the PRICE it authorized

CHARGES = "smalltransfers_charges_total"
REQUESTS = "smalltransfers_api_requests_total"


# -- the apps and what watches them ---------------------------------------------------


def shop_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    charge = environ["smalltransfers.charge"]
    if charge is not None and charge.mode == "authorize-capture":
        charge.capture_micros = CAPTURED
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def shop_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # no lifespan of its own
    charge = scope["smalltransfers.charge"]
    if charge is not None and charge.mode == "authorize-capture":
        charge.capture_micros = CAPTURED
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Watched:
    """A registry and a tracer provider whose spans land in memory."""

    registry: CollectorRegistry
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def observers(self) -> list[Any]:
        return [prometheus(self.registry), opentelemetry(self.provider)]

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def series(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        """Every sample called ``name``, keyed by its label values (and only those labels)."""
        found: dict[tuple[str, ...], float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    assert set(sample.labels) == set(labels), sample
                    found[tuple(sample.labels[label] for label in labels)] = sample.value
        return found

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind == SpanKind.CLIENT]

    def server_span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.kind == SpanKind.SERVER and s.name == name]
        assert len(found) == 1, [span.name for span in self.spans()]
        return found[0]


@pytest.fixture
def watched() -> Iterator[Watched]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Watched(CollectorRegistry(), provider, exporter)
    provider.shutdown()


@contextmanager
def wsgi_client(
    emu: Emulator, watched: Watched, customer: EmuCustomer, **options: Any
) -> Iterator[httpx.Client]:
    """A signed-in client on the WSGI shop, under OpenTelemetry's WSGI instrumentation."""
    options.setdefault("observers", watched.observers())
    options.setdefault("pricing", PRICING)
    middleware = SmallTransfersWSGI(shop_wsgi, **emulator_options(emu), **options)
    traced = TracedWSGI(middleware, tracer_provider=watched.provider)
    try:
        with signed_in_client(traced, emu, customer) as client:
            yield client
    finally:
        middleware.close()


@asynccontextmanager
async def asgi_client(
    emu: Emulator, watched: Watched, customer: EmuCustomer, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in client on the ASGI shop, under OpenTelemetry's ASGI instrumentation."""
    middleware = SmallTransfersASGI(
        shop_asgi,
        **emulator_options(emu),
        pricing=PRICING,
        observers=watched.observers(),
        **options,
    )
    traced = TracedASGI(middleware, tracer_provider=watched.provider)
    try:
        async with async_signed_in_client(traced, emu, customer) as client:
            yield client
    finally:
        await middleware.aclose()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def secrets_of(emu: Emulator, customer: EmuCustomer, client: Any) -> list[str]:
    """The values no span may hold: access tokens, the secret key, the session cookie."""
    with emu.store._lock:
        rows = emu.store._db.execute(
            "SELECT token FROM tokens WHERE customer_id = ?", (customer.id,)
        ).fetchall()
    tokens = [row[0] for row in rows]
    assert tokens, "the customer signed in: the emulator holds a token"
    cookies = [cookie.value for cookie in client.cookies.jar if cookie.name == "st_session"]
    assert cookies, "the client holds a session cookie"
    return [*tokens, emu.secret_key, *cookies]


def assert_no_secret_in_spans(watched: Watched, secrets: list[str]) -> None:
    for span in watched.spans():
        texts = [str(value) for value in (span.attributes or {}).values()]
        texts += [str(v) for event in span.events for v in (event.attributes or {}).values()]
        for secret in secrets:
            assert not any(secret in text for text in texts), (span.name, secret[:6])
    for span in watched.client_spans():
        assert "?" not in str((span.attributes or {})["url.full"])


# -- the extras stay optional ---------------------------------------------------------


def test_importing_the_package_loads_neither_extra() -> None:
    code = (
        "import sys, st_middleware, st_middleware.observability\n"
        "loaded = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('prometheus_client', 'opentelemetry'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_missing_extra_names_the_line_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"st-middleware\[prometheus\]"):
        prometheus()
    with pytest.raises(ImportError, match=r"st-middleware\[otel\]"):
        opentelemetry()


# -- a paid request: metrics and spans ------------------------------------------------


def test_wsgi_paid_requests_count_by_rule_not_by_path(emu: Emulator, watched: Watched) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer) as client:
        assert client.get("/api/a?q=1").status_code == 200
        assert client.get("/api/b").status_code == 200
        assert client.get("/free").status_code == 200

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("charged", "transaction", "/api/*"): 2.0
    }
    assert watched.series("smalltransfers_charged_micros_total", "route") == {
        ("/api/*",): 2.0 * PRICE
    }
    assert watched.series("smalltransfers_captured_micros_total", "route") == {}
    assert watched.series(REQUESTS, "endpoint", "status") == {
        ("tokens", "200"): 1.0,
        ("transactions", "201"): 2.0,
    }
    durations = watched.series("smalltransfers_api_request_duration_seconds_count", "endpoint")
    assert durations == {("tokens",): 1.0, ("transactions",): 2.0}
    # Loopback: every call lands well inside the histogram, not in +Inf only.
    assert (
        watched.value(
            "smalltransfers_api_request_duration_seconds_bucket", endpoint="transactions", le="1.0"
        )
        == 2.0
    )
    assert watched.value("smalltransfers_sign_ins_total") == 1.0
    assert watched.value("smalltransfers_sign_outs_total") == 0.0
    # No label anywhere holds a customer, a charge id or a raw path.
    exposition = generate_latest(watched.registry).decode()
    ids = [row.id for row in ledger(emu, customer)]
    for unbounded in [customer.id, *ids, "/api/a", "/api/b", "/free"]:
        assert unbounded not in exposition


def test_wsgi_charge_call_is_a_client_span_under_the_server_span(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer) as client:
        assert client.get("/api/a?q=1").status_code == 200
        secrets = secrets_of(emu, customer, client)

    server = watched.server_span("GET /api/a")
    calls = [s for s in watched.client_spans() if s.name == "POST /api/v1/transactions"]
    assert len(calls) == 1
    call = calls[0]
    assert call.parent is not None
    assert (call.parent.span_id, call.context.trace_id) == (
        server.context.span_id,
        server.context.trace_id,
    )
    assert dict(call.attributes or {}) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": emu.port,
        "url.full": f"{emu.url}/api/v1/transactions",
        "url.template": "/api/v1/transactions",
        "smalltransfers.endpoint": "transactions",
        "http.response.status_code": 201,
    }
    assert call.status.status_code == StatusCode.UNSET
    (row,) = ledger(emu, customer)
    charge = {
        "smalltransfers.charge.outcome": "charged",
        "smalltransfers.charge.amount_micros": PRICE,
        "smalltransfers.charge.mode": "transaction",
        "smalltransfers.route": "/api/*",
        "smalltransfers.charge.id": row.id,
    }
    assert {k: v for k, v in (server.attributes or {}).items() if k in charge} == charge
    assert [(e.name, dict(e.attributes or {})) for e in server.events] == [
        ("smalltransfers.charge", charge)
    ]
    # The sign-in's code exchange is traced too, under the callback's server span.
    (exchange,) = [s for s in watched.client_spans() if s.name == "POST /api/v1/oauth/tokens"]
    callback = [s for s in watched.spans() if s.kind == SpanKind.SERVER and s.name != server.name]
    assert exchange.parent is not None
    assert exchange.parent.span_id in {s.context.span_id for s in callback}
    assert_no_secret_in_spans(watched, secrets)


@pytest.mark.anyio
async def test_asgi_paid_request_metrics_and_span(emu: Emulator, watched: Watched) -> None:
    customer = new_customer(emu)
    async with asgi_client(emu, watched, customer) as client:
        assert (await client.get("/api/x")).status_code == 200
        secrets = secrets_of(emu, customer, client)

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("charged", "transaction", "/api/*"): 1.0
    }
    assert watched.series(REQUESTS, "endpoint", "status") == {
        ("tokens", "200"): 1.0,
        ("transactions", "201"): 1.0,
    }
    server = watched.server_span("GET /api/x")
    (call,) = [s for s in watched.client_spans() if s.name == "POST /api/v1/transactions"]
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    assert (call.attributes or {})["http.response.status_code"] == 201
    assert (server.attributes or {})["smalltransfers.charge.outcome"] == "charged"
    assert (server.attributes or {})["smalltransfers.charge.amount_micros"] == PRICE
    assert_no_secret_in_spans(watched, secrets)


# -- refusals and outages -------------------------------------------------------------


def test_a_refused_charge_is_counted_and_its_span_failed(emu: Emulator, watched: Watched) -> None:
    poor = new_customer(emu, limit_micros=PRICE - 1)
    with wsgi_client(emu, watched, poor) as client:
        assert client.get("/api/a").status_code == 402

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("refused", "transaction", "/api/*"): 1.0
    }
    assert watched.series("smalltransfers_charged_micros_total", "route") == {}
    assert watched.series(REQUESTS, "endpoint", "status") == {
        ("tokens", "200"): 1.0,
        ("transactions", "402"): 1.0,
    }
    (call,) = [s for s in watched.client_spans() if s.name == "POST /api/v1/transactions"]
    assert (call.attributes or {})["http.response.status_code"] == 402
    assert (call.attributes or {})["error.type"] == "402"
    assert call.status.status_code == StatusCode.ERROR
    server = watched.server_span("GET /api/a")
    assert (server.attributes or {})["smalltransfers.charge.outcome"] == "refused"
    assert (server.attributes or {})["smalltransfers.charge.error_code"] == "charge_limit_exceeded"


def test_small_transfers_in_maintenance_counts_as_unavailable(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer) as client:
        emu.set_faults(error="maintenance_mode")
        assert client.get("/api/a").status_code == 503

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("unavailable", "transaction", "/api/*"): 1.0
    }
    assert watched.series(REQUESTS, "endpoint", "status") == {
        ("tokens", "200"): 1.0,
        ("transactions", "503"): 1.0,
    }
    (call,) = [s for s in watched.client_spans() if s.name == "POST /api/v1/transactions"]
    assert (call.attributes or {})["error.type"] == "503"


def test_a_call_without_an_answer_is_counted_by_error_type(emu: Emulator, watched: Watched) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer, fail_open=True) as client:
        emu.set_faults(drop="after")  # the request arrives, the answer never does
        assert client.get("/api/a").status_code == 200

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("failed_open", "transaction", "/api/*"): 1.0
    }
    assert watched.series(REQUESTS, "endpoint", "status")[("transactions", "none")] == 1.0
    errors = watched.series("smalltransfers_api_errors_total", "endpoint", "error_type")
    ((endpoint, error_type),) = errors
    assert endpoint == "transactions"
    assert errors[(endpoint, error_type)] == 1.0
    (call,) = [s for s in watched.client_spans() if s.name == "POST /api/v1/transactions"]
    assert "http.response.status_code" not in (call.attributes or {})
    assert (call.attributes or {})["error.type"] == error_type
    assert call.status.status_code == StatusCode.ERROR


# -- the capture outbox -----------------------------------------------------------------


def test_a_failed_capture_is_retried_and_counted_once_captured(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer) as client:
        emu.set_faults(error="server_error", path="/api/v1/charges/", count=1)
        assert client.get("/ac").status_code == 200
        # The worker retries within about a second (backoff 0.25-0.5 s, rounds every 1 s).
        wait_for(lambda: watched.value("smalltransfers_captures_total", kind="captured") == 1.0)

    assert watched.series("smalltransfers_captures_total", "kind") == {
        ("recorded",): 1.0,
        ("retried",): 1.0,
        ("captured",): 1.0,
        ("lost",): 0.0,
    }
    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("authorized", "authorize-capture", "/ac"): 1.0,
        ("captured", "authorize-capture", "/ac"): 1.0,
    }
    assert watched.series("smalltransfers_authorized_micros_total", "route") == {
        ("/ac",): float(PRICE)
    }
    assert watched.series("smalltransfers_captured_micros_total", "route") == {
        ("/ac",): float(CAPTURED)
    }
    assert watched.series(REQUESTS, "endpoint", "status") == {
        ("tokens", "200"): 1.0,
        ("charges", "201"): 1.0,
        ("capture", "500"): 1.0,
        ("capture", "200"): 1.0,
    }
    # The worker's first round sampled the outbox (empty then); the gauges exist.
    assert watched.value("smalltransfers_captures_pending") == 0.0
    assert watched.value("smalltransfers_captures_failed") == 0.0

    server = watched.server_span("GET /ac")
    first, retry = sorted(
        (s for s in watched.client_spans() if s.name == "POST /api/v1/charges/{id}/capture"),
        key=lambda span: span.start_time or 0,
    )
    (row,) = ledger(emu, customer)
    assert (row.state, row.captured_micros) == ("captured", CAPTURED)
    assert (server.attributes or {})["smalltransfers.charge.id"] == row.id
    # OpenTelemetry's WSGI instrumentation closes the body (where the capture is
    # sent) outside its span, and the retry runs on the worker thread: both are
    # traces of their own, tied to the request by smalltransfers.charge.id.
    assert (first.parent, retry.parent) == (None, None)
    assert (first.attributes or {})["error.type"] == "500"
    assert (retry.attributes or {})["http.response.status_code"] == 200
    for span in (first, retry):
        assert (span.attributes or {})["url.full"] == f"{emu.url}/api/v1/charges/{row.id}/capture"
        assert (span.attributes or {})["smalltransfers.charge.id"] == row.id


@pytest.mark.anyio
async def test_asgi_capture_after_the_response_is_traced_under_its_request(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    async with asgi_client(emu, watched, customer) as client:
        assert (await client.get("/ac")).status_code == 200

    server = watched.server_span("GET /ac")
    calls = {s.name: s for s in watched.client_spans() if s.name != "POST /api/v1/oauth/tokens"}
    assert set(calls) == {"POST /api/v1/charges", "POST /api/v1/charges/{id}/capture"}
    for call in calls.values():
        assert call.parent is not None
        assert call.parent.span_id == server.context.span_id
    # The capture follows the last body message, after the instrumentation ended the
    # request's span: that span shows the authorization, the capture span the rest.
    (row,) = ledger(emu, customer)
    attributes = server.attributes or {}
    assert attributes["smalltransfers.charge.outcome"] == "authorized"
    assert attributes["smalltransfers.charge.amount_micros"] == PRICE
    assert attributes["smalltransfers.charge.id"] == row.id
    capture = calls["POST /api/v1/charges/{id}/capture"].attributes or {}
    assert capture["smalltransfers.charge.id"] == row.id
    assert capture["http.response.status_code"] == 200
    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("authorized", "authorize-capture", "/ac"): 1.0,
        ("captured", "authorize-capture", "/ac"): 1.0,
    }


@pytest.mark.anyio
async def test_asgi_capture_retries_are_not_traced_under_an_old_request(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    async with asgi_client(emu, watched, customer) as client:
        emu.set_faults(error="server_error", path="/api/v1/charges/", count=1)
        assert (await client.get("/ac")).status_code == 200
        deadline = time.monotonic() + 5
        while watched.value("smalltransfers_captures_total", kind="captured") != 1.0:
            assert time.monotonic() < deadline, "timed out"
            await anyio.sleep(0.02)
    retry = [
        s
        for s in watched.client_spans()
        if s.name == "POST /api/v1/charges/{id}/capture"
        and (s.attributes or {}).get("http.response.status_code") == 200
    ]
    assert len(retry) == 1
    assert retry[0].parent is None


def test_the_outbox_gauges_follow_the_worker_samples(watched: Watched) -> None:
    observer = prometheus(watched.registry)
    observer.captures_pending(3, 1)
    assert watched.value("smalltransfers_captures_pending") == 3.0
    assert watched.value("smalltransfers_captures_failed") == 1.0
    observer.captures_pending(0, 1)
    assert watched.value("smalltransfers_captures_pending") == 0.0


# -- sessions -------------------------------------------------------------------------


def test_sign_outs_and_rejected_sessions_are_counted(emu: Emulator, watched: Watched) -> None:
    customer = new_customer(emu)
    with wsgi_client(emu, watched, customer) as client:
        good = next(c for c in client.cookies.jar if c.name == "st_session")
        # A cookie that does not open (tampered, or sealed under another secret).
        client.cookies.set("st_session", good.value[:-4] + "AAAA", domain=good.domain)
        assert client.get("/api/a").status_code == 401
        client.cookies.set("st_session", good.value, domain=good.domain)
        assert client.post("/smalltransfers/sign-out").status_code == 303

    assert watched.value("smalltransfers_sign_ins_total") == 1.0
    assert watched.value("smalltransfers_sign_outs_total") == 1.0
    assert watched.series("smalltransfers_sessions_rejected_total", "reason") == {
        ("invalid",): 1.0,
        ("duplicate",): 0.0,
        ("revoked",): 0.0,
        ("rejected_hook",): 0.0,
    }
    assert watched.series(CHARGES, "outcome", "mode", "route") == {}


# -- labels, registries, misbehaving observers ----------------------------------------


def test_a_pricing_callable_is_labelled_callable(emu: Emulator, watched: Watched) -> None:
    customer = new_customer(emu)

    def price_of(request: Request) -> int | None:
        return 500 if request.path.startswith("/items/") else None

    with wsgi_client(emu, watched, customer, pricing=price_of) as client:
        for item in ("1", "2", "3"):
            assert client.get(f"/items/{item}").status_code == 200

    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("charged", "transaction", "callable"): 3.0
    }
    assert watched.series("smalltransfers_charged_micros_total", "route") == {("callable",): 1500.0}


def test_two_middlewares_share_one_registry(watched: Watched) -> None:
    first, second = prometheus(watched.registry), prometheus(watched.registry)
    event = ChargeEvent(
        outcome="charged",
        mode="transaction",
        amount_micros=10,
        customer_id="cus_1",
        method="GET",
        path="/x",
        idempotency_key="k",
        route="/x",
    )
    first.charge(event)
    second.charge(event)
    assert watched.value(CHARGES, outcome="charged", mode="transaction", route="/x") == 2.0
    with pytest.raises(ValueError, match="buckets"):
        prometheus(watched.registry, buckets=(1.0, 2.0))
    # Another namespace is another set of metrics in the same registry.
    prometheus(watched.registry, namespace="shop2").charge(event)
    assert watched.value("shop2_charges_total", outcome="charged", mode="transaction", route="/x")


class _BrokenCall:
    def end(self, status: int | None, error: str | None) -> None:
        raise RuntimeError("end broke")


class BrokenObserver:
    """An observer with a bug in every method."""

    def charge(self, event: ChargeEvent) -> None:
        raise RuntimeError("charge broke")

    def call(self, endpoint: str, method: str, url: str) -> _BrokenCall:
        return _BrokenCall()

    def session(self, kind: str, reason: str | None) -> None:
        raise RuntimeError("session broke")

    def capture(self, kind: str) -> None:
        raise RuntimeError("capture broke")

    def captures_pending(self, pending: int, failed: int) -> None:
        raise RuntimeError("gauge broke")


def test_an_observer_that_raises_never_breaks_a_request(
    emu: Emulator, watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    customer = new_customer(emu)
    observers = [BrokenObserver(), prometheus(watched.registry)]
    with (
        caplog.at_level(logging.ERROR, logger="st_middleware"),
        wsgi_client(emu, watched, customer, observers=observers) as client,
    ):
        assert client.get("/api/a").text == "ok"
        assert client.get("/ac").text == "ok"

    assert [row.state for row in ledger(emu, customer)] == ["captured", "captured"]
    # The observer next to the broken one still counted everything.
    assert watched.series(CHARGES, "outcome", "mode", "route") == {
        ("charged", "transaction", "/api/*"): 1.0,
        ("authorized", "authorize-capture", "/ac"): 1.0,
        ("captured", "authorize-capture", "/ac"): 1.0,
    }
    failures = {r.getMessage() for r in caplog.records if r.exc_info is not None}
    assert {
        "observer BrokenObserver failed in charge",
        "observer BrokenObserver failed in session",
        "observer BrokenObserver failed in capture",
        "observer call _BrokenCall failed in end",
    } <= failures


# -- the charge log, as a JSON formatter sees it --------------------------------------


class JSONFormatter(logging.Formatter):
    """What a merchant's JSON log shipper does: every field of the record, as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in ("args", "exc_info")}
        fields["message"] = record.getMessage()
        return json.dumps(fields, default=str)


def test_each_charge_outcome_is_one_json_log_line_with_its_fields(
    emu: Emulator, watched: Watched
) -> None:
    customer = new_customer(emu)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.INFO)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("st_middleware")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with wsgi_client(emu, watched, customer) as client:
            assert client.get("/api/a?page=2").status_code == 200
            secrets = secrets_of(emu, customer, client)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    records = [json.loads(line) for line in lines]
    charged = [r for r in records if r.get("outcome") is not None]
    assert len(charged) == 1
    (row,) = ledger(emu, customer)
    record = charged[0]
    assert {
        k: record[k]
        for k in (
            "outcome",
            "amount_micros",
            "mode",
            "route",
            "charge_id",
            "customer_id",
            "method",
            "path",
            "error_code",
        )
    } == {
        "outcome": "charged",
        "amount_micros": PRICE,
        "mode": "transaction",
        "route": "/api/*",
        "charge_id": row.id,
        "customer_id": customer.id,
        "method": "GET",
        "path": "/api/a",
        "error_code": None,
    }
    assert record["idempotency_key"] == row.idempotency_key
    assert isinstance(record["duration_ms"], float)
    assert record["duration_ms"] > 0
    assert (record["levelname"], record["name"]) == ("INFO", "st_middleware")
    for line in lines:
        for secret in secrets:
            assert secret not in line


# -- the demo shop's /metrics -----------------------------------------------------------


def test_the_demo_shop_serves_its_metrics(emu: Emulator) -> None:
    from examples.demo.app import PRICES, make_app

    from st_middleware.testing import TEST_SESSION_SECRET

    app = make_app(
        emulator_url=emu.url,
        publishable_key=emu.publishable_key,
        secret_key=emu.secret_key,
        session_secret=TEST_SESSION_SECRET,
    )
    try:
        with signed_in_client(app, emu, new_customer(emu)) as client:
            assert client.get("/joke").status_code == 200
            assert client.get("/joke").status_code == 200
            metrics = client.get("/metrics")
    finally:
        app.close()
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    text = metrics.text
    assert (
        'smalltransfers_charges_total{mode="transaction",outcome="charged",route="/joke"} 2.0'
        in text
    )
    joke = PRICES["/joke"]
    assert f'smalltransfers_charged_micros_total{{route="/joke"}} {2.0 * joke}' in text  # type: ignore[operator]
    assert "smalltransfers_sign_ins_total 1.0" in text


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist(watched: Watched) -> None:
    """A misspelt name would be a panel that silently shows "No data"."""
    prometheus(watched.registry)
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    exposed = {
        family.name + suffix
        for family in watched.registry.collect()
        for suffix in suffixes[family.type]
    }
    path = Path(__file__).parent.parent / "examples" / "grafana-dashboard.json"
    dashboard = json.loads(path.read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"smalltransfers_\w+", target["expr"])
    }
    assert asked <= exposed, asked - exposed
    assert {
        "smalltransfers_charges_total",
        "smalltransfers_charged_micros_total",
        "smalltransfers_captured_micros_total",
        "smalltransfers_api_request_duration_seconds_bucket",
        "smalltransfers_captures_pending",
    } <= asked
