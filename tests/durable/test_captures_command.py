"""``python -m st_middleware captures``: the outbox as operators see it, and ``--retry``.

The entries are written by a real middleware in a real server (gunicorn +
WSGI on a SQLite file, uvicorn + ASGI on a real Redis), authorize-capture:
one capture refused for good (the emulator answers ``charge_voided``: failed)
and one that keeps failing transiently (``server_error``: pending, retried
with backoff). The listing is read back through the real command line; the
retries go through ``main()`` in this process, so that the seconds a new
interpreter takes to start do not blur the timing they assert.

The fast tests at the end build entries by hand: a capture in flight, a
hostile path, a payload that is not a capture record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from durable_support import (
    CAPTURES,
    ROOT,
    CaptureCalls,
    Served,
    captured,
    get,
    signed_in_cookie,
    wait_for,
)

from st_middleware.__main__ import main
from st_middleware._captures import CaptureRecord
from st_middleware._operators import CaptureView, _duration, listing_lines, run_captures
from st_middleware._store import CaptureEntry, SqliteStore, Store, open_store
from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import new_customer

OPTIONS: dict[str, Any] = {"charge_mode": "authorize-capture", "timeout": 2.0}
FAILED_AMOUNT, WAITING_AMOUNT = 1200, 2500


def captures_cli(*args: str, store_env: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m st_middleware captures ARGS`` in a new interpreter."""
    env = {key: value for key, value in os.environ.items() if key != "SMALL_TRANSFERS_STORE"}
    if store_env is not None:
        env["SMALL_TRANSFERS_STORE"] = store_env
    return subprocess.run(
        [sys.executable, "-m", "st_middleware", "captures", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Outbox:
    """A real server that left one failed and one pending capture in its store."""

    url: str
    store: Store
    served: Served
    customer: Customer
    calls: CaptureCalls
    failed: CaptureView
    waiting: CaptureView

    def view(self, charge_id: str) -> CaptureView | None:
        views = [CaptureView.of(entry) for entry in self.store.captures()]
        return next((view for view in views if view.charge_id == charge_id), None)

    def sealed_tokens(self) -> list[str]:
        return [
            CaptureRecord.from_payload(entry.payload).sealed_token
            for entry in self.store.captures()
        ]


@pytest.fixture(params=["sqlite", "redis"])
def outbox(request: pytest.FixtureRequest, emulator: Emulator, tmp_path: Path) -> Iterator[Outbox]:
    if request.param == "sqlite":
        url, kind = f"sqlite:///{tmp_path}/st.db", "gunicorn"
    else:
        url, kind = request.getfixturevalue("redis_server").url, "uvicorn"
    servers = request.getfixturevalue("servers")  # after Redis: the servers stop first
    store = open_store(url).sync
    calls = CaptureCalls(emulator)
    customer = new_customer(emulator)
    try:
        served = servers.start(kind, url, **OPTIONS)
        cookie = signed_in_cookie(served, emulator, customer)
        box = Outbox(url, store, served, customer, calls, None, None)  # type: ignore[arg-type]

        def state_of(charge_id: str, state: str) -> CaptureView | None:
            view = box.view(charge_id)
            return view if view is not None and view.state == state and view.attempts else None

        emulator.set_faults(error="charge_voided", path=CAPTURES, count=1)
        failed_id = get(served, "/paid", cookie, amount=FAILED_AMOUNT).json()["charge"]
        # The capture follows the answer: wait for it before the next plan replaces this one.
        box.failed = wait_for(lambda: state_of(failed_id, "failed"), 10, "a failed capture")
        emulator.set_faults(error="server_error", path=CAPTURES)
        waiting_id = get(served, "/paid", cookie, amount=WAITING_AMOUNT).json()["charge"]
        box.waiting = wait_for(lambda: state_of(waiting_id, "pending"), 10, "a waiting capture")
        yield box
    finally:
        store.close()


@pytest.mark.slow
def test_the_listing_shows_pending_and_failed_captures_and_never_a_token(
    outbox: Outbox,
) -> None:
    failed, waiting = outbox.failed, outbox.waiting
    shown = outbox.url

    text = captures_cli(store_env=outbox.url)  # the store from SMALL_TRANSFERS_STORE
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["STATE", "ID", "AMOUNT"]
    (pending_line,) = [line for line in lines if waiting.id in line]
    assert pending_line.startswith("pending ")
    for part in ("2500 micros (0.0025 USD)", outbox.customer.id, "GET /paid", "server_error"):
        assert part in pending_line
    assert any(word in pending_line for word in ("due now", " in ", "in flight"))
    (failed_line,) = [line for line in lines if failed.id in line]
    assert failed_line.startswith("failed ")
    for part in ("1200 micros (0.0012 USD)", "never (failed)", "charge_voided", "GET /paid"):
        assert part in failed_line
    assert f"2 captures in {shown}: 1 pending, 1 failed" in lines

    machine = captures_cli("--json", "--store", outbox.url)
    assert machine.returncode == 0
    listing = json.loads(machine.stdout)
    assert (listing["store"], listing["pending"], listing["failed"]) == (shown, 1, 1)
    by_charge = {item["charge_id"]: item for item in listing["captures"]}
    assert by_charge[waiting.charge_id]["amount_micros"] == WAITING_AMOUNT
    assert by_charge[waiting.charge_id]["amount"] == "0.0025 USD"
    assert by_charge[waiting.charge_id]["due_at"] is not None
    assert by_charge[waiting.charge_id]["attempts"] >= 1
    assert by_charge[failed.charge_id]["state"] == "failed"
    assert by_charge[failed.charge_id]["due_at"] is None
    assert "charge_voided" in by_charge[failed.charge_id]["last_error"]
    assert by_charge[failed.charge_id]["customer_id"] == outbox.customer.id
    assert {item["path"] for item in listing["captures"]} == {"/paid"}

    secrets = [*outbox.calls.tokens, *outbox.sealed_tokens()]
    assert len(secrets) == 3  # the customer's access token, sealed in each of two records
    for output in (text.stdout, machine.stdout):
        assert "sealed_token" not in output
        assert "gAAAA" not in output  # what every sealed value starts with
        for secret in secrets:
            assert secret not in output


@pytest.mark.slow
def test_retry_makes_a_capture_due_now_and_a_running_worker_captures_it(
    outbox: Outbox, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting_id = outbox.waiting.charge_id
    assert waiting_id is not None

    # Let the backoff grow until the next attempt is a few seconds away, so
    # that a capture before then is the retry's doing and not the backoff's.
    def far_enough() -> CaptureView | None:
        view = outbox.view(waiting_id)
        if view is None or view.in_flight(time.time()):
            return None
        return view if view.due_at - time.time() >= 2.5 else None

    due_at = wait_for(far_enough, 40, "the backoff to reach 2.5 s").due_at
    emulator.clear_faults()
    asked = time.time()
    assert main(["captures", "--store", outbox.url, "--retry", waiting_id]) == 0
    said = capsys.readouterr().out
    assert "due now" in said
    assert "capture worker" in said
    wait_for(lambda: captured(emulator, waiting_id), 10, "the retried capture")
    took = time.time() - asked
    assert time.time() < due_at, "captured by the backoff, not by the retry"
    with capsys.disabled():
        print(f"\nFIGURE captures --retry (pending): captured {took:.2f} s after the command")

    # A failed capture is never retried by the workers; --retry puts it back.
    # (The refusal was injected: the authorization is still there to capture.)
    failed = outbox.failed
    assert main(["captures", "--store", outbox.url, "--retry", failed.id]) == 0
    assert "was failed; put back as pending" in capsys.readouterr().out
    assert failed.charge_id is not None
    row = wait_for(lambda: captured(emulator, failed.charge_id or ""), 10, "the failed one")
    assert row.captured_micros == FAILED_AMOUNT
    wait_for(lambda: outbox.store.captures() == [], 10, "an empty outbox")
    for charge_id in (waiting_id, failed.charge_id):
        assert outbox.calls.of(charge_id).get("captured") == 1

    assert main(["captures", "--store", outbox.url]) == 0
    assert capsys.readouterr().out.strip() == f"no pending or failed captures in {outbox.url}"
    assert main(["captures", "--store", outbox.url, "--retry", waiting_id]) == 1
    assert "no pending or failed capture is named" in capsys.readouterr().err


# -- fast: entries made by hand ------------------------------------------------------------


def _entry(
    key: str, *, path: str = "/paid", leased_until: float = 0.0, payload: bytes | None = None
) -> CaptureEntry:
    record = CaptureRecord(
        charge_id=f"ch_{key}",
        amount_micros=3000,
        authorized_micros=3000,
        customer_id="cus_1",
        method="GET",
        path=path,
        idempotency_key=key,
        sealed_token="gAAAAA-not-a-real-token",
    )
    now = time.time()
    return CaptureEntry(
        id=f"{key}:capture",
        payload=record.payload() if payload is None else payload,
        due_at=now + 30,
        attempts=2,
        created_at=now - 125,
        last_error="server_error: Small Transfers answered 500",
        state="pending",
        leased_until=leased_until,
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, SqliteStore]]:
    store = SqliteStore(f"{tmp_path}/st.db")
    try:
        yield f"sqlite:///{tmp_path}/st.db", store
    finally:
        store.close()


def test_a_capture_in_flight_is_left_alone(sqlite_store: tuple[str, SqliteStore]) -> None:
    url, store = sqlite_store
    store.enqueue(_entry("k1", leased_until=time.time() + 60), 3600)
    out: list[str] = []
    status = run_captures(
        store_url=url, retry="ch_k1", as_json=False, out=out.append, err=out.append
    )
    assert status == 1
    assert "being tried right now" in out[0]
    (entry,) = store.captures()
    assert entry.leased_until > time.time()  # unchanged
    assert entry.due_at > time.time()


def test_hostile_text_is_escaped_and_a_foreign_payload_is_still_listed(
    sqlite_store: tuple[str, SqliteStore],
) -> None:
    url, store = sqlite_store
    store.enqueue(_entry("k1", path="/paid\x1b[2J\nFAKE LINE"), 3600)
    store.enqueue(_entry("k2", payload=b"not a capture record"), 3600)
    out: list[str] = []
    assert run_captures(store_url=url, retry=None, as_json=False, out=out.append) == 0
    assert len(out) == 4  # header, two captures, summary: nothing broke a line
    assert not any("\x1b" in line for line in out)
    assert "/paid\\x1b[2J\\nFAKE LINE" in out[1]
    assert "? (unreadable payload)" in out[2]
    assert "gAAAAA" not in "\n".join(out)
    assert "2m05s" in out[1]  # its age


def test_durations_read_at_a_glance() -> None:
    assert [_duration(s) for s in (0.2, 12, 125, 3 * 3600 + 240, 2 * 86400 + 3 * 3600)] == [
        "1s",
        "12s",
        "2m05s",
        "3h04m",
        "2d03h",
    ]
    assert listing_lines([], 0.0, "sqlite:////x.db") == [
        "no pending or failed captures in sqlite:////x.db"
    ]


def test_stores_the_command_cannot_read_are_refused(tmp_path: Path) -> None:
    out: list[str] = []
    for url in ("memory://", f"sqlite:///{tmp_path}/missing.db", "ftp://x"):
        assert run_captures(store_url=url, retry=None, as_json=False, err=out.append) == 2
    assert not (tmp_path / "missing.db").exists()  # a typo creates no empty store
    assert "memory://" in out[0]
    assert "no SQLite store at" in out[1]
