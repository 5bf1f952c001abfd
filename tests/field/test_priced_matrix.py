"""Priced means priced on every stack: a differential matrix over real servers.

The middleware prices the path it is handed; the framework routes the path
it makes of it. Whenever the two disagree (``//paid`` merged by Werkzeug,
``/paid%0a`` matched by Starlette's ``^/paid$``, ``OPTIONS`` or a lowercase
``post`` run by a Django function view, ``HEAD`` running a GET handler), an
anonymous visitor gets priced content for free. So this test does not ask
the middleware what it priced: it asks the *handlers* whether they ran.

For every stack (a framework app wrapped by the middleware, under a real
server on 127.0.0.1), every raw request target of TARGETS and every method
variant of VARIANTS:

- anonymous (no cookie): no priced handler may run (see ``field_apps.is_priced``),
  and no 5xx may come from the middleware;
- signed in (a smaller pass, SIGNED_VARIANTS): a priced handler that ran must
  have been charged (at least one new ledger row for that request), and no
  request may write more than one row.

``FIELD_ROUTE_MAP=1`` also serves the bare, unwrapped apps under the same
servers and prints which handler each target reached (run with ``-s``): the
harness's sanity check, and the map of how each stack routes what.
``FIELD_STACKS=flask/gunicorn,django-asgi/uvicorn`` runs only those stacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from field_apps import SECRET_HEADER, Ran
from field_stacks import STACKS, Fleet, Running, Stack

from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import emulator_options, ledger, new_customer, sign_in

#: Raw request targets, written to the request line as they are ({origin}: the
#: server's http://127.0.0.1:PORT, for the absolute form).
TARGETS: tuple[str, ...] = (
    # /paid, exact rule, every way of spelling it
    "/paid",
    "//paid",
    "///paid",
    "/%2Fpaid",
    "/%2fpaid",
    "paid",
    "/paid%0a",
    "/paid%0d",
    "/paid%00",
    "/paid%09",
    "/paid%20",
    "/paid/",
    "/paid?x=1",
    "/paid#x",
    "/./paid",
    "/x/../paid",
    "/free/../paid",
    "/free/%2e%2e/paid",
    "/%2e/paid",
    "/%2e%2e/paid",
    "/paid/.",
    "/paid;x",
    "/PAID",
    "/p%61id",
    "/paid%ff",
    "/paid%c0%af",
    "/paid%ef%bf%bd",
    "/pa%0aid",
    "{origin}/paid",
    # /api/*, the wildcard
    "/api/x",
    "//api/x",
    "/api//x",
    "/api/x/",
    "/api",
    "/api/",
    "/%61pi/x",
    "/api%2fx",
    "/api/%2e%2e/free",
    # POST /search and GET /report, rules that name a method
    "/search",
    "//search",
    "/search/",
    "/search%0a",
    "/report",
    "//report",
    "/report/",
    "/report%0a",
    # the dispatcher's mount (harmless elsewhere)
    "/shop/paid",
    "/shop//paid",
    "/shop/%2e/paid",
    # free pages
    "/free",
    "/",
)


@dataclass(frozen=True)
class Variant:
    """A method as written on the wire, with any headers it comes with."""

    name: str
    method: str
    headers: tuple[tuple[str, str], ...] = ()


PREFLIGHT = (("Origin", "https://other.example"), ("Access-Control-Request-Method", "GET"))
VARIANTS: tuple[Variant, ...] = (
    Variant("GET", "GET"),
    Variant("HEAD", "HEAD"),
    Variant("OPTIONS", "OPTIONS"),
    Variant("OPTIONS+CORS", "OPTIONS", PREFLIGHT),
    Variant("POST", "POST"),
    Variant("get", "get"),
    Variant("head", "head"),
    Variant("options", "options"),
    Variant("post", "post"),
)
#: The signed-in pass: preflights never carry cookies, and the lowercase
#: HEAD/OPTIONS add nothing the anonymous pass does not already show.
SIGNED_VARIANTS: tuple[Variant, ...] = tuple(
    v for v in VARIANTS if v.name in ("GET", "HEAD", "OPTIONS", "POST", "get", "post")
)
ACCEPT = (("Accept", "*/*"),)
#: The middleware's own problem+json answers say who wrote them.
MIDDLEWARE_MARK = b"urn:st-middleware:error:"


@dataclass
class Cell:
    """One request of the matrix and what came of it."""

    stack: str
    kind: str  # "anon" or "signed"
    variant: str
    target: str
    status: str
    ran: list[Ran]
    secret: bool
    new_rows: int = 0
    problems: list[str] = field(default_factory=list)
    status_code: int | None = None
    middleware_answer: bool = False

    @property
    def priced_runs(self) -> list[Ran]:
        return [run for run in self.ran if run.priced]


@dataclass
class StackResult:
    stack: Stack
    cells: list[Cell] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _send(server: Running, kind: str, variant: Variant, target: str, cookie: str = "") -> Cell:
    headers = [*ACCEPT, *variant.headers]
    if cookie:
        headers.append(("Cookie", cookie))
    cell_id = server.next_cell(kind)
    reply, ran = server.request(variant.method, target, headers, cell_id)
    cell = Cell(
        server.stack.name,
        kind,
        variant.name,
        target,
        reply.shown,
        [run for run in ran if run.cell == cell_id],
        reply.header(SECRET_HEADER) is not None,
        status_code=reply.status,
        middleware_answer=MIDDLEWARE_MARK in reply.body,
    )
    strays = [run for run in ran if run.cell != cell_id]
    if strays:
        cell.problems.append(f"harness: RAN lines of other requests {strays}")
    if cell.secret and not cell.ran:
        cell.problems.append("harness: priced header seen but no RAN line (side channel broken?)")
    return cell


def _anonymous_pass(server: Running, variants: Iterable[Variant]) -> list[Cell]:
    cells = []
    for target in TARGETS:
        for variant in variants:
            cell = _send(server, "anon", variant, target)
            if cell.priced_runs:
                cell.problems.append("HOLE: priced handler ran unpaid")
            cells.append(cell)
    return cells


def _signed_in_pass(server: Running, emu: Emulator, customer: Customer, cookie: str) -> list[Cell]:
    cells = []
    for target in TARGETS:
        for variant in SIGNED_VARIANTS:
            before = len(ledger(emu, customer))
            cell = _send(server, "signed", variant, target, cookie)
            cell.new_rows = len(ledger(emu, customer)) - before
            if cell.priced_runs and cell.new_rows < 1:
                cell.problems.append("UNPAID: priced handler ran, no ledger row")
            if cell.new_rows > 1:
                cell.problems.append(f"CHARGED {cell.new_rows} TIMES for one request")
            cells.append(cell)
    return cells


def _signed_in_cookie(server: Running, emu: Emulator, customer: Customer) -> str:
    """Sign in with the test kit's real flow over HTTP; the Cookie header that results."""
    prefix = server.stack.prefix
    with httpx.Client(base_url=server.origin, timeout=30) as client:
        sign_in(
            client,
            emu,
            customer,
            sign_in_path=f"{prefix}/smalltransfers/sign-in",
            next_path=f"{prefix}/",
        )
        cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
    assert cookie, f"{server.stack.name}: signed in, but no cookie came back"
    return cookie


def _controls(server: Running, emu: Emulator, customer: Customer, cookie: str) -> list[str]:
    """Three requests whose answers are known: if they fail, the harness is wrong, not the app."""
    prefix, errors = server.stack.prefix, []
    get = VARIANTS[0]
    free = _send(server, "ctl", get, f"{prefix}/free")
    if free.status_code != 200 or [r.handler for r in free.ran] != ["free"]:
        errors.append(f"control: anonymous GET {prefix}/free gave {free.status} ran {free.ran}")
    locked = _send(server, "ctl", get, f"{prefix}/paid")
    if locked.status_code != 401 or locked.ran:
        errors.append(f"control: anonymous GET {prefix}/paid gave {locked.status} ran {locked.ran}")
    before = len(ledger(emu, customer))
    paid = _send(server, "ctl", get, f"{prefix}/paid", cookie)
    rows = len(ledger(emu, customer)) - before
    if paid.status_code != 200 or [r.handler for r in paid.ran] != ["paid"] or rows != 1:
        errors.append(
            f"control: signed-in GET {prefix}/paid gave {paid.status} ran {paid.ran}, {rows} rows"
        )
    return errors + [f"control {c.target}: {p}" for c in (free, locked, paid) for p in c.problems]


def _judge_5xx(fleet: Fleet, stack: Stack, cells: list[Cell]) -> list[str]:
    """Mark the 5xx answers that are the middleware's; a stack error if that cannot be told.

    A 5xx is the middleware's if its body says so (our problem+json), or if
    the bare app under the same server answers the same request below 500:
    the differential, same server and target, with and without the
    middleware. A 5xx the bare app gives too is the framework's, not counted.
    The bare server only starts when there is a 5xx to judge.
    """
    suspects = [c for c in cells if c.status_code is not None and c.status_code >= 500]
    if not suspects:
        return []
    try:
        bare = fleet.get(stack, wrapped=False)
    except AssertionError as exc:
        return [f"the bare app, to judge {len(suspects)} 5xx answers, did not start: {exc}"]
    by_name = {v.name: v for v in VARIANTS}
    for cell in suspects:
        if cell.middleware_answer:
            cell.problems.append("5xx answered by the middleware")
            continue
        again = _send(bare, "bare", by_name[cell.variant], cell.target)
        if again.status_code is None or again.status_code < 500:
            cell.problems.append(f"5xx caused by the middleware (bare app: {again.status})")
    return []


def _run_stack(fleet: Fleet, stack: Stack, emu: Emulator) -> StackResult:
    result = StackResult(stack)
    try:
        server = fleet.get(stack)
    except AssertionError as exc:
        result.errors.append(str(exc))
        return result
    customer = new_customer(emu, limit_micros=100_000_000)  # 100 USD: never the limit
    try:
        cookie = _signed_in_cookie(server, emu, customer)
    except Exception as exc:  # any way sign-in breaks is this stack's error, reported below
        result.errors.append(f"sign-in failed: {type(exc).__name__}: {exc}")
        return result
    result.errors += _controls(server, emu, customer, cookie)
    result.cells += _anonymous_pass(server, VARIANTS)
    result.cells += _signed_in_pass(server, emu, customer, cookie)
    result.errors += _judge_5xx(fleet, stack, result.cells)
    return result


# -- reports ----------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _failure_row(c: Cell) -> tuple[str, ...]:
    ran = ", ".join(map(str, c.ran)) or "-"
    rows = str(c.new_rows) if c.kind == "signed" else "-"
    return (c.stack, c.kind, c.variant, c.target, c.status, ran, rows, "; ".join(c.problems))


def _failure_table(cells: list[Cell]) -> str:
    head = ("stack", "pass", "method", "target", "status", "handler that ran", "rows", "problem")
    return _table([head, *map(_failure_row, cells)])


def _route_map(name: str, cells: list[Cell]) -> str:
    """Targets down, methods across: ``status handler`` (the handler that ran, if any)."""
    grid: dict[str, dict[str, str]] = {}
    for c in cells:
        grid.setdefault(c.target, {})[c.variant] = (
            f"{c.status} {'+'.join(r.handler for r in c.ran)}".strip()
        )
    rows = [("target", *(v.name for v in VARIANTS))]
    rows += [(t, *(grid[t].get(v.name, "") for v in VARIANTS)) for t in grid]
    return f"== {name}\n{_table(rows)}"


def _print_route_maps(fleet: Fleet, results: list[StackResult]) -> None:
    fleet.start([r.stack for r in results], wrapped=False)
    for result in results:
        try:
            bare = fleet.get(result.stack, wrapped=False)
        except AssertionError as exc:
            print(f"== {result.stack.name} (bare): did not start: {exc}")
            continue
        print(_route_map(f"{result.stack.name} (bare app)", _anonymous_pass(bare, VARIANTS)))
        anonymous = [c for c in result.cells if c.kind == "anon"]
        print(_route_map(f"{result.stack.name} (wrapped, anonymous)", anonymous))


# -- the test ---------------------------------------------------------------------------------
# The fixtures live here rather than in a conftest.py: tests/field is shared
# with other field tests, and these are this module's alone.


@pytest.fixture(scope="module")
def field_emulator() -> Iterator[Emulator]:
    """A real Small Transfers emulator on 127.0.0.1 for this module's servers."""
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def fleet(field_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The module's servers, pointed at ``field_emulator``; every one stopped at the end,
    whatever the test did (servers start inside the test, after this fixture is set up)."""
    servers = Fleet(emulator_options(field_emulator), tmp_path_factory.mktemp("field"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.mark.slow
def test_priced_means_priced_on_every_stack(fleet: Fleet, field_emulator: Emulator) -> None:
    started = time.monotonic()
    chosen = os.environ.get("FIELD_STACKS")
    stacks = [s for s in STACKS if not chosen or s.name in chosen.split(",")]
    assert stacks, f"FIELD_STACKS={chosen!r} names none of {[s.name for s in STACKS]}"
    fleet.start(stacks)  # all at once: their imports overlap
    results = [_run_stack(fleet, stack, field_emulator) for stack in stacks]
    if os.environ.get("FIELD_ROUTE_MAP") == "1":
        _print_route_maps(fleet, results)

    cells = [c for r in results for c in r.cells]
    anonymous = [c for c in cells if c.kind == "anon"]
    failing = [c for c in cells if c.problems]
    holes = [c for c in failing if c.kind == "anon" and c.priced_runs]
    errors = [f"{r.stack.name}: {e}" for r in results for e in r.errors]
    summary = (
        f"MATRIX priced-path: {len(stacks)} stacks x {len(TARGETS)} targets x "
        f"{len(VARIANTS)} method variants = {len(anonymous)} cells "
        f"(+ {len(cells) - len(anonymous)} signed-in); holes: {len(holes)}; "
        f"failing cells: {len(failing)}; stack errors: {len(errors)}; "
        f"{time.monotonic() - started:.1f}s"
    )
    print(summary)
    if failing or errors:
        report = [summary]
        if errors:
            report += ["", "stack errors:", *errors]
        if failing:
            report += ["", _failure_table(failing)]
        # Every failing cell, not the first: the table is the point of the test.
        pytest.fail("\n".join(report), pytrace=False)
