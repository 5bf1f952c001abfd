"""Configuration: keywords or SMALL_TRANSFERS_* variables, validated at construction."""

from __future__ import annotations

from typing import Any

import pytest

from st_middleware import ConfigurationError, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware._config import DEFAULT_BASE_URL, Settings

GOOD: dict[str, Any] = {
    "publishable_key": "pk_test",
    "secret_key": "sk_test_secret_value",
    "session_secret": "s" * 32,
    "base_url": None,
    "pricing": None,
}


def settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    values = {**GOOD, **{k: v for k, v in overrides.items() if k in GOOD}}
    options = {k: v for k, v in overrides.items() if k not in GOOD}
    return Settings.from_options(**values, options=options, environ=env or {})


def test_everything_can_come_from_the_environment() -> None:
    env = {
        "SMALL_TRANSFERS_PUBLISHABLE_KEY": "pk_env",
        "SMALL_TRANSFERS_SECRET_KEY": "sk_env",
        "SMALL_TRANSFERS_SESSION_SECRET": "x" * 32 + ", " + "y" * 32,
        "SMALL_TRANSFERS_BASE_URL": "http://127.0.0.1:8100/",
    }
    s = settings(env, publishable_key=None, secret_key=None, session_secret=None)
    assert s.publishable_key == "pk_env"
    assert s.secret_key == "sk_env"
    assert s.session_secrets == ("x" * 32, "y" * 32)
    assert s.base_url == "http://127.0.0.1:8100"


def test_base_url_defaults_to_the_live_service() -> None:
    assert settings().base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("keyword", "variable"),
    [
        ("publishable_key", "SMALL_TRANSFERS_PUBLISHABLE_KEY"),
        ("secret_key", "SMALL_TRANSFERS_SECRET_KEY"),
        ("session_secret", "SMALL_TRANSFERS_SESSION_SECRET"),
    ],
)
def test_a_missing_key_names_the_keyword_and_the_variable(keyword: str, variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({variable: ""}, **{keyword: None})
    assert keyword in str(info.value)
    assert variable in str(info.value)


def test_a_short_session_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(session_secret="short-secret-value")
    message = str(info.value)
    assert "32" in message
    assert "SMALL_TRANSFERS_SESSION_SECRET" in message
    assert "session_secret" in message
    assert "short-secret-value" not in message


def test_one_short_secret_in_a_list_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="#2"):
        settings(session_secret=["a" * 32, "b" * 10])


@pytest.mark.parametrize(
    "options",
    [
        {"charge_mode": "later"},
        {"timeout": 0},
        {"timeout": "10"},
        {"session_max_age": 1.5},
        {"sign_in_path": "nope"},
        {"sign_in_path": "/same", "sign_out_path": "/same"},
        {"cookie_name": "bad name"},
        {"cookie_name": "__Host-x"},
        {"redirect_uri": "/relative"},
        {"on_charge": 42},
        {"fail_open": "yes"},
        {"no_such_option": 1},
        {"pricing": {"/x": 1.5}},
        {"base_url": "ftp://x"},
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        settings(**options)


def test_secrets_never_appear_in_reprs() -> None:
    s = settings()
    mw = SmallTransfersWSGI(lambda e, r: [], **GOOD)
    for text in (repr(s), repr(mw)):
        assert "sk_test_secret_value" not in text
        assert "s" * 32 not in text


def test_wsgi_refuses_async_pricing() -> None:
    async def price(request: object) -> int:
        return 1

    with pytest.raises(ConfigurationError, match="async"):
        SmallTransfersWSGI(lambda e, r: [], **{**GOOD, "pricing": price})


def test_async_hooks_are_refused() -> None:
    async def hook(event: object) -> None:
        return None

    with pytest.raises(ConfigurationError, match="on_charge"):
        SmallTransfersASGI(lambda s, r, c: None, **GOOD, on_charge=hook)  # type: ignore[arg-type,return-value]


def test_transport_of_the_wrong_kind_is_refused() -> None:
    import httpx

    with pytest.raises(ConfigurationError):
        SmallTransfersWSGI(lambda e, r: [], **GOOD, transport=httpx.AsyncHTTPTransport())
