"""The testing kit end to end on an app that wraps itself at import time.

``st_env`` sets ``SMALL_TRANSFERS_*`` for the test, so the module is
imported inside the test; ``async_signed_in_client`` runs the app's lifespan
around the client and hands its state to every request, as a server does.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from st_middleware import ConfigurationError
from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import async_signed_in_client, charges

MODULE = "stack_kit_app"


def fresh_import() -> ModuleType:
    """Import the app module anew, so it reads the environment as it is now."""
    sys.modules.pop(MODULE, None)
    return importlib.import_module(MODULE)


@pytest.mark.anyio
async def test_an_app_built_at_import_runs_its_lifespan_and_charges_through_the_kit(
    st_env: dict[str, str], st_emulator: Emulator, st_customer: Customer
) -> None:
    module = fresh_import()
    async with async_signed_in_client(module.app, st_emulator, st_customer) as client:
        assert module.LIFESPAN == ["startup"]
        answer = await client.get("/paid")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "greeting": "hello from the lifespan",
        "customer": st_customer.id,
        "charged": 2500,
    }
    assert module.LIFESPAN == ["startup", "shutdown"]
    assert charges(st_emulator, st_customer) == [2500]


def test_without_st_env_the_same_import_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the import belongs inside the test, after ``st_env``."""
    for name in ("PUBLISHABLE_KEY", "SECRET_KEY", "SESSION_SECRET", "BASE_URL"):
        monkeypatch.delenv(f"SMALL_TRANSFERS_{name}", raising=False)
    with pytest.raises(ConfigurationError, match="SMALL_TRANSFERS_"):
        fresh_import()
    sys.modules.pop(MODULE, None)
