"""What both adapters share at construction: settings, the core, the HTTP client options."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from .config import Settings
from .core import Core

Pricing = Callable[..., Any] | Mapping[str, Any] | None


class BaseMiddleware:
    """Validates the configuration once and builds every reusable object."""

    def __init__(
        self,
        *,
        publishable_key: str | None,
        secret_key: str | None,
        session_secret: str | Sequence[str] | None,
        base_url: str | None,
        pricing: Pricing,
        options: dict[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = Settings.from_options(
            publishable_key=publishable_key,
            secret_key=secret_key,
            session_secret=session_secret,
            base_url=base_url,
            pricing=pricing,
            options=options,
            environ=environ,
        )
        self.core = Core(self.settings)

    def _client_options(self) -> dict[str, Any]:
        """Options for the one pooled client: explicit timeouts, a small kept-alive pool."""
        settings = self.settings
        timeout = settings.timeout
        options: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            "limits": httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
                keepalive_expiry=30.0,
            ),
            "follow_redirects": False,
        }
        if settings.transport is not None:
            options["transport"] = settings.transport
        return options

    def describe(self, adapter: object, app: object) -> str:
        """A repr for an adapter: what it wraps and where it charges, never a secret."""
        settings = self.settings
        return (
            f"{type(adapter).__name__}(app={app!r}, "
            f"publishable_key={settings.publishable_key!r}, base_url={settings.base_url!r}, "
            f"charge_mode={settings.charge_mode!r})"
        )
