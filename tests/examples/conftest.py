"""Fixtures for the examples' tests: one emulator, the examples importable, their servers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from example_support import ROOT, example_env

from st_middleware.emulator import Emulator

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `examples` is a package at the repository root


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    """One emulator for every example test: each test signs in a customer of its own."""
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def load_example(emu: Emulator) -> Iterator[Callable[[str], ModuleType]]:
    """Import an example afresh with SMALL_TRANSFERS_* pointing at the emulator.

    The variables stay set for the module's tests (FastAPI and Starlette build
    their middleware on the first request) and are restored afterwards.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name, value in example_env(emu).items():
            patch.setenv(name, value)

        def load(name: str) -> ModuleType:
            sys.modules.pop(name, None)
            return importlib.import_module(name)

        yield load
