"""Helpers shared by the emulator's tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

import httpx

from st_middleware.emulator import Emulator

REDIRECT_URI = "http://127.0.0.1:8000/smalltransfers/callback"


def exchange(client: httpx.Client, emu: Emulator, code: str, **overrides: Any) -> httpx.Response:
    """POST /api/v1/oauth/tokens as a middleware would."""
    body = {
        "grantType": "authorization_code",
        "publishableKey": emu.publishable_key,
        "secretKey": emu.secret_key,
        "authorizationCode": code,
        **overrides,
    }
    return client.post("/api/v1/oauth/tokens", json=body)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    """An RFC 9457 problem with the API's code, plus `message` for seed-era clients."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"] == body["message"]
