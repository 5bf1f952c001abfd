"""Faults between the middleware and Small Transfers, on both adapters.

Every fault of the emulator (``emu.set_faults``) is injected into exactly one
charge (``count=1``) with ``timeout=0.5``. For each one the test checks:

- the visitor's answer is the contract's (``503`` + ``Retry-After`` for an
  outage, ``502`` for a protocol or configuration error, ``402``/``401`` as
  Small Transfers said), within a generous bound, never hanging;
- the app ran only when the charge was made (or, with ``fail_open=True``,
  uncharged on outages only);
- the charge request left the middleware exactly once (a counting transport
  sees every attempt, including those the emulator drops), and the ledger
  holds at most one row for its idempotency key: a request that may have
  reached Small Transfers is never re-sent. Only a failure to *connect*
  (nothing was sent) is retried, once.

Decision recorded here (see SECURITY.md): a ``2xx`` reply to ``POST
/transactions`` whose body is unreadable (not JSON, or cut at the 64 KiB cap)
counts as *charged*: the status is the API's documented success signal and
the body only carries an optional id. The app runs once, for the one charge.
In authorize-capture mode the same reply is a ``502``: without the id there is
nothing to capture, so the authorization lapses and the app does not run.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._support import (
    CALLBACK,
    FIGURES,
    SECRET,
    SIGN_OUT,
    Driver,
    new_customer,
    sign_in,
    start_sign_in,
    wait_for,
)

TIMEOUT = 0.5
#: "Finishes within ~timeout, not forever": a generous bound, not a timing assertion.
BOUND = 6.0
LATE = 1.0  # a latency beyond TIMEOUT


@dataclass(frozen=True)
class Fault:
    name: str
    plan: dict[str, Any]
    status: int
    #: Whether Small Transfers ends up with the charge (one ledger row).
    charged: bool
    outage: bool = False
    clears_session: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def app_runs(self) -> bool:
        return self.status == 200


FAULTS = [
    Fault("latency_beyond_timeout", {"latency": LATE}, 503, charged=True, outage=True),
    Fault("latency_within_timeout", {"latency": 0.05}, 200, charged=True),
    Fault("drop_before_processing", {"drop": "before"}, 503, charged=False, outage=True),
    Fault("drop_after_processing", {"drop": "after"}, 503, charged=True, outage=True),
    Fault("server_error", {"error": "server_error"}, 503, charged=False, outage=True),
    Fault("maintenance_mode", {"error": "maintenance_mode"}, 503, charged=False, outage=True),
    Fault("malformed_2xx_body", {"malformed": True}, 200, charged=True),
    Fault("huge_2xx_body", {"huge_body": True}, 200, charged=True),
    Fault("endless_2xx_body", {"endless_body": True}, 503, charged=True, outage=True),
    Fault("invalid_credentials", {"error": "invalid_credentials"}, 502, charged=False),
    Fault("unauthenticated", {"error": "unauthenticated"}, 502, charged=False),
    Fault("invalid_request", {"error": "invalid_request"}, 502, charged=False),
    Fault("validation_error", {"error": "validation_error"}, 502, charged=False),
    Fault("merchant_inactive", {"error": "merchant_inactive"}, 502, charged=False),
    Fault("charge_limit_exceeded", {"error": "charge_limit_exceeded"}, 402, charged=False),
    Fault("charges_blocked", {"error": "charges_blocked"}, 402, charged=False),
    Fault(
        "invalid_access_token",
        {"error": "invalid_access_token"},
        401,
        charged=False,
        clears_session=True,
    ),
    Fault(
        "authorization_revoked",
        {"error": "authorization_revoked"},
        401,
        charged=False,
        clears_session=True,
    ),
]


_KINDS: set[str] = set()
_SLOWEST = [0.0]


def _tally(fault: str, *, twice: int, unpaid: int, seconds: float) -> None:
    """Counted once every assertion of the case passed (a failure leaves it out)."""
    FIGURES.add(
        "faults",
        {
            "faults injected": 1,
            "answered per contract": 1,
            "charges sent twice": twice,
            "app runs unpaid": unpaid,
        },
    )
    _KINDS.add(fault)
    _SLOWEST[0] = max(_SLOWEST[0], seconds)


@pytest.fixture(scope="module", autouse=True)
def _fault_note() -> Any:
    yield
    FIGURES.note(
        "faults",
        f"{len(_KINDS)} fault kinds (transaction, authorization, capture, connect); "
        f"slowest answer {_SLOWEST[0]:.2f} s with timeout {TIMEOUT} s (bound {BOUND} s)",
    )


def _new_rows(emu: Any, customer: Any) -> list[Any]:
    return emu.ledger(customer.id)


def _check_error_answer(answer: Any, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.header("Content-Type") == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    assert "Traceback" not in answer.body.decode()
    if status == 503:
        assert (answer.header("Retry-After") or "").isdigit()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
def test_transaction_fault(make: Any, emu: Any, fault: Fault, fail_open: bool) -> None:
    driver: Driver = make(timeout=TIMEOUT, fail_open=fail_open)
    customer = new_customer(emu)
    session = sign_in(driver, emu, customer)
    driver.sends.clear()

    emu.set_faults(count=1, **fault.plan)
    answer = driver.get("/paid", cookie=session.pair)
    emu.clear_faults()
    assert answer.elapsed < BOUND, f"{fault.name}: {answer.elapsed:.1f} s"

    # What left the middleware: one charge request, never a second.
    sent = driver.sends.to("/transactions")
    assert len(sent) == 1, f"{fault.name}: the charge was sent {len(sent)} times"
    key = sent[0].key
    assert key is not None

    # What Small Transfers ended up with (a late latency is processed after the wait).
    if fault.charged:
        assert wait_for(lambda: len(_new_rows(emu, customer)) >= 1, 10)
    rows = _new_rows(emu, customer)
    assert len(rows) == (1 if fault.charged else 0), rows
    assert all(row.idempotency_key == key for row in rows)

    # The visitor's answer and whether the app ran.
    runs = driver.log.snapshot()
    fails_open = fail_open and fault.outage
    if fails_open:
        assert answer.status == 200
        assert answer.charge_key is None, "fail_open runs the app uncharged"
        assert [r.key for r in runs] == [None]
    elif fault.app_runs:
        assert answer.status == 200
        assert answer.charge_key == key
        assert [(r.key, r.amount) for r in runs] == [(key, 3000)]
    else:
        _check_error_answer(answer, fault.status)
        assert runs == [], f"{fault.name}: the app ran without being paid"
    if fault.clears_session:
        assert answer.session is not None
        assert answer.session.clears
    elif not fails_open and not fault.app_runs:
        assert answer.session is None

    unpaid = sum(1 for r in runs if r.key is None and not fails_open)
    twice = max(0, len(sent) - 1) + max(0, len(rows) - 1)
    _tally(fault.name, twice=twice, unpaid=unpaid, seconds=answer.elapsed)

    # Small Transfers is fine again: the next request is charged normally, once.
    if not fault.clears_session:
        after = driver.get("/paid", cookie=session.pair)
        assert after.status == 200
        assert len(_new_rows(emu, customer)) == len(rows) + 1


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail_closed", "fail_open"])
def test_connect_failure_is_retried_once_and_only_then(
    make: Any, emu: Any, fail_open: bool
) -> None:
    """Nothing listens on the port: the connection was never made, so one retry is safe."""
    gate = make()
    customer = new_customer(emu)
    session = sign_in(gate, emu, customer)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    driver: Driver = make(timeout=TIMEOUT, fail_open=fail_open, base_url=dead)
    answer = driver.get("/paid", cookie=session.pair)
    sent = driver.sends.to("/transactions")
    assert len(sent) == 2, sent
    assert sent[0].key == sent[1].key
    assert answer.elapsed < BOUND
    if fail_open:
        assert answer.status == 200
        assert answer.charge_key is None
    else:
        _check_error_answer(answer, 503)
        assert driver.log.snapshot() == []
    assert emu.ledger(customer.id) == []
    _tally("connect_refused", twice=0, unpaid=0, seconds=answer.elapsed)


# -- authorize-capture ------------------------------------------------------------------------


AUTHORIZE_FAULTS = [
    # name, plan, visitor's answer, the ledger row's final state (None: no row)
    ("drop_before", {"drop": "before"}, 503, None),
    ("drop_after", {"drop": "after"}, 503, "authorized"),
    ("server_error", {"error": "server_error"}, 503, None),
    ("malformed_2xx_body", {"malformed": True}, 502, "authorized"),
    ("huge_2xx_body", {"huge_body": True}, 502, "authorized"),
    ("endless_2xx_body", {"endless_body": True}, 503, "authorized"),
    ("latency_beyond_timeout", {"latency": LATE}, 503, "authorized"),
    ("charge_limit_exceeded", {"error": "charge_limit_exceeded"}, 402, None),
]


@pytest.mark.parametrize(
    ("name", "plan", "status", "state"), AUTHORIZE_FAULTS, ids=[f[0] for f in AUTHORIZE_FAULTS]
)
def test_authorization_fault(
    make: Any, emu: Any, name: str, plan: dict[str, Any], status: int, state: str | None
) -> None:
    """No id, no capture: a reserved amount that the app did not earn simply lapses."""
    driver: Driver = make(timeout=TIMEOUT, charge_mode="authorize-capture")
    customer = new_customer(emu)
    session = sign_in(driver, emu, customer)
    driver.sends.clear()
    emu.set_faults(count=1, path="/api/v1/charges", **plan)
    answer = driver.get("/paid", cookie=session.pair)
    emu.clear_faults()
    assert answer.elapsed < BOUND
    _check_error_answer(answer, status)
    assert driver.log.snapshot() == []
    sent = driver.sends.snapshot()
    assert [s.path for s in sent] == ["/api/v1/charges"], "re-sent, or captured regardless"
    if state is not None:
        assert wait_for(lambda: len(emu.ledger(customer.id)) == 1, 10)
    rows = emu.ledger(customer.id)
    assert [r.state for r in rows] == ([state] if state else [])
    assert all(r.captured_micros == 0 for r in rows)
    _tally(name, twice=0, unpaid=0, seconds=answer.elapsed)


CAPTURE_FAULTS = [
    # name, plan, how many times the capture is sent in all (retried until confirmed)
    ("drop_before", {"drop": "before"}, 2),  # never arrived: sent again, captured
    ("drop_after", {"drop": "after"}, 2),  # captured, answer lost: the repeat gets 409
    ("server_error", {"error": "server_error"}, 2),
    ("rate_limited_503", {"error": "maintenance_mode"}, 2),
    ("malformed_2xx_body", {"malformed": True}, 1),  # a 2xx is a confirmation
    ("endless_2xx_body", {"endless_body": True}, 2),  # unread 2xx: asked again, 409
    ("latency_beyond_timeout", {"latency": LATE}, 2),
]


@pytest.mark.parametrize(
    ("name", "plan", "sends"), CAPTURE_FAULTS, ids=[f[0] for f in CAPTURE_FAULTS]
)
def test_capture_fault(make: Any, emu: Any, name: str, plan: dict[str, Any], sends: int) -> None:
    """The response is already out when the capture runs: a transient fault delays the
    money, never loses it. The capture is retried until Small Transfers confirms it (a
    repeat of one that went through answers 409), captured exactly once, never sent again
    after the confirmation."""
    driver: Driver = make(timeout=TIMEOUT, charge_mode="authorize-capture")
    customer = new_customer(emu)
    session = sign_in(driver, emu, customer)
    driver.sends.clear()
    # "/api/v1/charges/" matches the capture (…/charges/{id}/capture), not the authorization.
    emu.set_faults(count=1, path="/api/v1/charges/", **plan)
    answer = driver.get("/paid", cookie=session.pair)
    assert answer.status == 200
    assert answer.charge_key is not None
    assert answer.elapsed < BOUND

    def settled() -> bool:
        driver.idle(0.05)
        rows = emu.ledger(customer.id)
        done = len(rows) == 1 and rows[0].state == "captured"
        return done and driver.mw._stores.sync.captures() == []

    assert wait_for(settled, 10), (emu.ledger(customer.id), driver.mw._stores.sync.captures())
    emu.clear_faults()
    driver.idle(1.5)  # a worker round or two more: nothing else may be sent
    row = emu.ledger(customer.id)[0]
    assert row.captured_micros == 3000
    captures = [s for s in driver.sends.snapshot() if s.path.endswith("/capture")]
    assert len(captures) == sends, f"{name}: the capture was sent {len(captures)} times"
    _tally(f"capture_{name}", twice=0, unpaid=0, seconds=answer.elapsed)


# -- log hygiene --------------------------------------------------------------------------------


def test_logs_and_reprs_never_carry_secrets(
    make: Any, emu: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Faults make the middleware talk: none of what it says holds a secret.

    The secret key, the session secret, access tokens, authorization codes and
    cookie values are collected as they go out, then searched for in every log
    record of the ``st_middleware`` logger (message, arguments, traceback) and
    in the reprs merchants may print.
    """
    caplog.set_level(logging.DEBUG)
    driver: Driver = make(timeout=TIMEOUT, on_charge_failed=lambda event: None)
    customer = new_customer(emu)
    cookies = []
    session = sign_in(driver, emu, customer)
    cookies.append(session.value)
    for plan in (
        {"error": "server_error"},
        {"error": "invalid_credentials"},
        {"malformed": True},
        {"drop": "after"},
        {"endless_body": True},
        {"error": "invalid_access_token"},
    ):
        emu.set_faults(count=1, **plan)
        driver.get("/paid", cookie=session.pair)
        emu.clear_faults()
    # Sign-in failures: a reused code, a provider error, a forged state.
    redirect_uri, state, state_cookie = start_sign_in(driver)
    cookies.append(state_cookie.value)
    code = emu.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
    driver.get(CALLBACK, f"code={code}&state={state}", cookie=state_cookie.pair)
    _, state2, cookie2 = start_sign_in(driver)
    driver.get(CALLBACK, f"code={code}&state={state2}", cookie=cookie2.pair)
    driver.get(CALLBACK, f"error=server_error&code={code}", cookie=cookie2.pair)
    emu.revoke(customer.id)
    driver.get("/paid", cookie=session.pair)
    driver.get(SIGN_OUT, cookie=session.pair)

    secrets = {emu.secret_key, SECRET, code, *cookies, *driver.sends.secrets}
    secrets = {s for s in secrets if s and len(s) >= 8}
    assert any(s.startswith("gAAAA") for s in secrets)  # cookies are in the set
    assert len(driver.sends.secrets) >= 3  # secret key, token, code
    records = [r for r in caplog.records if r.name.startswith("st_middleware")]
    assert records, "the faults were expected to be logged"
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    texts += [repr(driver.mw), repr(driver.mw.settings), repr(driver.mw._core)]
    leaks = [(s[:6] + "...", t[:120]) for t in texts for s in secrets if s in t]
    assert leaks == []
    FIGURES.add("faults", {"log records checked for secrets": len(records)})
