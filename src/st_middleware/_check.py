"""``python -m st_middleware check``: a merchant's first-hour sanity check.

Each check is a function that returns a :class:`CheckResult` (or a few), so
the logic is testable without a subprocess; :func:`run_checks` runs them in
order and :mod:`st_middleware.__main__` only prints the lines.

The settings are read exactly as the middleware reads them
(:meth:`Settings.from_options`, keywords first, then ``SMALL_TRANSFERS_*``),
so a line that says ``ok`` here is a setting the middleware accepts.

Nothing printed ever holds the secret key beyond its ``sk_test_`` /
``sk_live_`` prefix, nor any part of a session secret: every message goes
through :func:`_redact` before it leaves :func:`run_checks`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from ._api import BodyCollector
from ._config import Settings
from ._errors import ConfigurationError
from ._version import __version__

__all__ = [
    "CheckReport",
    "CheckResult",
    "Status",
    "check_configuration",
    "check_keys",
    "check_reachable",
    "check_redirect_uri",
    "check_session_secret",
    "check_test_live",
    "describe_transport_error",
    "run_checks",
]

Status = Literal["ok", "warn", "FAIL"]

LIVE_HOST = "smalltransfers.com"
TEST_HOST = "test.smalltransfers.com"
DEFAULT_CALLBACK_PATH = "/smalltransfers/callback"
DEFAULT_TIMEOUT = 5.0

_ENV_SECRET_KEY = "SMALL_TRANSFERS_SECRET_KEY"  # noqa: S105 -- a variable name
_ENV_SESSION_SECRET = "SMALL_TRANSFERS_SESSION_SECRET"  # noqa: S105 -- a variable name
_ENV_BASE_URL = "SMALL_TRANSFERS_BASE_URL"
# The check itself never seals a cookie, but Settings requires a session
# secret; this stand-in lets the configuration line judge everything else.
_STAND_IN_SESSION_SECRET = "st-middleware-check-stand-in-session-secret"  # noqa: S105
# Valid keys used only to run Settings' own session-secret validation on
# the real secret, separately from the merchant's keys (see
# check_session_secret).
_PROBE_KEYS = ("pk_test_check", "sk_test_check")
_KEY_CODES = frozenset({"invalid_credentials", "unauthenticated"})
_USER_AGENT = f"st-middleware/{__version__} (check)"
_SERVER_TEXT_LIMIT = 160


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report: which check, its status, and what to do."""

    check: str
    status: Status
    message: str

    def line(self) -> str:
        # Fixed-width columns so `grep '^FAIL'` and `grep ' keys '` both work.
        return f"{self.status:<4}  {self.check:<14}  {self.message}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Every result, plus the checks that could not run and why."""

    results: tuple[CheckResult, ...]
    not_checked: tuple[str, ...] = ()
    reason: str = ""

    @property
    def passed(self) -> bool:
        """True when no line is ``FAIL`` (the CLI's exit status 0)."""
        return all(result.status != "FAIL" for result in self.results)

    def result(self, check: str) -> CheckResult | None:
        return next((r for r in self.results if r.check == check), None)

    def lines(self) -> list[str]:
        counts = {
            status: sum(r.status == status for r in self.results)
            for status in ("ok", "warn", "FAIL")
        }
        summary = f"summary: {counts['ok']} ok, {counts['warn']} warn, {counts['FAIL']} FAIL"
        if self.not_checked:
            summary += f"; not checked: {', '.join(self.not_checked)} ({self.reason})"
        return [result.line() for result in self.results] + [summary]


# -- the report --------------------------------------------------------------------------


def run_checks(
    *,
    publishable_key: str | None = None,
    secret_key: str | None = None,
    base_url: str | None = None,
    redirect_uri: str | None = None,
    callback_path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> CheckReport:
    """Run every check in order; keywords win over ``SMALL_TRANSFERS_*`` in ``environ``.

    ``transport`` replaces httpx's network transport (tests only).
    """
    env = os.environ if environ is None else environ
    secret = secret_key if secret_key is not None else env.get(_ENV_SECRET_KEY, "")
    results: list[CheckResult] = []
    not_checked: tuple[str, ...] = ()
    reason = ""

    configured, settings = check_configuration(
        publishable_key=publishable_key,
        secret_key=secret_key,
        base_url=base_url,
        callback_path=callback_path,
        environ=env,
    )
    results.append(configured)
    results.append(check_session_secret(env))
    if settings is None:
        not_checked, reason = ("reachable", "keys", "test-live"), "fix the configuration first"
    else:
        with _client(timeout, transport) as client:
            reachable = check_reachable(settings.base_url, client)
            results.append(reachable)
            if reachable.status == "FAIL":
                not_checked, reason = ("keys",), "Small Transfers is not reachable"
            else:
                results.append(check_keys(settings, client, timeout))
        results.append(check_test_live(settings))
    results.append(check_redirect_uri(redirect_uri, callback_path or DEFAULT_CALLBACK_PATH))

    return CheckReport(
        tuple(
            CheckResult(r.check, r.status, _redact(_one_line(r.message), secret)) for r in results
        ),
        not_checked,
        reason,
    )


def _client(timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    # Like the middleware's client: explicit timeouts, no redirects followed
    # (a redirect is reported, since the middleware would not follow it
    # either), and the environment's proxy settings honoured.
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        headers={"User-Agent": _USER_AGENT},
        transport=transport,
    )


# -- configuration -----------------------------------------------------------------------


def check_configuration(
    *,
    publishable_key: str | None,
    secret_key: str | None,
    base_url: str | None,
    callback_path: str | None,
    environ: Mapping[str, str],
) -> tuple[CheckResult, Settings | None]:
    """Validate the settings with the middleware's own rules; the settings if they pass."""
    options: dict[str, Any] = {}
    if callback_path is not None:
        options["callback_path"] = callback_path
    try:
        settings = Settings.from_options(
            publishable_key=publishable_key,
            secret_key=secret_key,
            session_secret=_STAND_IN_SESSION_SECRET,
            base_url=base_url,
            pricing=None,
            options=options,
            environ=environ,
        )
    except ConfigurationError as exc:
        # Written for merchants and free of secrets by contract (see _config).
        return CheckResult("configuration", "FAIL", str(exc)), None

    if base_url is not None:
        source = "--base-url"
    elif environ.get(_ENV_BASE_URL, "").strip():
        source = _ENV_BASE_URL
    else:
        source = "the default for this key"
    described = (
        f"publishable key {settings.publishable_key}, secret key "
        f"{_secret_hint(settings.secret_key)}, base URL {settings.base_url} (from {source})"
    )
    parts = urlsplit(settings.base_url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        return (
            CheckResult(
                "configuration",
                "warn",
                f"{described}: plain http to a host that is not this machine sends the "
                "secret key unencrypted with every charge; use https",
            ),
            settings,
        )
    return CheckResult("configuration", "ok", described), settings


def check_session_secret(environ: Mapping[str, str]) -> CheckResult:
    """Whether ``SMALL_TRANSFERS_SESSION_SECRET`` would satisfy the middleware.

    ``check`` itself does not need it, so its absence is a warning; a secret
    that is set but refused is a failure (the middleware would not start).
    """
    raw = environ.get(_ENV_SESSION_SECRET, "")
    if not raw.strip():
        return CheckResult(
            "session-secret",
            "warn",
            f"not set (needed to run the middleware): set {_ENV_SESSION_SECRET}, or pass "
            "session_secret=...; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        )
    try:
        # Settings' own rules (length, comma-separated rotation list), run with
        # stand-in keys so that only the session secret is judged here.
        settings = Settings.from_options(
            publishable_key=_PROBE_KEYS[0],
            secret_key=_PROBE_KEYS[1],
            session_secret=None,
            base_url=f"https://{TEST_HOST}",
            pricing=None,
            options={},
            environ={_ENV_SESSION_SECRET: raw},
        )
    except ConfigurationError as exc:
        return CheckResult("session-secret", "FAIL", str(exc))
    count = len(settings.session_secrets)
    if count == 1:
        return CheckResult("session-secret", "ok", f"set in {_ENV_SESSION_SECRET}")
    return CheckResult(
        "session-secret",
        "ok",
        f"{count} secrets set in {_ENV_SESSION_SECRET}: the first seals, all open (rotation)",
    )


# -- the network -------------------------------------------------------------------------


def check_reachable(base_url: str, client: httpx.Client) -> CheckResult:
    """``GET {base_url}/``: any HTTP answer means the host is reachable."""
    url = base_url + "/"
    try:
        with client.stream("GET", url) as response:
            status = response.status_code
            location = response.headers.get("location")
    except httpx.HTTPError as exc:
        return CheckResult("reachable", "FAIL", f"{url}: {describe_transport_error(exc)}")

    if 300 <= status < 400 and location:
        target = _origin(urljoin(url, location))
        if target is not None and target != _origin(url):
            return CheckResult(
                "reachable",
                "warn",
                f"{url} answered {status}, a redirect to {target}: API calls are not "
                f"redirected, so set the base URL to {target}",
            )
    if status >= 500:
        return CheckResult(
            "reachable",
            "warn",
            f"{url} answered {status}: Small Transfers is up but unwell; try again later",
        )
    return CheckResult("reachable", "ok", f"{url} answered HTTP {status}")


def check_keys(
    settings: Settings, client: httpx.Client, timeout: float = DEFAULT_TIMEOUT
) -> CheckResult:
    """Ask Small Transfers whether it knows the keys, without charging anybody.

    There is no "who am I" endpoint, so the check exchanges an authorization
    code that cannot exist: Small Transfers checks the keys first, so a
    refused *code* (400/404/410/422) proves the keys, and a 401 refutes them.
    """
    url = settings.api_url + "/oauth/tokens"
    made_up_code = "st-check-" + secrets.token_urlsafe(16)
    body = {
        "grantType": "authorization_code",
        "publishableKey": settings.publishable_key,
        "secretKey": settings.secret_key,
        "authorizationCode": made_up_code,
    }
    try:
        status, headers, data = _post_json(client, url, body, timeout)
    except httpx.HTTPError as exc:
        return CheckResult("keys", "FAIL", f"POST {url}: {describe_transport_error(exc)}")

    code = data.get("code") if isinstance(data, dict) else None
    code = code if isinstance(code, str) else None
    said = _server_text(data)
    answer = f"{status} {code}" if code else f"{status}"
    if 300 <= status < 400:
        target = _origin(urljoin(url, headers.get("location", ""))) or "elsewhere"
        return CheckResult(
            "keys",
            "FAIL",
            f"POST {url} answered {status}, a redirect to {target}: the middleware does not "
            "follow redirects; set the base URL to where Small Transfers really is",
        )
    if status >= 500:
        return CheckResult(
            "keys",
            "FAIL",
            f"Small Transfers answered {answer}{said}: it cannot check keys (nor charge) "
            "right now; try again later",
        )
    if data is None:
        return CheckResult(
            "keys",
            "FAIL",
            f"POST {url} answered {status} without a JSON body: no Small Transfers API there; "
            "check the base URL",
        )
    if status == 401 or code in _KEY_CODES:
        return CheckResult(
            "keys",
            "FAIL",
            f"refused ({answer}): Small Transfers does not know this publishable/secret key "
            "pair; copy both keys again from the same merchant dashboard (test keys for the "
            "test host, live keys for the live one)",
        )
    if status == 403:
        return CheckResult(
            "keys",
            "FAIL",
            f"the keys are known but the account may not take payments ({answer}){said}; "
            "see your Small Transfers merchant dashboard",
        )
    if status in (400, 404, 410, 422):
        return CheckResult(
            "keys",
            "ok",
            f"accepted: Small Transfers refused only the made-up sign-in code ({answer})",
        )
    if 200 <= status < 300:
        return CheckResult(
            "keys",
            "FAIL",
            f"POST {url} accepted a made-up sign-in code ({status}): this does not behave "
            "like Small Transfers; check the base URL",
        )
    return CheckResult("keys", "FAIL", f"unexpected answer {answer}{said} from POST {url}")


def _post_json(
    client: httpx.Client, url: str, body: dict[str, str], timeout: float
) -> tuple[int, httpx.Headers, Any]:
    """POST ``body``; the status, headers and JSON object of the reply (None if not JSON)."""
    request = client.build_request("POST", url, json=body, headers={"Accept": "application/json"})
    # The middleware's own reader: a size cap and an overall deadline, so a
    # server that trickles or floods cannot hang the check.
    collector = BodyCollector(timeout)
    response = client.send(request, stream=True)
    try:
        for chunk in response.iter_bytes():
            if not collector.feed(chunk):
                break
    finally:
        response.close()
    reply = collector.reply(response.status_code)
    data: Any = None
    if "json" in response.headers.get("content-type", "").lower() and not reply.truncated:
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = None
    return response.status_code, response.headers, data if isinstance(data, dict) else None


def describe_transport_error(exc: httpx.HTTPError) -> str:
    """Say which of DNS, connection refused, TLS or timeout kept us from an answer."""
    causes = list(_causes(exc))
    if isinstance(exc, httpx.TimeoutException):
        phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for an answer"
        return (
            f"timeout: no answer within the time allowed while {phase}; a firewall or a "
            "proxy may be dropping the traffic, or the host is down"
        )
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return (
                f"DNS: the host name does not resolve ({cause.strerror or cause}); check the "
                "spelling of the base URL and this machine's DNS"
            )
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return (
                "connection refused: nothing listens on that host and port; check the base "
                "URL's port, or start the emulator (python -m st_middleware.emulator)"
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS: the server's certificate was not accepted ({cause.verify_message}); a "
                "proxy that intercepts TLS needs its CA in SSL_CERT_FILE"
            )
        if isinstance(cause, ssl.SSLError):
            return (
                f"TLS: the handshake failed ({cause.reason or cause}); does the server speak "
                "https on that port (http:// for the emulator)?"
            )
    if isinstance(exc, httpx.ProxyError):
        return f"proxy: the proxy refused the connection ({exc}); check HTTPS_PROXY"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc})"
    return f"the connection failed ({type(exc).__name__}: {exc})"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    # httpx wraps httpcore's error, which wraps the socket or ssl error.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# -- checks without the network ----------------------------------------------------------


def check_test_live(settings: Settings) -> CheckResult:
    """Test keys belong with the test host and live keys with the live one."""
    pk, sk = settings.publishable_key, settings.secret_key
    host = urlsplit(settings.base_url).hostname or ""
    mode, secret_mode = _mode(pk, "pk"), _mode(sk, "sk")
    test_url, live_url = f"https://{TEST_HOST}", f"https://{LIVE_HOST}"

    if mode is None:
        return CheckResult(
            "test-live",
            "warn",
            "the publishable key starts with neither pk_test_ nor pk_live_: cannot tell "
            "test mode from live; check you copied the publishable key",
        )
    if secret_mode is not None and secret_mode != mode:
        return CheckResult(
            "test-live",
            "warn",
            f"a {mode} publishable key (pk_{mode}_) with a {secret_mode} secret key "
            f"(sk_{secret_mode}_): use the two keys of one mode",
        )
    if mode == "test" and host == LIVE_HOST:
        return CheckResult(
            "test-live",
            "warn",
            f"a test key (pk_test_) against the live host {live_url}: set "
            f"{_ENV_BASE_URL}={test_url}, or use your live keys",
        )
    if mode == "live" and host == TEST_HOST:
        return CheckResult(
            "test-live",
            "warn",
            f"a live key (pk_live_) against the test host {test_url}: unset "
            f"{_ENV_BASE_URL} (the live host is the default), or use your test keys",
        )
    if host == TEST_HOST:
        return CheckResult("test-live", "ok", "test keys against the test host: no real money")
    if host == LIVE_HOST:
        return CheckResult("test-live", "ok", "live keys against the live host: real charges")
    if mode == "live":
        return CheckResult(
            "test-live",
            "warn",
            f"live keys go to {settings.base_url}, which is not {LIVE_HOST}: make sure you "
            "trust it with your live secret key",
        )
    place = "this machine (the emulator?)" if _is_loopback(host) else "a host of your own"
    return CheckResult("test-live", "ok", f"test keys against {settings.base_url}, {place}")


def check_redirect_uri(redirect_uri: str | None, callback_path: str) -> CheckResult:
    """A configured redirect URI must lead the browser back to the callback route."""
    if redirect_uri is None:
        return CheckResult(
            "redirect-uri",
            "ok",
            f"not set: built from each request as https://YOUR-HOST{callback_path} (after "
            "any mount prefix); register that URL at Small Transfers",
        )
    parts = urlsplit(redirect_uri)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host:
        return CheckResult(
            "redirect-uri",
            "FAIL",
            f"{redirect_uri!r} is not an absolute http(s) URL: write it in full, e.g. "
            f"https://shop.example{callback_path}",
        )
    if parts.fragment or redirect_uri.endswith("#"):
        return CheckResult(
            "redirect-uri",
            "FAIL",
            f"{redirect_uri} has a #fragment, which OAuth redirect URIs may not have",
        )
    if not parts.path.endswith(callback_path):
        return CheckResult(
            "redirect-uri",
            "FAIL",
            f"{redirect_uri}: its path does not end with the callback path {callback_path}, "
            "so the browser would come back to a page the middleware does not answer",
        )
    if parts.scheme == "http" and not _is_loopback(host):
        return CheckResult(
            "redirect-uri",
            "warn",
            f"{redirect_uri} is plain http on a host that is not this machine: browsers keep "
            "no Secure session cookie there; use https",
        )
    return CheckResult(
        "redirect-uri",
        "ok",
        f"{redirect_uri}: register exactly this URL at Small Transfers",
    )


# -- helpers -----------------------------------------------------------------------------


def _mode(key: str, kind: str) -> Literal["test", "live"] | None:
    if key.startswith(f"{kind}_test_"):
        return "test"
    if key.startswith(f"{kind}_live_"):
        return "live"
    return None


def _secret_hint(secret: str) -> str:
    # The mode prefix helps tell keys apart; anything after it is secret.
    for prefix in ("sk_test_", "sk_live_"):
        if secret.startswith(prefix):
            return prefix + "..."
    return "(set, not shown)"


def _redact(text: str, secret: str) -> str:
    # A last guard: no message may carry the secret key, wherever it came
    # from (a server echoing the request, a key pasted into the wrong field).
    # Very short values would garble the text and are no secret anyway.
    secret = secret.strip()
    if len(secret) >= 8 and secret in text:
        text = text.replace(secret, _secret_hint(secret))
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _one_line(text: str) -> str:
    # One line per check, and no terminal escape sequences from a server's text.
    return " ".join(_CONTROL.sub(" ", text).split())


def _server_text(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    for key in ("detail", "message", "title"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return f': "{_one_line(value)[:_SERVER_TEXT_LIMIT]}"'
    return ""


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
