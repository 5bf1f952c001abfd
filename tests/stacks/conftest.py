"""Fixtures for the real-server tests: the emulator they charge through, their servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_support import Servers

from st_middleware.emulator import Emulator


@pytest.fixture(scope="module")
def stack_emulator(st_emulator: Emulator) -> Emulator:
    """The emulator the servers of a module charge through (a module may bring its own)."""
    return st_emulator


@pytest.fixture(scope="module")
def servers(
    stack_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """Start servers with ``servers.start(spec, ...)``; every one is stopped after the module."""
    running = Servers(stack_emulator, tmp_path_factory.mktemp("servers"))
    try:
        yield running
    finally:
        running.close()
