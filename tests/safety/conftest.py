"""Fixtures of the safety suites, and the SAFETY figure lines at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from st_middleware.emulator import Emulator

from ._support import FIGURES, Driver, make_driver


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures whatever ``-s``/``-q`` say (they are also printed as they come)."""
    lines = FIGURES.lines()
    if not lines:
        return
    terminalreporter.section("safety figures")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _print_figures() -> Iterator[None]:
    """Also ``print`` the figures at the end of the session (seen with ``-s``)."""
    yield
    for line in FIGURES.lines():
        print(line)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """A Small Transfers emulator of this module's own (faults never leak elsewhere)."""
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _faults_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    if "emu" not in request.fixturenames:
        yield
        return
    emulator = request.getfixturevalue("emu")
    emulator.clear_faults()
    yield
    emulator.clear_faults()


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(emu: Emulator, kind: str) -> Iterator[Any]:
    """Build drivers of this test's adapter kind; every one is closed afterwards."""
    made: list[Driver] = []

    def build(**options: Any) -> Driver:
        driver = make_driver(options.pop("kind", kind), emu, **options)
        made.append(driver)
        return driver

    yield build
    for driver in made:
        driver.close()
