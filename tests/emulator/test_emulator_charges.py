"""Money: transactions, authorize-then-capture, validation, limits, revocation, blocking."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_support import assert_problem

from st_middleware.emulator import Customer, Emulator


def authorize(client: httpx.Client, keys: dict[str, str], amount: int) -> str:
    response = client.post(
        "/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": amount}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def capture(
    client: httpx.Client, keys: dict[str, str], charge_id: str, amount: Any
) -> httpx.Response:
    body = {**keys, "amountMicros": amount}
    return client.post(f"/api/v1/charges/{charge_id}/capture", json=body)


# -- transactions ---------------------------------------------------------------------


def test_transaction_is_captured_at_once(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/transactions",
        json={**keys, "amountMicros": 3000},
        headers={"Idempotency-Key": "req-1"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["amountMicros"] == 3000
    [row] = emu.ledger(customer.id)
    assert (row.id, row.kind, row.state) == (body["id"], "transaction", "captured")
    assert (row.authorized_micros, row.captured_micros) == (3000, 3000)
    assert row.merchant == emu.publishable_key
    assert row.idempotency_key == "req-1"


def test_idempotency_key_is_recorded_not_deduplicated(
    client: httpx.Client, emu: Emulator, keys: dict[str, str]
) -> None:
    for _ in range(2):
        response = client.post(
            "/api/v1/transactions",
            json={**keys, "amountMicros": 10},
            headers={"Idempotency-Key": "same"},
        )
        assert response.status_code == 201
    assert [r.idempotency_key for r in emu.ledger()] == ["same", "same"]


# -- authorize, then capture ----------------------------------------------------------


def test_charge_then_partial_capture(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 50_000}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["amountMicros"] == 50_000
    assert body["status"] == "authorized"
    assert emu.ledger()[0].state == "authorized"
    assert emu.spent(customer.id) == 50_000

    captured = capture(client, keys, body["id"], 20_000)
    assert captured.status_code == 200
    assert captured.json() == {
        "id": body["id"],
        "capturedMicros": 20_000,
        "authorizedMicros": 50_000,
        "currency": "usd",
        "status": "captured",
    }
    [row] = emu.ledger()
    assert (row.state, row.authorized_micros, row.captured_micros) == ("captured", 50_000, 20_000)
    # Only what was captured counts once the charge is settled.
    assert emu.spent(customer.id) == 20_000


def test_capture_zero_and_full(client: httpx.Client, emu: Emulator, keys: dict[str, str]) -> None:
    nothing = authorize(client, keys, 1000)
    assert capture(client, keys, nothing, 0).json()["capturedMicros"] == 0
    full = authorize(client, keys, 1000)
    assert capture(client, keys, full, 1000).json()["capturedMicros"] == 1000
    assert [r.captured_micros for r in emu.ledger()] == [0, 1000]


def test_capture_errors(client: httpx.Client, emu: Emulator, keys: dict[str, str]) -> None:
    charge_id = authorize(client, keys, 1000)
    assert_problem(capture(client, keys, charge_id, 1001), 409, "charge_amount_exceeds_authorized")
    assert_problem(capture(client, keys, charge_id, -1), 422, "validation_error")
    assert_problem(capture(client, keys, charge_id, 1.5), 422, "validation_error")
    assert capture(client, keys, charge_id, 500).status_code == 200
    assert_problem(capture(client, keys, charge_id, 500), 409, "charge_already_captured")
    assert_problem(capture(client, keys, "ch_unknown", 1), 404, "charge_not_found")


def test_a_transaction_cannot_be_captured(client: httpx.Client, keys: dict[str, str]) -> None:
    tx = client.post("/api/v1/transactions", json={**keys, "amountMicros": 5}).json()["id"]
    assert_problem(capture(client, keys, tx, 1), 404, "charge_not_found")


def test_another_merchants_charge_is_not_found(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    charge_id = authorize(client, keys, 1000)
    emu.add_merchant("pk_test_other", "sk_test_other")
    other = {
        "publishableKey": "pk_test_other",
        "secretKey": "sk_test_other",
        "accessToken": emu.issue_token(customer.id, "pk_test_other"),
    }
    assert_problem(capture(client, other, charge_id, 1), 404, "charge_not_found")


def test_authorization_lapses() -> None:
    with Emulator(port=0, authorization_ttl=0.0) as emu, httpx.Client(base_url=emu.url) as client:
        customer = emu.create_customer()
        keys = {
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "accessToken": emu.issue_token(customer.id),
        }
        charge_id = authorize(client, keys, 1000)
        assert_problem(capture(client, keys, charge_id, 1000), 410, "charge_expired")
        [row] = emu.ledger()
        assert (row.state, row.captured_micros) == ("lapsed", 0)
        # A lapsed authorization no longer holds the customer's funds.
        assert emu.spent(customer.id) == 0


def test_currency_other_than_usd_is_rejected(client: httpx.Client, keys: dict[str, str]) -> None:
    response = client.post("/api/v1/charges", json={**keys, "currency": "eur", "amountMicros": 1})
    assert_problem(response, 422, "validation_error")


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/transactions", "/api/v1/charges"])
@pytest.mark.parametrize("amount", [0, -5, 1.0, 2.5, "100", True, None, [1], 2**53])
def test_bad_amounts_are_validation_errors(
    client: httpx.Client, keys: dict[str, str], path: str, amount: Any
) -> None:
    response = client.post(path, json={**keys, "currency": "usd", "amountMicros": amount})
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("missing", ["publishableKey", "secretKey", "accessToken", "amountMicros"])
def test_missing_fields_are_invalid_requests(
    client: httpx.Client, keys: dict[str, str], missing: str
) -> None:
    body = {**keys, "amountMicros": 10}
    del body[missing]
    assert_problem(client.post("/api/v1/transactions", json=body), 400, "invalid_request")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"amountMicros": NaN}', "application/json"),
        (b"", "application/json"),
        (b"amountMicros=10", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_invalid_requests(
    client: httpx.Client, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/api/v1/transactions", content=content, headers={"Content-Type": content_type}
    )
    assert_problem(response, 400, "invalid_request")


def test_unknown_endpoint_and_wrong_method(client: httpx.Client) -> None:
    assert_problem(client.post("/api/v1/refunds", json={}), 404, "not_found")
    assert_problem(client.get("/api/v1/transactions"), 405, "method_not_allowed")


# -- who may charge -------------------------------------------------------------------


def test_wrong_merchant_keys_are_invalid_credentials(
    client: httpx.Client, keys: dict[str, str]
) -> None:
    for bad in ({"secretKey": "sk_test_wrong"}, {"publishableKey": "pk_test_unknown"}):
        response = client.post("/api/v1/transactions", json={**keys, **bad, "amountMicros": 1})
        assert_problem(response, 401, "invalid_credentials")


def test_unknown_or_foreign_token_is_invalid_access_token(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/transactions", json={**keys, "accessToken": "st_at_nope", "amountMicros": 1}
    )
    assert_problem(response, 401, "invalid_access_token")
    # A token issued to another merchant is not this merchant's.
    emu.add_merchant("pk_test_other", "sk_test_other")
    foreign = emu.issue_token(customer.id, "pk_test_other")
    response = client.post(
        "/api/v1/transactions", json={**keys, "accessToken": foreign, "amountMicros": 1}
    )
    assert_problem(response, 401, "invalid_access_token")


def test_revoked_grant_is_authorization_revoked(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    charge_id = authorize(client, keys, 100)
    emu.revoke(customer.id, merchant=emu.publishable_key)
    for response in (
        client.post("/api/v1/transactions", json={**keys, "amountMicros": 1}),
        client.post("/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 1}),
        capture(client, keys, charge_id, 1),
    ):
        assert_problem(response, 403, "authorization_revoked")


def test_inactive_merchant(client: httpx.Client, emu: Emulator, keys: dict[str, str]) -> None:
    emu.add_merchant(emu.publishable_key, emu.secret_key, active=False)
    response = client.post("/api/v1/transactions", json={**keys, "amountMicros": 1})
    assert_problem(response, 403, "merchant_inactive")


def test_blocked_customer(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    emu.update_customer(customer.id, blocked=True)
    response = client.post("/api/v1/transactions", json={**keys, "amountMicros": 1})
    assert_problem(response, 402, "charges_blocked")
    assert emu.ledger() == []


def test_spending_limit(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    # 1 USD limit: 0.6 captured + 0.3 held by an authorization leaves 0.1.
    assert (
        client.post("/api/v1/transactions", json={**keys, "amountMicros": 600_000}).status_code
        == 201
    )
    held = authorize(client, keys, 300_000)
    response = client.post("/api/v1/transactions", json={**keys, "amountMicros": 100_001})
    assert_problem(response, 402, "charge_limit_exceeded")
    response = client.post(
        "/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 100_001}
    )
    assert_problem(response, 402, "charge_limit_exceeded")
    # Capturing less releases the rest of the authorization.
    assert capture(client, keys, held, 100_000).status_code == 200
    assert (
        client.post("/api/v1/transactions", json={**keys, "amountMicros": 300_000}).status_code
        == 201
    )
    assert emu.spent(customer.id) == 1_000_000
    assert len(emu.ledger()) == 3
