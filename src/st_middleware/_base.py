"""What both adapters share at construction: every option, the settings, the core."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from ._charge import ChargeEvent, ChargeMode
from ._config import PreflightHeaders, Settings
from ._core import Core
from ._customer import Customer
from ._observe import Observer
from ._store import open_store

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
        charge_mode: ChargeMode = "transaction",
        failure_status: Callable[[int], bool] | None = None,
        fail_open: bool = False,
        cache_paid_answers: bool = False,
        preflight_headers: PreflightHeaders = None,
        session_max_age: int = 30 * 24 * 3600,
        session_generation: int = 0,
        reject_session: Callable[[Customer, int], bool] | None = None,
        secure_cookies: bool | None = None,
        cookie_name: str = "st_session",
        state_cookie_name: str = "st_state",
        sign_in_path: str = "/smalltransfers/sign-in",
        callback_path: str = "/smalltransfers/callback",
        sign_out_path: str = "/smalltransfers/sign-out",
        device_path: str = "/smalltransfers/device",
        token_path: str = "/smalltransfers/token",  # noqa: S107 - a path, not a secret
        device_interval: int = 5,
        device_expires_in: int = 600,
        redirect_uri: str | None = None,
        scope: str = "add-charge",
        trusted_proxies: str | Sequence[str] = (),
        timeout: float = 10.0,
        retry_after: int = 5,
        max_connections: int = 1024,
        transport: Any = None,
        on_charge: Callable[[ChargeEvent], object] | None = None,
        on_charge_failed: Callable[[ChargeEvent], object] | None = None,
        on_sign_in: Callable[[Customer], object] | None = None,
        on_sign_out: Callable[[Customer], object] | None = None,
        store: Any = None,
        observers: Sequence[Observer] = (),
        **misspelled: Any,
    ) -> None:
        """Wrap ``app`` (positional) and charge its visitors through Small Transfers.

        Keys (each left ``None`` is read from its environment variable):

        - ``publishable_key`` (``SMALL_TRANSFERS_PUBLISHABLE_KEY``), ``secret_key``
          (``SMALL_TRANSFERS_SECRET_KEY``): the merchant keys (``pk_...``, ``sk_...``).
        - ``session_secret`` (``SMALL_TRANSFERS_SESSION_SECRET``, comma-separated):
          at least 32 characters, or a list: the first seals cookies, all open them.
        - ``base_url`` (``SMALL_TRANSFERS_BASE_URL``): the Small Transfers site,
          default ``https://test.smalltransfers.com`` for ``pk_test_`` keys, else
          ``https://smalltransfers.com``; the emulator's URL in development.

        What is charged:

        - ``pricing``: a mapping of rules (``{"/paid": 3000, "/api/*": 500,
          "POST /x": 100}``, micros) or a callable ``(request) -> micros | Price | None``.
        - ``charge_mode``: ``"transaction"`` (charge before the app runs) or
          ``"authorize-capture"`` (authorize the price, capture what the app used).
        - ``failure_status``: ``(status) -> bool``, app statuses not captured
          (default: errors and redirects).
        - ``fail_open``: on an outage of Small Transfers, run the app uncharged
          instead of answering 503.
        - ``cache_paid_answers``: let priced answers keep the app's caching headers.
        - ``preflight_headers``: headers (or ``(request) -> headers``) of the 204
          the middleware gives an OPTIONS request to a priced path (CORS).

        Sessions and routes:

        - ``session_max_age`` (seconds from sign-in), ``session_generation`` (bump
          to sign everybody out), ``reject_session`` (``(customer, issued_at) -> bool``).
        - ``secure_cookies`` (``None``: Secure except plain http on loopback),
          ``cookie_name``, ``state_cookie_name``.
        - ``sign_in_path``, ``callback_path``, ``sign_out_path``: the middleware's
          routes; ``redirect_uri``: the registered callback URL when it cannot be
          built from the request; ``scope``: the permission asked at sign-in.
        - ``trusted_proxies``: client addresses whose ``X-Forwarded-Proto/-Host``
          are believed (``"*"``: any).

        Programs and agents (``Authorization: Bearer``, RFC 8628 device flow):

        - ``device_path`` (a program asks for a device code; the customer's
          page is ``device_path + "/verify"``), ``token_path`` (the program
          polls for its bearer token), ``device_interval`` (seconds between
          polls), ``device_expires_in`` (seconds a code waits for approval).

        Calls to Small Transfers and hooks:

        - ``timeout`` (seconds per call: connect at most 5 of them, then each
          write and read), ``retry_after`` (seconds in 503 answers).
        - ``max_connections`` (default 1024): the most connections to Small
          Transfers per worker process (WSGI) or event loop (ASGI). The pool grows
          with the charges in flight and keeps connections alive 30 s; a charge
          beyond the limit waits up to ``timeout`` for one (then 503). The default
          does not throttle a healthy worker; it only bounds a runaway.
        - ``transport``: an ``httpx`` transport (``httpx.BaseTransport`` for WSGI,
          ``httpx.AsyncBaseTransport`` for ASGI) to send with instead of the
          built-in HTTP/1.1 one; its own limits apply (``max_connections`` does
          not). Without it, a proxy named by ``HTTPS_PROXY``/``ALL_PROXY`` is used
          through httpx's transport.
        - ``on_charge``, ``on_charge_failed`` (``ChargeEvent``), ``on_sign_in``,
          ``on_sign_out`` (``Customer``): plain functions, run inline.

        State shared by processes and hosts:

        - ``store`` (``SMALL_TRANSFERS_STORE``): where captures not yet
          confirmed and signed-out sessions are kept: ``"memory://"`` (default,
          this process), ``"sqlite:////ABSOLUTE/PATH.db"`` (one host, many
          workers), ``"redis://HOST:PORT/DB"`` (many hosts; the ``redis``
          extra), or an object with the ``st_middleware.Store`` methods.

        Operators:

        - ``observers``: what watches charges, calls to Small Transfers, sign-ins
          and the capture outbox: ``st_middleware.observability.prometheus()``
          (the ``prometheus`` extra), ``.opentelemetry()`` (the ``otel`` extra),
          or any ``st_middleware.Observer``.

        A misspelled keyword fails at construction with a suggestion.
        """
        options = {
            name: value
            for name, value in locals().items()
            if name not in _NOT_OPTIONS and not (name == "failure_status" and value is None)
        }
        options.update(misspelled)
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
        self._stores = open_store(self.settings.store)
        _QUIET_OWN_CALLS.add(self.settings.api_url)
        self._setup()

    def _setup(self) -> None:
        """Adapter-specific checks and clients (called at the end of ``__init__``)."""

    def _client_options(self) -> dict[str, Any]:
        """What :func:`~st_middleware._transport.default_transport` needs to pick a transport."""
        settings = self.settings
        return {
            "api_url": settings.api_url,
            "max_connections": settings.max_connections,
            "transport": settings.transport,
        }

    def __getattr__(self, name: str) -> Any:
        # What routers and frameworks look up on an app (Starlette's `routes`
        # for url_for through a mount, for instance) is the wrapped app's.
        if name.startswith("_") or name in ("app", "settings"):
            raise AttributeError(name)
        return getattr(self.app, name)

    def __repr__(self) -> str:
        # What it wraps and where it charges, never a secret.
        settings = self.settings
        return (
            f"{type(self).__name__}(app={self.app!r}, "
            f"publishable_key={settings.publishable_key!r}, base_url={settings.base_url!r}, "
            f"charge_mode={settings.charge_mode!r})"
        )


class _QuietOwnCalls(logging.Filter):
    """Drops httpx's INFO line for each of our calls to Small Transfers.

    The middleware logs every charge once, with its outcome; httpx's extra
    line per call floods a server's log (daphne, gunicorn at INFO). The
    merchant's own httpx calls are left alone.
    """

    def __init__(self) -> None:
        super().__init__()
        self._prefixes: tuple[str, ...] = ()

    def add(self, api_url: str) -> None:
        if api_url not in self._prefixes:
            self._prefixes = (*self._prefixes, api_url)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # httpx: logger.info('HTTP Request: %s %s "%s %d %s"', method, url, ...)
        if isinstance(args, tuple) and len(args) > 1:
            return not str(args[1]).startswith(self._prefixes)
        return True


_QUIET_OWN_CALLS = _QuietOwnCalls()
logging.getLogger("httpx").addFilter(_QUIET_OWN_CALLS)

_NOT_OPTIONS = frozenset(
    {
        "self",
        "app",
        "misspelled",
        "publishable_key",
        "secret_key",
        "session_secret",
        "base_url",
        "pricing",
    }
)
