"""``python -m st_middleware check``: what a merchant reads in their first hour.

The keys, reachability and configuration lines are proven against a real
emulator; failures the emulator cannot produce (DNS, a server that is not
Small Transfers) go through an httpx transport that raises or answers them.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from st_middleware import __main__ as cli
from st_middleware._check import (
    CheckReport,
    CheckResult,
    check_redirect_uri,
    check_session_secret,
    check_test_live,
    run_checks,
)
from st_middleware._config import Settings
from st_middleware.emulator import Emulator

GOOD_SESSION_SECRET = "a-session-secret-of-at-least-32-characters-0123"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the developer's own SMALL_TRANSFERS_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("SMALL_TRANSFERS_"):
            monkeypatch.delenv(name)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = cli.main(["check", *args])
    out = capsys.readouterr().out
    return code, out.splitlines()


def _line(lines: list[str], check: str) -> str:
    found = [line for line in lines if line[6:].startswith(check + " ")]
    assert len(found) == 1, (check, lines)
    return found[0]


def _result(report: CheckReport, check: str) -> CheckResult:
    result = report.result(check)
    assert result is not None, report.lines()
    return result


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator_keys(emulator: Emulator) -> list[str]:
    return [
        "--base-url",
        emulator.url,
        "--publishable-key",
        emulator.publishable_key,
        "--secret-key",
        emulator.secret_key,
    ]


# -- against the emulator ----------------------------------------------------------------


def test_right_keys_pass_with_one_line_per_check(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALL_TRANSFERS_SESSION_SECRET", GOOD_SESSION_SECRET)
    code, lines = _cli(capsys, *_emulator_keys(emulator))

    assert code == 0
    # The columns a merchant greps for, in a fixed order, then the summary.
    assert [line[:22] for line in lines[:-1]] == [
        "ok    configuration   ",
        "ok    session-secret  ",
        "ok    reachable       ",
        "ok    keys            ",
        "ok    test-live       ",
        "ok    redirect-uri    ",
    ]
    assert lines[-1] == "summary: 6 ok, 0 warn, 0 FAIL"
    assert _line(lines, "configuration").endswith(
        f"publishable key pk_test_emulator, secret key sk_test_..., "
        f"base URL {emulator.url} (from --base-url)"
    )
    assert _line(lines, "reachable").endswith(f"{emulator.url}/ answered HTTP 200")
    assert "refused only the made-up sign-in code (400 invalid_request)" in _line(lines, "keys")
    assert "https://YOUR-HOST/smalltransfers/callback" in _line(lines, "redirect-uri")
    assert "sk_test_emulator" not in "\n".join(lines)


def test_settings_come_from_the_environment_like_the_middleware(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMALL_TRANSFERS_PUBLISHABLE_KEY", emulator.publishable_key)
    monkeypatch.setenv("SMALL_TRANSFERS_SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("SMALL_TRANSFERS_BASE_URL", emulator.url)
    code, lines = _cli(capsys)

    assert code == 0
    assert "(from SMALL_TRANSFERS_BASE_URL)" in _line(lines, "configuration")
    assert _line(lines, "keys").startswith("ok ")
    # No session secret: check still passes, and says the middleware needs one.
    session = _line(lines, "session-secret")
    assert session.startswith("warn")
    assert "not set (needed to run the middleware)" in session
    assert "SMALL_TRANSFERS_SESSION_SECRET" in session


def test_wrong_secret_key_fails_the_keys_line(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "sk_test_" + secrets.token_hex(16)
    code, lines = _cli(
        capsys,
        "--base-url",
        emulator.url,
        "--publishable-key",
        emulator.publishable_key,
        "--secret-key",
        wrong,
    )

    assert code == 1
    keys = _line(lines, "keys")
    assert keys.startswith("FAIL")
    assert "refused (401 invalid_credentials)" in keys
    assert "copy both keys again" in keys
    assert _line(lines, "reachable").startswith("ok ")
    assert lines[-1] == "summary: 4 ok, 1 warn, 1 FAIL"
    output = "\n".join(lines)
    assert wrong not in output
    assert wrong.removeprefix("sk_test_") not in output


def test_wrong_publishable_key_fails_the_keys_line(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _cli(
        capsys,
        "--base-url",
        emulator.url,
        "--publishable-key",
        "pk_test_not_a_merchant",
        "--secret-key",
        emulator.secret_key,
    )

    assert code == 1
    keys = _line(lines, "keys")
    assert keys.startswith("FAIL")
    assert "refused (401 invalid_credentials)" in keys


def test_inactive_merchant_fails_with_the_dashboard_hint(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_merchant("pk_test_sleeping", "sk_test_sleeping_secret", active=False)
    code, lines = _cli(
        capsys,
        "--base-url",
        emulator.url,
        "--publishable-key",
        "pk_test_sleeping",
        "--secret-key",
        "sk_test_sleeping_secret",
    )

    assert code == 1
    keys = _line(lines, "keys")
    assert keys.startswith("FAIL")
    assert "403 merchant_inactive" in keys
    assert "merchant dashboard" in keys


def test_an_outage_fails_the_keys_line_and_says_to_retry(emulator: Emulator) -> None:
    emulator.set_faults(error="maintenance_mode")
    try:
        report = run_checks(
            publishable_key=emulator.publishable_key,
            secret_key=emulator.secret_key,
            base_url=emulator.url,
            environ={},
        )
    finally:
        emulator.clear_faults()

    keys = _result(report, "keys")
    assert keys.status == "FAIL"
    assert "503 maintenance_mode" in keys.message
    assert "try again later" in keys.message
    assert not report.passed


def test_base_url_with_api_path_fails_configuration_with_the_fix(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _cli(
        capsys,
        "--base-url",
        emulator.url + "/api/v1",
        "--publishable-key",
        emulator.publishable_key,
        "--secret-key",
        emulator.secret_key,
    )

    assert code == 1
    configuration = _line(lines, "configuration")
    assert configuration.startswith("FAIL")
    assert f"write {emulator.url!r}" in configuration
    # Nothing is sent to a base URL the middleware itself would refuse.
    assert lines[-1].endswith(
        "; not checked: reachable, keys, test-live (fix the configuration first)"
    )


def test_missing_keys_fail_configuration_naming_the_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = _cli(capsys)

    assert code == 1
    configuration = _line(lines, "configuration")
    assert configuration.startswith("FAIL")
    assert "SMALL_TRANSFERS_PUBLISHABLE_KEY" in configuration


def test_swapped_keys_fail_without_showing_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "sk_test_" + secrets.token_hex(16)
    code, lines = _cli(capsys, "--publishable-key", secret, "--secret-key", "pk_test_abc")

    assert code == 1
    assert "swapped" in _line(lines, "configuration")
    assert secret.removeprefix("sk_test_") not in "\n".join(lines)


# -- reachability: every way a connection fails ------------------------------------------


def test_closed_port_fails_reachable_quickly() -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    report = run_checks(
        publishable_key="pk_test_emulator",
        secret_key="sk_test_emulator",
        base_url=base,
        environ={},
    )

    assert time.monotonic() - started < 2.0
    reachable = _result(report, "reachable")
    assert reachable.status == "FAIL"
    assert "connection refused" in reachable.message
    assert "python -m st_middleware.emulator" in reachable.message
    assert report.result("keys") is None
    assert report.lines()[-1].endswith("; not checked: keys (Small Transfers is not reachable)")


def test_silent_server_fails_reachable_as_a_timeout() -> None:
    with socket.socket() as listener:
        # Listening but never accepting: the connection opens, no answer comes.
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        report = run_checks(
            publishable_key="pk_test_emulator",
            secret_key="sk_test_emulator",
            base_url=base,
            timeout=0.5,
            environ={},
        )
        elapsed = time.monotonic() - started

    assert elapsed < 3.0
    reachable = _result(report, "reachable")
    assert reachable.status == "FAIL"
    assert ": timeout: no answer" in reachable.message


def test_https_to_a_plain_http_server_fails_as_tls(emulator: Emulator) -> None:
    report = run_checks(
        publishable_key=emulator.publishable_key,
        secret_key=emulator.secret_key,
        base_url=emulator.url.replace("http://", "https://"),
        environ={},
    )

    reachable = _result(report, "reachable")
    assert reachable.status == "FAIL"
    assert ": TLS: the handshake failed" in reachable.message


def test_unresolvable_host_fails_as_dns() -> None:
    def no_such_host(request: httpx.Request) -> httpx.Response:
        # What httpx raises when getaddrinfo fails (no lookup leaves this machine).
        error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        raise httpx.ConnectError(str(error), request=request) from error

    report = run_checks(
        publishable_key="pk_test_emulator",
        secret_key="sk_test_emulator",
        base_url="https://test.smalltransfers.example",
        environ={},
        transport=httpx.MockTransport(no_such_host),
    )

    reachable = _result(report, "reachable")
    assert reachable.status == "FAIL"
    assert "DNS: the host name does not resolve (Name or service not known)" in reachable.message


# -- servers that are not (quite) Small Transfers ----------------------------------------


def _report_with(handler: Any, secret_key: str = "sk_test_emulator") -> CheckReport:
    return run_checks(
        publishable_key="pk_test_emulator",
        secret_key=secret_key,
        base_url="https://shop.example",
        environ={},
        transport=httpx.MockTransport(handler),
    )


def test_a_site_that_is_not_small_transfers_fails_the_keys_line() -> None:
    report = _report_with(
        lambda request: httpx.Response(
            404, text="<h1>Not found</h1>", headers={"content-type": "text/html"}
        )
    )

    keys = _result(report, "keys")
    assert keys.status == "FAIL"
    assert "without a JSON body: no Small Transfers API there" in keys.message


def test_a_redirecting_base_url_is_reported_with_where_to() -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        target = "https://www.shop.example" + request.url.raw_path.decode()
        return httpx.Response(308, headers={"location": target})

    report = _report_with(redirect)

    reachable, keys = _result(report, "reachable"), _result(report, "keys")
    assert reachable.status == "warn"
    assert "set the base URL to https://www.shop.example" in reachable.message
    assert keys.status == "FAIL"
    assert "a redirect to https://www.shop.example" in keys.message


def test_a_server_echoing_the_secret_key_is_redacted() -> None:
    secret = "sk_live_" + secrets.token_hex(16)

    def echo(request: httpx.Request) -> httpx.Response:
        # A 403's own words are quoted in the report: the secret must not be.
        return httpx.Response(
            403,
            json={"code": "forbidden", "detail": f"key {secret} may not\x1b[31m charge"},
            headers={"content-type": "application/problem+json"},
        )

    report = _report_with(echo, secret_key=secret)

    output = "\n".join(report.lines())
    assert secret.removeprefix("sk_live_") not in output
    assert "\x1b" not in output
    keys = _result(report, "keys")
    assert keys.status == "FAIL"
    assert '"key sk_live_... may not' in keys.message


# -- checks that need no network ---------------------------------------------------------


def _settings(publishable_key: str, secret_key: str, base_url: str) -> Settings:
    return Settings.from_options(
        publishable_key=publishable_key,
        secret_key=secret_key,
        session_secret=GOOD_SESSION_SECRET,
        base_url=base_url,
        pricing=None,
        options={},
        environ={},
    )


@pytest.mark.parametrize(
    ("pk", "sk", "base", "status", "words"),
    [
        ("pk_test_a", "sk_test_b", "https://test.smalltransfers.com", "ok", "no real money"),
        ("pk_live_a", "sk_live_b", "https://smalltransfers.com", "ok", "real charges"),
        ("pk_test_a", "sk_test_b", "https://smalltransfers.com", "warn", "against the live host"),
        ("pk_live_a", "sk_live_b", "https://test.smalltransfers.com", "warn", "the test host"),
        ("pk_test_a", "sk_live_b", "https://test.smalltransfers.com", "warn", "of one mode"),
        ("pk_live_a", "sk_live_b", "https://proxy.example", "warn", "make sure you trust it"),
        ("pk_abc", "sk_abc", "https://test.smalltransfers.com", "warn", "neither pk_test_"),
        ("pk_test_a", "sk_test_b", "http://127.0.0.1:8100", "ok", "this machine"),
    ],
)
def test_test_and_live_keys_meet_the_right_host(
    pk: str, sk: str, base: str, status: str, words: str
) -> None:
    result = check_test_live(_settings(pk, sk, base))

    assert (result.status, words in result.message) == (status, True), result.message


@pytest.mark.parametrize(
    ("uri", "callback", "status", "words"),
    [
        (None, "/smalltransfers/callback", "ok", "https://YOUR-HOST/smalltransfers/callback"),
        (None, "/auth/back", "ok", "https://YOUR-HOST/auth/back"),
        (
            "https://shop.example/smalltransfers/callback",
            "/smalltransfers/callback",
            "ok",
            "register exactly this URL",
        ),
        (
            "https://shop.example/mounted/smalltransfers/callback",
            "/smalltransfers/callback",
            "ok",
            "register exactly this URL",
        ),
        ("http://localhost:8000/smalltransfers/callback", "/smalltransfers/callback", "ok", ""),
        ("http://[::1]:8000/smalltransfers/callback", "/smalltransfers/callback", "ok", ""),
        (
            "http://shop.example/smalltransfers/callback",
            "/smalltransfers/callback",
            "warn",
            "use https",
        ),
        ("/smalltransfers/callback", "/smalltransfers/callback", "FAIL", "not an absolute"),
        ("https://shop.example/", "/smalltransfers/callback", "FAIL", "does not end with"),
        (
            "https://shop.example/smalltransfers/callback#x",
            "/smalltransfers/callback",
            "FAIL",
            "#fragment",
        ),
    ],
)
def test_redirect_uri_leads_back_to_the_callback(
    uri: str | None, callback: str, status: str, words: str
) -> None:
    result = check_redirect_uri(uri, callback)

    assert (result.status, words in result.message) == (status, True), result.message


def test_session_secret_is_judged_by_the_middleware_rules() -> None:
    unset = check_session_secret({})
    short = check_session_secret({"SMALL_TRANSFERS_SESSION_SECRET": "too-short"})
    rotated = check_session_secret(
        {"SMALL_TRANSFERS_SESSION_SECRET": f"{GOOD_SESSION_SECRET},{GOOD_SESSION_SECRET}x"}
    )

    assert unset.status == "warn"
    assert short.status == "FAIL"
    assert "at least 32 characters" in short.message
    assert "too-short" not in short.message
    assert rotated.status == "ok"
    assert "2 secrets" in rotated.message


def test_custom_callback_path_is_used_for_the_redirect_uri(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _cli(
        capsys,
        *_emulator_keys(emulator),
        "--callback-path",
        "/auth/back",
        "--redirect-uri",
        "https://shop.example/auth/back",
    )

    assert code == 0
    assert _line(lines, "redirect-uri").startswith("ok ")


# -- the command line --------------------------------------------------------------------


def test_help_explains_every_check_and_the_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    for words in (
        "configuration",
        "session-secret",
        "reachable",
        "keys",
        "test-live",
        "redirect-uri",
        "SMALL_TRANSFERS_SECRET_KEY",
        "exit status: 0 when no line is FAIL, 1 when one is",
        "--timeout",
    ):
        assert words in text


def test_no_command_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "check" in capsys.readouterr().err


def test_the_module_runs_as_a_program_and_never_prints_the_secret(emulator: Emulator) -> None:
    secret = "sk_test_" + secrets.token_hex(20)
    emulator.add_merchant("pk_test_subprocess", secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMALL_TRANSFERS_")}
    env.update(
        SMALL_TRANSFERS_PUBLISHABLE_KEY="pk_test_subprocess",
        SMALL_TRANSFERS_SECRET_KEY=secret,
        SMALL_TRANSFERS_BASE_URL=emulator.url,
        SMALL_TRANSFERS_SESSION_SECRET=GOOD_SESSION_SECRET,
    )

    done = subprocess.run(
        [sys.executable, "-m", "st_middleware", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    keys" in done.stdout
    assert done.stdout.splitlines()[-1] == "summary: 6 ok, 0 warn, 0 FAIL"
    assert done.stderr == ""
    hidden = secret.removeprefix("sk_test_")
    assert hidden not in done.stdout + done.stderr
    assert GOOD_SESSION_SECRET not in done.stdout + done.stderr
