"""What both adapters share at construction: settings, the core, the HTTP client options."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx

from ._config import Settings
from ._core import Core

Pricing = Callable[..., Any] | Mapping[str, Any] | None
AppT = TypeVar("AppT")


class BaseMiddleware(Generic[AppT]):
    """Validates the configuration once and builds every reusable object.

    The adapters add their own checks and their HTTP client in ``_setup``.
    """

    def __init__(
        self,
        app: AppT,
        /,
        *,
        publishable_key: str | None = None,
        secret_key: str | None = None,
        session_secret: str | Sequence[str] | None = None,
        base_url: str | None = None,
        pricing: Pricing = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.settings = Settings.from_options(
            publishable_key=publishable_key,
            secret_key=secret_key,
            session_secret=session_secret,
            base_url=base_url,
            pricing=pricing,
            options=options,
        )
        self._core = Core(self.settings)
        self._setup()

    def _setup(self) -> None:
        """Adapter-specific checks and clients (called at the end of ``__init__``)."""

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

    def __repr__(self) -> str:
        # What it wraps and where it charges, never a secret.
        settings = self.settings
        return (
            f"{type(self).__name__}(app={self.app!r}, "
            f"publishable_key={settings.publishable_key!r}, base_url={settings.base_url!r}, "
            f"charge_mode={settings.charge_mode!r})"
        )
