"""Fault injection: every kind, its reach (count, path), and the admin endpoint."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from emulator_support import assert_problem

from st_middleware.emulator import Emulator, FaultPlan


def pay(client: httpx.Client, keys: dict[str, str], amount: int = 10) -> httpx.Response:
    return client.post("/api/v1/transactions", json={**keys, "amountMicros": amount})


def test_latency_delays_the_answer(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    emu.set_faults(latency=30.0, count=1)
    # A client that gives up long before the injected delay times out; no timing is measured.
    with pytest.raises(httpx.ReadTimeout):
        client.post("/api/v1/transactions", json={**keys, "amountMicros": 1}, timeout=0.3)
    assert pay(client, keys).status_code == 201


@pytest.mark.parametrize(
    ("code", "status"),
    [("maintenance_mode", 503), ("server_error", 500), ("charge_limit_exceeded", 402)],
)
def test_error_fault_answers_the_code_without_touching_the_ledger(
    client: httpx.Client, emu: Emulator, keys: dict[str, str], code: str, status: int
) -> None:
    emu.set_faults(error=code, count=1)
    assert_problem(pay(client, keys), status, code)
    assert emu.ledger() == []
    assert pay(client, keys).status_code == 201  # the fault was used up


def test_drop_before_never_reaches_the_ledger(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    emu.set_faults(drop="before", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        pay(client, keys)
    assert emu.ledger() == []


def test_drop_after_charges_but_never_answers(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    emu.set_faults(drop="after", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        pay(client, keys, 77)
    [row] = emu.ledger()
    assert row.captured_micros == 77


def test_malformed_body(client: httpx.Client, emu: Emulator, keys: dict[str, str]) -> None:
    emu.set_faults(malformed=True, count=1)
    response = pay(client, keys)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(emu.ledger()) == 1  # the answer broke on its way back, the charge happened


def test_huge_body(client: httpx.Client, emu: Emulator, keys: dict[str, str]) -> None:
    emu.set_faults(huge_body=True, count=1)
    response = pay(client, keys)
    assert response.status_code == 200
    assert len(response.content) >= 10 * 1024 * 1024
    assert int(response.headers["content-length"]) == len(response.content)


def test_endless_body_trickles_until_the_client_leaves() -> None:
    emu = Emulator(port=0).start()
    try:
        keys = {
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "accessToken": emu.issue_token(emu.create_customer().id),
        }
        emu.set_faults(endless_body=True)
        with httpx.Client(base_url=emu.url) as client:
            for _ in range(2):  # one client hanging up, then another open at stop()
                with client.stream(
                    "POST", "/api/v1/transactions", json={**keys, "amountMicros": 1}
                ) as response:
                    assert response.status_code == 200
                    received = b""
                    for chunk in response.iter_bytes():
                        received += chunk
                        if len(received) >= 16:
                            break
                    assert received.startswith(b'{"padding":"x')
            # A third stream is left open: stop() must still return.
            stream = client.stream("POST", "/api/v1/transactions", json={**keys, "amountMicros": 1})
            response = stream.__enter__()
            assert response.status_code == 200
            stopper = threading.Thread(target=emu.stop)
            stopper.start()
            stopper.join(timeout=20)
            assert not stopper.is_alive(), "stop() hung on an endless body"
            with pytest.raises(httpx.HTTPError):
                response.read()
            stream.__exit__(None, None, None)
    finally:
        emu.stop()


def test_faults_follow_count_and_path(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    emu.set_faults(error="server_error", path="/api/v1/charges", count=2)
    assert pay(client, keys).status_code == 201  # another path: untouched, not counted
    for _ in range(2):
        response = client.post(
            "/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 1}
        )
        assert_problem(response, 500, "server_error")
    ok = client.post("/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 1})
    assert ok.status_code == 201


def test_faults_without_count_last_until_cleared(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    emu.set_faults(error="maintenance_mode")
    for _ in range(3):
        assert pay(client, keys).status_code == 503
    assert client.get("/_emulator/health").status_code == 200  # only /api/v1 is affected
    emu.clear_faults()
    assert pay(client, keys).status_code == 201


def test_faults_through_the_admin_endpoint(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    response = client.post("/_emulator/faults", json={"error": "maintenance_mode", "count": 2})
    assert response.status_code == 200
    assert response.json()["faults"]["remaining"] == 2
    assert_problem(pay(client, keys), 503, "maintenance_mode")
    assert client.get("/_emulator/faults").json()["faults"]["remaining"] == 1
    assert client.delete("/_emulator/faults").json() == {"faults": None}
    assert pay(client, keys).status_code == 201


@pytest.mark.parametrize(
    "settings",
    [
        {"error": "server_error", "drop": "before"},
        {"malformed": True, "huge_body": True},
        {"error": "no_such_code"},
        {"latency": -1},
        {"count": 0, "error": "server_error"},
        {"path": "/customer", "error": "server_error"},
        {},
    ],
)
def test_impossible_plans_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- each case has its own message
        FaultPlan.from_json(settings)
