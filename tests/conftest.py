"""Fixtures shared by the contract tests: one emulator per session, sites per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import SITES, Site, new_customer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def emu() -> Iterator[Any]:
    """A real Small Transfers emulator on 127.0.0.1, for the whole session."""
    from st_middleware.emulator import Emulator

    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_faults_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every contract test starts and ends with the emulator answering normally."""
    mine = request.node.path.parent == Path(__file__).parent
    if not mine or "emu" not in request.fixturenames:
        yield
        return
    emulator = request.getfixturevalue("emu")
    emulator.clear_faults()
    yield
    emulator.clear_faults()


@pytest.fixture
def customer(emu: Any) -> Any:
    """A fresh customer (1 USD limit), so each test reads a ledger of its own."""
    return new_customer(emu)


@pytest.fixture(params=["wsgi", "asgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_site(anyio_backend: str, emu: Any, kind: str) -> AsyncIterator[Callable[..., Site]]:
    """Build sites of this test's adapter kind; every one is closed afterwards."""
    made: list[Site] = []

    def make(**options: Any) -> Site:
        site = SITES[options.pop("kind", kind)](emu, **options)
        made.append(site)
        return site

    yield make
    for site in made:
        await site.aclose()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    """The default site: mounted at the root, http://localhost, ``/paid`` costs 3000 micros."""
    return make_site()
