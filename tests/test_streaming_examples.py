"""The token-priced streaming examples: tokens stream, the final cost is what is captured."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

import pytest

from st_middleware.emulator import Emulator
from st_middleware.testing import (
    TEST_SESSION_SECRET,
    async_signed_in_client,
    ledger,
    signed_in_client,
)


def load(name: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SMALL_TRANSFERS_PUBLISHABLE_KEY", emu.publishable_key)
    monkeypatch.setenv("SMALL_TRANSFERS_SECRET_KEY", emu.secret_key)
    monkeypatch.setenv("SMALL_TRANSFERS_SESSION_SECRET", TEST_SESSION_SECRET)
    monkeypatch.setenv("SMALL_TRANSFERS_BASE_URL", emu.url)
    return importlib.reload(importlib.import_module(f"examples.streaming_ai.{name}"))


def events(text: str) -> list[tuple[str, Any]]:
    found = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        found.append((lines["event"], json.loads(lines["data"])))
    return found


def check(text: str, emu: Emulator, customer: Any) -> None:
    got = events(text)
    tokens = [data for kind, data in got if kind == "token"]
    kind, cost = got[-1]
    assert kind == "cost"
    assert cost["tokens"] == len(tokens) > 3
    assert cost["cost_micros"] == len(tokens) * 50
    (row,) = ledger(emu, customer)
    assert row.authorized_micros == 20_000
    assert row.captured_micros == cost["cost_micros"]


def test_wsgi_ai_answer_is_billed_per_token(
    st_emulator: Emulator, st_customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("wsgi_app", st_emulator, monkeypatch)
    with signed_in_client(module.app, st_emulator, st_customer) as client:
        response = client.get("/ask", params={"q": "why are micropayments useful"})
    assert response.headers["content-type"] == "text/event-stream"
    check(response.text, st_emulator, st_customer)


@pytest.mark.anyio
async def test_asgi_ai_answer_is_billed_per_token(
    st_emulator: Emulator, st_customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("asgi_app", st_emulator, monkeypatch)
    async with async_signed_in_client(module.app, st_emulator, st_customer) as client:
        response = await client.get("/ask", params={"q": "why are micropayments useful"})
    check(response.text, st_emulator, st_customer)
