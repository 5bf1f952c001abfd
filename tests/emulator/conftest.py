"""Fixtures for the emulator's tests: a running emulator, an HTTP client, a signed-in customer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from emulator_support import REDIRECT_URI, exchange

from st_middleware.emulator import Customer, Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(port=0, admin=True) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=10.0) as http:
        yield http


@pytest.fixture
def customer(emu: Emulator) -> Customer:
    return emu.create_customer(
        first_name="Ada", last_name="Lovelace", email="ada@example.com", limit_micros=1_000_000
    )


@pytest.fixture
def token(client: httpx.Client, emu: Emulator, customer: Customer) -> str:
    """An access token obtained through the real code exchange."""
    response = exchange(client, emu, emu.issue_code(customer.id, REDIRECT_URI))
    assert response.status_code == 200
    return str(response.json()["accessToken"])


@pytest.fixture
def keys(emu: Emulator, token: str) -> dict[str, str]:
    """The three credentials every charge request carries."""
    return {
        "publishableKey": emu.publishable_key,
        "secretKey": emu.secret_key,
        "accessToken": token,
    }
