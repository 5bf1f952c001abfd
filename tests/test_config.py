"""Configuration: keywords or SMALL_TRANSFERS_* variables, validated at construction."""

from __future__ import annotations

import inspect
import logging
import pydoc
from typing import Any

import pytest

from st_middleware import ConfigurationError, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware._config import DEFAULT_BASE_URL, TEST_BASE_URL, Settings

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


# -- safety at construction: keys and base_url -------------------------------------------


@pytest.mark.parametrize(
    ("publishable", "secret", "what"),
    [
        ("sk_test_swapped_secret_123", "pk_test_swapped", "publishable_key looks like a secret"),
        ("pk_test_abc", "pk_test_other", "secret_key looks like a publishable"),
        ("same_key_value_42", "same_key_value_42", "the same value"),
    ],
)
def test_swapped_or_equal_keys_are_refused_without_echoing_the_secret(
    publishable: str, secret: str, what: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(publishable_key=publishable, secret_key=secret)
    message = str(caught.value)
    assert what in message
    assert "publishable_key" in message
    assert "secret_key" in message
    assert secret not in message


def test_swapped_keys_never_reach_a_visitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hole: with the keys exchanged, the authorize URL carried the secret key."""
    with pytest.raises(ConfigurationError):
        SmallTransfersWSGI(
            lambda environ, start_response: [],
            publishable_key="sk_live_very_secret",
            secret_key="pk_live_public",
            session_secret="s" * 32,
        )


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [
        ("https://test.smalltransfers.com/api/v1", "'https://test.smalltransfers.com'"),
        ("https://smalltransfers.com/somewhere/", "'https://smalltransfers.com'"),
        ("https://smalltransfers.com/?x=1", "'https://smalltransfers.com'"),
        ("https://smalltransfers.com/#top", "'https://smalltransfers.com'"),
        ("https://user:pw@smalltransfers.com", "'https://smalltransfers.com'"),
        ("http://127.0.0.1:8100/api/v1/", "'http://127.0.0.1:8100'"),
        ("test.smalltransfers.com", "https://test.smalltransfers.com"),
        ("ftp://smalltransfers.com", "https://test.smalltransfers.com"),
    ],
)
def test_a_wrong_base_url_says_what_to_write(value: str, suggestion: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(base_url=value)
    assert "base_url" in str(caught.value)
    assert suggestion in str(caught.value)
    assert "pw" not in str(caught.value).replace(value, "")


def test_a_base_url_with_only_a_trailing_slash_is_fine() -> None:
    assert settings(base_url="https://smalltransfers.com/").base_url == DEFAULT_BASE_URL


def test_test_keys_default_to_the_test_host() -> None:
    assert settings(publishable_key="pk_test_abc").base_url == TEST_BASE_URL
    assert settings(publishable_key="pk_live_abc").base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("key", "base", "warned"),
    [
        ("pk_test_abc", "https://smalltransfers.com", "test key"),
        ("pk_live_abc", "https://test.smalltransfers.com", "live key"),
        ("pk_live_abc", "https://smalltransfers.com", None),
        ("pk_test_abc", "https://test.smalltransfers.com", None),
        ("pk_test_abc", "http://127.0.0.1:8100", None),
    ],
)
def test_a_key_pointed_at_the_other_host_is_a_warning(
    key: str, base: str, warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    settings(publishable_key=key, base_url=base)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warned in warnings[0]


def test_one_secret_is_not_numbered() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(session_secret="short")
    assert "#1" not in str(caught.value)
    assert "session_secret must be" in str(caught.value)
    with pytest.raises(ConfigurationError, match="session_secret #2"):
        settings(session_secret=["s" * 32, "short"])


# -- every option is a documented keyword -------------------------------------------------


def test_a_misspelled_option_gets_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'charge_mode'"):
        SmallTransfersWSGI(lambda e, s: [], **GOOD, chrage_mode="transaction")


@pytest.mark.parametrize("adapter", [SmallTransfersWSGI, SmallTransfersASGI])
def test_every_option_is_a_keyword_with_the_settings_default(adapter: Any) -> None:
    parameters = inspect.signature(adapter).parameters
    fields = Settings.__dataclass_fields__
    options = {n for n in fields if n not in ("session_secrets", "price_of", "watch")}
    for name in options:
        assert name in parameters, f"{name} is not a keyword of {adapter.__name__}"
        default = parameters[name].default
        if name == "failure_status":
            assert default is None  # None: the settings' default
        elif name == "trusted_proxies":
            assert frozenset(default) == fields[name].default
        elif name == "observers":
            assert tuple(default) == fields[name].default
        elif name not in ("publishable_key", "secret_key", "base_url"):
            assert default == fields[name].default, name
    documented = inspect.getdoc(adapter.__init__) or ""
    for name in parameters:
        if name not in ("app", "misspelled"):
            assert f"``{name}``" in documented, f"{name} is not documented"


def test_help_shows_the_options() -> None:
    text = pydoc.render_doc(SmallTransfersWSGI, renderer=pydoc.plaintext)
    for name in ("pricing", "charge_mode", "session_max_age", "on_charge", "preflight_headers"):
        assert name in text


def test_routers_find_the_wrapped_apps_attributes() -> None:
    class App:
        routes = ["a route"]

        def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
            return []

    wrapped = SmallTransfersWSGI(App(), **GOOD)
    assert wrapped.routes == ["a route"]
    with pytest.raises(AttributeError):
        wrapped.nothing_of_the_sort  # noqa: B018


def test_our_calls_do_not_flood_httpx_logs(emu: Any, caplog: pytest.LogCaptureFixture) -> None:
    import httpx

    caplog.set_level(logging.INFO)
    SmallTransfersWSGI(lambda e, s: [], **{**GOOD, "base_url": emu.url}).close()
    httpx.post(f"{emu.url}/api/v1/transactions", json={}, timeout=5)  # as the middleware does
    httpx.get(f"{emu.url}/customer/dashboard", timeout=5)  # the merchant's own call
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert not [line for line in lines if "/api/v1/" in line]
    assert [line for line in lines if "/customer/dashboard" in line]
