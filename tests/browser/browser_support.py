"""What every browser test shares: Debian's Chromium, its flags, and the rule for a missing one.

Chromium is Debian's ``/usr/bin/chromium`` (``bash scripts/install-browser``),
driven by Playwright, which never downloads a browser here. Without it a
module calling :func:`require_browser` is skipped, unless
``ST_REQUIRE_BROWSER=1`` (CI), then it fails. The ``browser`` fixture is in
this folder's ``conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and nothing phoning home: this machine's network is closed.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


def browser_missing() -> str | None:
    """Why no browser test can run here, or ``None``."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (bash scripts/install-browser installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip the calling module without a browser, or fail it when CI requires one."""
    missing = browser_missing()
    if missing is None:
        return
    if os.environ.get("ST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ST_REQUIRE_BROWSER=1 but {missing}", pytrace=False)
    pytest.skip(missing, allow_module_level=True)
