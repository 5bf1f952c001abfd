"""The admin API takes JSON only, and nothing from another origin.

A cross-site HTML form (or a no-cors fetch) can post form or text/plain bodies, never
application/json: insisting on JSON keeps every other web page out of `/_emulator/`.
"""

from __future__ import annotations

import json

import httpx
import pytest
from emulator_support import assert_problem

from st_middleware.emulator import Emulator

NEW_SECRET = json.dumps(
    {"publishable_key": "pk_test_emulator", "secret_key": "sk_attacker"}
).encode()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_is_refused(
    client: httpx.Client, emu: Emulator, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/_emulator/merchants", content=NEW_SECRET, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    merchant = emu.store.merchant(emu.publishable_key)
    assert merchant is not None
    assert merchant.secret_key == emu.secret_key
    # An empty text/plain post would otherwise create a customer with the defaults.
    empty = client.post("/_emulator/customers", headers={"Content-Type": "text/plain"})
    assert empty.status_code == 415
    assert emu.customers() == []


def test_json_with_parameters_and_a_bodiless_delete_pass(
    client: httpx.Client, emu: Emulator
) -> None:
    response = client.post(
        "/_emulator/customers",
        content=b'{"email": "json@example.com"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 201
    assert client.delete("/_emulator/faults").json() == {"faults": None}
    assert_problem(
        client.post(
            "/_emulator/faults", content=b"{", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_request",
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_emulator/merchants", {"publishable_key": "pk_x", "secret_key": "sk_x"}),
        ("POST", "/_emulator/faults", {"error": "server_error"}),
        ("DELETE", "/_emulator/faults", None),
        ("GET", "/_emulator/ledger", None),
    ],
)
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_a_request_from_another_origin_is_refused(
    client: httpx.Client,
    emu: Emulator,
    method: str,
    path: str,
    body: dict[str, str] | None,
    origin: str,
) -> None:
    response = client.request(method, path, json=body, headers={"Origin": origin})
    assert_problem(response, 403, "forbidden")
    assert emu.faults.describe() is None
    assert emu.store.merchant("pk_x") is None


def test_the_emulators_own_origin_passes(client: httpx.Client, emu: Emulator) -> None:
    response = client.post(
        "/_emulator/customers", json={"email": "own@example.com"}, headers={"Origin": emu.url}
    )
    assert response.status_code == 201
