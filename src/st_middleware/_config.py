"""Settings from keywords and ``SMALL_TRANSFERS_*`` environment variables, validated once.

Everything a request needs that can be known in advance is decided here, at
construction: a bad setting fails loudly at start-up with an error that names
both the keyword and the variable, never on a visitor's request.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from ._charge import CHARGE_MODES, ChargeEvent, ChargeMode
from ._customer import Customer
from ._errors import ConfigurationError
from ._observe import Observer, Watch
from ._pricing import PriceRule, compile_pricing
from ._store import parse_store_url

__all__ = ["DEFAULT_BASE_URL", "TEST_BASE_URL", "Settings", "check_transport"]

log = logging.getLogger("st_middleware")

DEFAULT_BASE_URL = "https://smalltransfers.com"
TEST_BASE_URL = "https://test.smalltransfers.com"
MIN_SECRET_LENGTH = 32

ChargeHook = Callable[[ChargeEvent], object]
CustomerHook = Callable[[Customer], object]
PreflightHeaders = Mapping[str, str] | Callable[[Any], Mapping[str, str] | None] | None


def _default_failure(status: int) -> bool:
    # Errors, and redirects (a slash-fixing redirect delivers nothing worth
    # paying for); 304 Not Modified confirms content the visitor holds.
    return status >= 400 or (300 <= status < 400 and status != 304)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one middleware instance.

    Secrets are excluded from ``repr`` so that a settings object can be
    logged or shown in a debugger page without leaking anything.
    """

    publishable_key: str
    secret_key: str = field(repr=False)
    session_secrets: tuple[str, ...] = field(repr=False)
    base_url: str
    price_of: PriceRule | None
    sign_in_path: str = "/smalltransfers/sign-in"
    callback_path: str = "/smalltransfers/callback"
    sign_out_path: str = "/smalltransfers/sign-out"
    device_path: str = "/smalltransfers/device"
    token_path: str = "/smalltransfers/token"  # noqa: S105 - a path, not a secret
    #: Seconds a program waits between two polls of the token route (RFC 8628 ``interval``).
    device_interval: int = 5
    #: Seconds a device authorization waits for the customer's approval.
    device_expires_in: int = 600
    charge_mode: ChargeMode = "transaction"
    timeout: float = 10.0
    session_max_age: int = 30 * 24 * 3600
    session_generation: int = 0
    reject_session: Callable[[Customer, int], bool] | None = None
    secure_cookies: bool | None = None
    fail_open: bool = False
    cookie_name: str = "st_session"
    state_cookie_name: str = "st_state"
    redirect_uri: str | None = None
    scope: str = "add-charge"
    trusted_proxies: frozenset[str] = frozenset()
    retry_after: int = 5
    max_connections: int = 1024
    failure_status: Callable[[int], bool] = _default_failure
    on_charge: ChargeHook | None = None
    on_charge_failed: ChargeHook | None = None
    on_sign_in: CustomerHook | None = None
    on_sign_out: CustomerHook | None = None
    preflight_headers: PreflightHeaders = None
    cache_paid_answers: bool = False
    #: The state store: a URL (``memory://``, ``sqlite:////path``, ``redis://...``) or an object.
    store: Any = field(default=None, repr=False)
    #: What operators watch with (``st_middleware.observability``).
    observers: tuple[Observer, ...] = ()
    transport: Any = field(default=None, repr=False)

    #: The observers, called safely (derived, not an option).
    watch: Watch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "watch", Watch(self.observers))

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v1"

    @property
    def pricing_is_async(self) -> bool:
        return self.price_of is not None and self.price_of.is_async

    @classmethod
    def from_options(
        cls,
        *,
        publishable_key: str | None,
        secret_key: str | None,
        session_secret: str | Sequence[str] | None,
        base_url: str | None,
        pricing: Callable[..., Any] | Mapping[str, int] | None,
        options: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Validate keywords (falling back to the environment) into ``Settings``."""
        env = os.environ if environ is None else environ
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            raise ConfigurationError("; ".join(_unknown_option(name) for name in unknown))

        pk = _required(publishable_key, "publishable_key", env)
        sk = _required(secret_key, "secret_key", env)
        _check_keys(pk, sk)
        secrets = _session_secrets(session_secret, env)
        base = _base_url(base_url, env, pk)
        kwargs: dict[str, Any] = dict(options)

        for name in _ROUTE_OPTIONS:
            if name in kwargs:
                kwargs[name] = _path(kwargs[name], name)
        paths = [kwargs.get(n, _default(n)) for n in _ROUTE_OPTIONS]
        verify = kwargs.get("device_path", _default("device_path")) + "/verify"
        if len({*paths, verify}) != len(paths) + 1:
            raise ConfigurationError(f"{', '.join(_ROUTE_OPTIONS)} must all differ")

        mode = kwargs.get("charge_mode", "transaction")
        if mode not in CHARGE_MODES:
            raise ConfigurationError(f"charge_mode must be one of {CHARGE_MODES}, got {mode!r}")
        for name in ("timeout",):
            if name in kwargs:
                kwargs[name] = _positive_number(kwargs[name], name)
        for name in (
            "session_max_age",
            "retry_after",
            "max_connections",
            "device_interval",
            "device_expires_in",
        ):
            if name in kwargs:
                kwargs[name] = _positive_int(kwargs[name], name)
        generation = kwargs.get("session_generation", 0)
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise ConfigurationError("session_generation must be an integer >= 0")
        if kwargs.get("reject_session") is not None and not callable(kwargs["reject_session"]):
            raise ConfigurationError(
                "reject_session must be callable: (customer, issued_at) -> bool"
            )
        for name in ("secure_cookies",):
            if name in kwargs and kwargs[name] not in (None, True, False):
                raise ConfigurationError(f"{name} must be None, True or False")
        for name in ("fail_open", "cache_paid_answers"):
            if name in kwargs and not isinstance(kwargs[name], bool):
                raise ConfigurationError(f"{name} must be True or False")
        if "preflight_headers" in kwargs:
            kwargs["preflight_headers"] = _preflight(kwargs["preflight_headers"])
        if "observers" in kwargs:
            kwargs["observers"] = _observers(kwargs["observers"])
        if kwargs.get("store") is None:
            kwargs["store"] = env.get("SMALL_TRANSFERS_STORE", "").strip() or "memory://"
        if isinstance(kwargs["store"], str):
            parse_store_url(kwargs["store"])  # a wrong URL fails here, naming the forms
        for name in ("cookie_name", "state_cookie_name"):
            if name in kwargs:
                kwargs[name] = _cookie_name(kwargs[name], name)
        if kwargs.get("cookie_name", _default("cookie_name")) == kwargs.get(
            "state_cookie_name", _default("state_cookie_name")
        ):
            raise ConfigurationError("cookie_name and state_cookie_name must differ")
        if kwargs.get("redirect_uri") is not None:
            kwargs["redirect_uri"] = _absolute_url(kwargs["redirect_uri"], "redirect_uri")
        if "scope" in kwargs and (not isinstance(kwargs["scope"], str) or not kwargs["scope"]):
            raise ConfigurationError("scope must be a non-empty string")
        if "trusted_proxies" in kwargs:
            kwargs["trusted_proxies"] = _proxies(kwargs["trusted_proxies"])
        for name in ("on_charge", "on_charge_failed", "on_sign_in", "on_sign_out"):
            hook = kwargs.get(name)
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be callable")
            if hook is not None and inspect.iscoroutinefunction(hook):
                raise ConfigurationError(
                    f"{name} must be a plain function: hooks run inline and are not awaited"
                )
        if "failure_status" in kwargs and not callable(kwargs["failure_status"]):
            raise ConfigurationError("failure_status must be callable: status -> bool")

        try:
            price_of = compile_pricing(pricing)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"pricing: {exc}") from None

        return cls(
            publishable_key=pk,
            secret_key=sk,
            session_secrets=secrets,
            base_url=base,
            price_of=price_of,
            **kwargs,
        )


_ROUTE_OPTIONS = ("sign_in_path", "callback_path", "sign_out_path", "device_path", "token_path")

_OPTION_NAMES = frozenset(
    name
    for name in Settings.__dataclass_fields__
    if name
    not in {"publishable_key", "secret_key", "session_secrets", "base_url", "price_of", "watch"}
)


def _default(name: str) -> Any:
    return Settings.__dataclass_fields__[name].default


def _unknown_option(name: str) -> str:
    known = [*_OPTION_NAMES, "publishable_key", "secret_key", "session_secret", "base_url"]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {name!r}{hint}"


_ENV = {
    "publishable_key": "SMALL_TRANSFERS_PUBLISHABLE_KEY",
    "secret_key": "SMALL_TRANSFERS_SECRET_KEY",
    "session_secret": "SMALL_TRANSFERS_SESSION_SECRET",
    "base_url": "SMALL_TRANSFERS_BASE_URL",
}


def _from_env(name: str, env: Mapping[str, str]) -> str | None:
    value = env.get(_ENV[name], "").strip()
    return value or None


def _required(value: str | None, name: str, env: Mapping[str, str]) -> str:
    if value is None:
        value = _from_env(name, env)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{name} is missing: pass {name}=... or set the {_ENV[name]} environment variable"
        )
    return value.strip()


def _session_secrets(value: str | Sequence[str] | None, env: Mapping[str, str]) -> tuple[str, ...]:
    where = "pass session_secret=... or set SMALL_TRANSFERS_SESSION_SECRET"
    if value is None:
        raw = _from_env("session_secret", env)
        if raw is None:
            raise ConfigurationError(f"session_secret is missing: {where}")
        secrets = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(value, str):
        secrets = [value]
    elif isinstance(value, Iterable):
        secrets = list(value)
    else:
        raise ConfigurationError(f"session_secret must be a string or a list of strings ({where})")
    if not secrets:
        raise ConfigurationError(f"session_secret is empty: {where}")
    for position, secret in enumerate(secrets, 1):
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            # Never echo the secret itself, only where it is and what is wrong.
            which = f"session_secret #{position}" if len(secrets) > 1 else "session_secret"
            raise ConfigurationError(
                f"{which} must be a string of at least "
                f"{MIN_SECRET_LENGTH} characters ({where}); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
    return tuple(secrets)


def _check_keys(publishable: str, secret: str) -> None:
    """Swapped or equal keys would send the secret key to every visitor's browser."""
    both = (
        "publishable_key (SMALL_TRANSFERS_PUBLISHABLE_KEY) and "
        "secret_key (SMALL_TRANSFERS_SECRET_KEY)"
    )
    if publishable.startswith("sk_"):
        raise ConfigurationError(
            f"publishable_key looks like a secret key (it starts with 'sk_'): are {both} "
            "swapped? The publishable key is the one that starts with 'pk_'."
        )
    if secret.startswith("pk_"):
        raise ConfigurationError(
            f"secret_key looks like a publishable key (it starts with 'pk_'): are {both} "
            "swapped? The secret key is the one that starts with 'sk_'."
        )
    if publishable == secret:
        raise ConfigurationError(f"{both} are the same value: give each its own key")


def _base_url(value: str | None, env: Mapping[str, str], publishable_key: str) -> str:
    test_key = publishable_key.startswith("pk_test_")
    if value is None:
        value = _from_env("base_url", env) or (TEST_BASE_URL if test_key else DEFAULT_BASE_URL)
    where = "base_url (or SMALL_TRANSFERS_BASE_URL)"
    if not isinstance(value, str):
        raise ConfigurationError(f"{where} must be a string URL")
    parts = urlsplit(value.strip())
    origin = f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{where} must be an http(s) URL such as {TEST_BASE_URL!r}, got {value!r}"
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{where} must not hold credentials: write {origin!r}")
    if parts.path.rstrip("/") or parts.query or parts.fragment:
        # The API path (/api/v1) is added by the middleware itself.
        raise ConfigurationError(
            f"{where} is the site's origin, without a path or query: write {origin!r}, "
            f"not {value!r}"
        )
    base = value.strip().rstrip("/")
    live_host = parts.hostname == "smalltransfers.com"
    test_host = parts.hostname == "test.smalltransfers.com"
    if test_key and live_host:
        log.warning("a test key (pk_test_...) is pointed at the live host %s", base)
    elif publishable_key.startswith("pk_live_") and test_host:
        log.warning("a live key (pk_live_...) is pointed at the test host %s", base)
    return base


def _absolute_url(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value


def _path(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        raise ConfigurationError(f"{name} must be a path starting with a single '/'")
    return value


def _positive_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return float(value)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer")
    return value


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)


def _cookie_name(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _TOKEN_CHARS:
        raise ConfigurationError(f"{name} must be a valid cookie name (an RFC 7230 token)")
    if value.lower().startswith(("__host-", "__secure-")):
        raise ConfigurationError(f"{name}: leave out the prefix, the middleware adds __Host-")
    return value


def _proxies(value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise ConfigurationError("trusted_proxies must be a list of client addresses, or '*'")
    items = frozenset(cast(Iterable[object], value))
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError("trusted_proxies must be a list of client addresses, or '*'")
    return cast(frozenset[str], items)


def _observers(value: object) -> tuple[Observer, ...]:
    items = (value,) if isinstance(value, Observer) else value
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
        raise ConfigurationError("observers must be a list of observers")
    found = tuple(items)
    for observer in found:
        if not isinstance(observer, Observer):
            raise ConfigurationError(
                f"observers: {type(observer).__name__} lacks the Observer methods "
                "(see st_middleware.observability)"
            )
    return cast(tuple[Observer, ...], found)


def _preflight(value: object) -> PreflightHeaders:
    if value is None or callable(value):
        return cast(PreflightHeaders, value)
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in v and "\r" not in v
        for k, v in value.items()
    ):
        return dict(value)
    raise ConfigurationError(
        "preflight_headers must be a mapping of header names to values, "
        "or a callable (request) -> mapping"
    )


def check_transport(transport: object, kind: type[Any], adapter: str) -> None:
    """Refuse a transport of the wrong kind (sync for ASGI, async for WSGI)."""
    if transport is not None and not isinstance(transport, kind):
        raise ConfigurationError(f"{adapter} needs transport to be an {kind.__name__}")
