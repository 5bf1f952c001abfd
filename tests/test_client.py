"""SmallTransfersAuth, the customer's side of the device flow.

First against a scripted site under ``httpx.MockTransport`` (every answer of
the token route, the waits on a fake clock, the token file), then against
the real middleware and the real emulator in-process, with the customer's
browser played by an httpx client that fills in the verification forms.
The same flow in a real Chromium is tests/browser/test_device_flow.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.client import (
    AccessDenied,
    DeviceAuthorization,
    DeviceCodeExpired,
    DeviceFlowError,
    DeviceFlowTimeout,
    SmallTransfersAuth,
    TokenFileError,
    default_token_file,
)
from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import charges, emulator_options, new_customer, sign_in

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SHOP = "http://127.0.0.1:8000"


# -- a scripted site ------------------------------------------------------------------------


class FakeSite:
    """A wrapped app as a program meets it: ``/api/*`` priced, the rest free, the device routes.

    ``polls`` is what the token route answers, in order: an RFC error code, or
    ``"token"`` for a fresh token. ``valid`` holds the tokens ``/api/*`` accepts.
    """

    def __init__(
        self,
        *polls: str,
        origin: str = SHOP,
        mount: str = "",
        interval: int = 5,
        expires_in: int = 600,
    ) -> None:
        self.polls = list(polls)
        self.origin = origin
        self.mount = mount
        self.grant = {"interval": interval, "expires_in": expires_in}
        self.valid: set[str] = set()
        self.seen: list[httpx.Request] = []
        self.device_code = secrets.token_urlsafe(16)
        # Holds the first answers to /api/* until this many requests arrived (races).
        self.gate: threading.Barrier | None = None
        # Every token refused, new ones too (revoked as soon as issued).
        self.refuse_all = False

    def url(self, path: str) -> str:
        return f"{self.origin}{self.mount}{path}"

    def paths(self) -> list[str]:
        return [request.url.path for request in self.seen]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # A copy: the auth sends the same request object again, with the token added.
        self.seen.append(
            httpx.Request(
                request.method, request.url, headers=request.headers, content=request.content
            )
        )
        path = request.url.path.removeprefix(self.mount)
        if path == "/smalltransfers/device":
            return httpx.Response(
                200,
                json={
                    "device_code": self.device_code,
                    "user_code": "BCDF-GHJK",
                    "verification_uri": self.url("/smalltransfers/device/verify"),
                    "verification_uri_complete": self.url(
                        "/smalltransfers/device/verify?user_code=BCDFGHJK"
                    ),
                    "token_url": self.url("/smalltransfers/token"),
                    **self.grant,
                },
                headers={"Cache-Control": "no-store"},
            )
        if path == "/smalltransfers/token":
            answer = self.polls.pop(0)
            if answer != "token":
                return httpx.Response(400, json={"error": answer})
            token = secrets.token_urlsafe(24)
            self.valid.add(token)
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": 3600}
            )
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not path.startswith("/api/"):
            return httpx.Response(200, json={"free": True, "bearer": bool(bearer)})
        if bearer in self.valid and not self.refuse_all:
            return httpx.Response(200, json={"quote": "A small transfer today..."})
        if self.gate is not None:
            self.gate.wait(timeout=10)
        challenge = 'Bearer realm="smalltransfers"' + (', error="invalid_token"' if bearer else "")
        problem = {
            "code": "invalid_token" if bearer else "sign_in_required",
            "device_authorization_url": self.url("/smalltransfers/device"),
            "token_url": self.url("/smalltransfers/token"),
            "price_micros": 500,
        }
        return httpx.Response(
            401,
            content=json.dumps(problem).encode(),
            headers={"Content-Type": "application/problem+json", "WWW-Authenticate": challenge},
        )


class FakeClock:
    """Time that passes only when the flow waits; every wait recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@dataclass
class Program:
    """An auth on a fake clock, what it showed, and a client through it."""

    site: FakeSite
    auth: SmallTransfersAuth
    clock: FakeClock
    shown: list[DeviceAuthorization] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(auth=self.auth, transport=httpx.MockTransport(self.site))


def program(site: FakeSite, **options: Any) -> Program:
    clock = FakeClock()
    shown: list[DeviceAuthorization] = []
    options = {"remember": False, "client_name": "test bot", "on_code": shown.append, **options}
    auth = SmallTransfersAuth(
        clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep, **options
    )
    return Program(site, auth, clock, shown)


def form(request: httpx.Request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.content.decode()).items()}


# -- the flow, step by step ----------------------------------------------------------------


def test_a_priced_request_runs_the_flow_and_is_sent_again_with_the_token() -> None:
    site = FakeSite("authorization_pending", "authorization_pending", "token")
    bot = program(site)
    with bot.client() as client:
        answer = client.get(site.url("/api/quote"))

    assert answer.status_code == 200
    assert answer.json() == {"quote": "A small transfer today..."}
    assert site.paths() == [
        "/api/quote",
        "/smalltransfers/device",
        *["/smalltransfers/token"] * 3,
        "/api/quote",
    ]
    first, device, *polls, retried = site.seen
    assert "authorization" not in first.headers
    assert form(device) == {"client_name": "test bot"}
    assert all(
        form(poll) == {"grant_type": GRANT, "device_code": site.device_code} for poll in polls
    )
    assert retried.headers["authorization"] == f"Bearer {next(iter(site.valid))}"
    assert bot.clock.waits == [5, 5, 5]  # the interval before every poll, never faster
    (shown,) = bot.shown
    assert shown.user_code == "BCDF-GHJK"
    assert shown.verification_uri_complete == site.url(
        "/smalltransfers/device/verify?user_code=BCDFGHJK"
    )
    assert shown.site == f"{SHOP}/"
    assert shown.client_name == "test bot"


def test_later_requests_carry_the_token_and_never_ask_again() -> None:
    site = FakeSite("token")
    bot = program(site)
    with bot.client() as client:
        client.get(site.url("/api/quote"))
        seen = len(site.seen)
        assert client.get(site.url("/api/other")).status_code == 200
        assert client.get(site.url("/free")).json() == {"free": True, "bearer": True}
    assert site.paths()[seen:] == ["/api/other", "/free"]
    assert len(bot.shown) == 1


def test_the_apps_answers_stream_through_unread() -> None:
    site = FakeSite("token")

    def streaming(request: httpx.Request) -> httpx.Response:
        answer = site(request)
        if answer.status_code != 200 or "/api/" not in request.url.path:
            return answer
        return httpx.Response(200, content=iter([b"a streamed ", b"essay"]))  # read on demand

    bot = program(site)
    transport = httpx.MockTransport(streaming)
    with (
        httpx.Client(auth=bot.auth, transport=transport) as client,
        client.stream("GET", site.url("/api/essay")) as answer,
    ):
        assert answer.status_code == 200
        assert not answer.is_stream_consumed  # the program reads it as it is written
        assert list(answer.iter_bytes()) == [b"a streamed ", b"essay"]


def test_slow_down_adds_five_seconds_to_every_later_wait() -> None:
    site = FakeSite("slow_down", "slow_down", "authorization_pending", "token")
    bot = program(site)
    with bot.client() as client:
        assert client.get(site.url("/api/quote")).status_code == 200
    assert bot.clock.waits == [5, 10, 15, 15]


def test_a_site_in_trouble_is_polled_less_often_not_given_up_on() -> None:
    site = FakeSite("temporarily_unavailable", "token")

    def flaky(request: httpx.Request) -> httpx.Response:
        answer = site(request)
        if answer.status_code == 400 and request.url.path.endswith("/token"):
            return httpx.Response(503, json=answer.json(), headers={"Retry-After": "5"})
        return answer

    bot = program(site)
    with httpx.Client(auth=bot.auth, transport=httpx.MockTransport(flaky)) as client:
        assert client.get(site.url("/api/quote")).status_code == 200
    assert bot.clock.waits == [5, 10]


def test_a_denied_program_gets_access_denied_and_no_token() -> None:
    site = FakeSite("authorization_pending", "access_denied")
    bot = program(site)
    with bot.client() as client, pytest.raises(AccessDenied) as denied:
        client.get(site.url("/api/quote"))
    assert denied.value.error == "access_denied"
    assert isinstance(denied.value, DeviceFlowError)
    assert site.paths().count("/api/quote") == 1  # never sent again
    assert bot.auth.sites() == []


def test_a_code_the_site_says_has_lapsed_raises_device_code_expired() -> None:
    site = FakeSite("authorization_pending", "expired_token")
    with program(site).client() as client, pytest.raises(DeviceCodeExpired) as lapsed:
        client.get(site.url("/api/quote"))
    assert lapsed.value.error == "expired_token"


def test_polling_stops_when_the_code_lapses_without_asking_past_it() -> None:
    site = FakeSite(*["authorization_pending"] * 10, expires_in=12)
    bot = program(site)
    with bot.client() as client, pytest.raises(DeviceCodeExpired):
        client.get(site.url("/api/quote"))
    assert bot.clock.waits == [5, 5]  # a third poll would come at 15 s, past the 12 s
    assert site.paths().count("/smalltransfers/token") == 2


def test_the_total_timeout_raises_with_the_last_answer() -> None:
    site = FakeSite(*["authorization_pending"] * 10)
    bot = program(site, timeout=21)
    with bot.client() as client, pytest.raises(DeviceFlowTimeout) as timed_out:
        client.get(site.url("/api/quote"))
    assert timed_out.value.error == "authorization_pending"
    assert bot.clock.waits == [5, 5, 5, 5]


def test_any_other_answer_of_the_token_route_ends_the_flow_with_its_error() -> None:
    site = FakeSite("invalid_grant")
    with program(site).client() as client, pytest.raises(DeviceFlowError) as failed:
        client.get(site.url("/api/quote"))
    assert type(failed.value) is DeviceFlowError
    assert failed.value.error == "invalid_grant"


def test_a_refused_token_is_dropped_and_the_flow_runs_again_once_per_request() -> None:
    site = FakeSite("token", "token", "token")
    bot = program(site)
    with bot.client() as client:
        client.get(site.url("/api/quote"))
        site.valid.clear()  # signed out elsewhere, expired, or revoked on Small Transfers
        assert client.get(site.url("/api/quote")).status_code == 200
        assert len(bot.shown) == 2

        # The fresh token refused too: one flow for this request, then its 401 goes
        # back to the caller (no loop asking the customer again and again).
        site.refuse_all = True
        last = client.get(site.url("/api/quote"))
    assert last.status_code == 401
    assert 'error="invalid_token"' in last.headers["www-authenticate"]
    assert len(bot.shown) == 3
    assert site.paths().count("/smalltransfers/device") == 3


def test_free_requests_and_other_401s_pass_untouched() -> None:
    site = FakeSite()

    def app_401(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login-required":
            return httpx.Response(401, json={"detail": "the app's own login"})
        return site(request)

    bot = program(site)
    with httpx.Client(auth=bot.auth, transport=httpx.MockTransport(app_401)) as client:
        assert client.get(site.url("/free")).json() == {"free": True, "bearer": False}
        own = client.get(site.url("/login-required"))
    assert own.status_code == 401
    assert own.json() == {"detail": "the app's own login"}
    assert site.paths() == ["/free"]  # no device route asked, nothing shown
    assert bot.shown == []


def test_a_device_flow_on_another_origin_is_refused() -> None:
    site = FakeSite()

    def phishing(request: httpx.Request) -> httpx.Response:
        problem = {"device_authorization_url": "https://other-shop.example/smalltransfers/device"}
        return httpx.Response(
            401, json=problem, headers={"Content-Type": "application/problem+json"}
        )

    bot = program(site)
    transport = httpx.MockTransport(phishing)
    with (
        httpx.Client(auth=bot.auth, transport=transport) as client,
        pytest.raises(DeviceFlowError) as refused,
    ):
        client.get(site.url("/api/quote"))
    assert refused.value.error == "cross_origin"
    assert bot.shown == []


def test_plain_http_is_for_loopback_unless_allowed() -> None:
    site = FakeSite("token", origin="http://shop.example")
    with program(site).client() as client, pytest.raises(DeviceFlowError) as refused:
        client.get(site.url("/api/quote"))
    assert refused.value.error == "insecure_transport"
    assert "/smalltransfers/device" not in site.paths()

    with program(site, allow_http=True).client() as client:
        assert client.get(site.url("/api/quote")).status_code == 200
        assert client.get(site.url("/api/quote")).status_code == 200
    assert site.paths().count("/smalltransfers/device") == 1


def test_a_token_goes_only_to_its_own_site_and_mount() -> None:
    site = FakeSite("token", mount="/shop")
    bot = program(site)
    with bot.client() as client:
        assert client.get(site.url("/api/quote")).status_code == 200
        assert bot.auth.sites() == [f"{SHOP}/shop/"]
        client.get(f"{SHOP}/blog/free")  # another app on the same host
        client.get("http://localhost:8000/shop/free")  # another origin
        client.get(site.url("/free"))
    carried = [bool(r.headers.get("authorization")) for r in site.seen[-3:]]
    assert carried == [False, False, True]


def test_requests_that_meet_a_401_together_share_one_approval() -> None:
    site = FakeSite("token", "token")
    site.gate = threading.Barrier(2)  # both first answers go out only once both asked
    shown: list[DeviceAuthorization] = []

    def slow_human(device: DeviceAuthorization) -> None:
        shown.append(device)
        threading.Event().wait(0.3)  # the other request meets its 401 meanwhile

    bot = program(site, on_code=slow_human)
    answers: list[int] = []

    def ask() -> None:
        with bot.client() as client:
            answers.append(client.get(site.url("/api/quote")).status_code)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert answers == [200, 200]
    assert site.paths().count("/smalltransfers/device") == 1
    assert len(shown) == 1


# -- the token file --------------------------------------------------------------------------


def test_the_token_file_is_created_for_its_owner_only_and_used_by_the_next_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config" / "st-middleware" / "tokens.json"
    site = FakeSite("token")
    with program(site, token_file=path, remember=True).client() as client:
        client.get(site.url("/api/quote"))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    kept = json.loads(path.read_text())["sites"]
    assert list(kept) == [f"{SHOP}/"]
    assert kept[f"{SHOP}/"]["access_token"] in site.valid
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temporary left

    later = program(site, token_file=path, remember=True)  # the program's next run
    with later.client() as client:
        seen = len(site.seen)
        assert client.get(site.url("/api/quote")).status_code == 200
    assert site.paths()[seen:] == ["/api/quote"]
    assert later.shown == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_a_token_file_others_can_open_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    site = FakeSite("token")
    with program(site, token_file=path, remember=True).client() as client:
        client.get(site.url("/api/quote"))
    path.chmod(mode)
    with (
        program(site, token_file=path, remember=True).client() as client,
        pytest.raises(TokenFileError, match=f"mode {mode:o}"),
    ):
        client.get(site.url("/api/quote"))


def test_a_symlink_or_garbage_in_place_of_the_token_file_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    elsewhere.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(elsewhere)
    site = FakeSite("token")
    with (
        program(site, token_file=link, remember=True).client() as client,
        pytest.raises(TokenFileError, match="cannot open"),
    ):
        client.get(site.url("/api/quote"))
    with (
        program(site, token_file=elsewhere, remember=True).client() as client,
        pytest.raises(TokenFileError, match="not a token file"),
    ):
        client.get(site.url("/api/quote"))


def test_an_expired_token_is_not_sent_and_is_pruned(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    site = FakeSite("token")
    with program(site, token_file=path, remember=True).client() as client:
        client.get(site.url("/api/quote"))
    data = json.loads(path.read_text())
    data["sites"][f"{SHOP}/"]["expires_at"] = 1.0
    path.write_text(json.dumps(data))
    site.polls.append("token")
    with program(site, token_file=path, remember=True).client() as client:
        seen = len(site.seen)
        client.get(site.url("/api/quote"))
    assert "authorization" not in site.seen[seen].headers
    kept = json.loads(path.read_text())["sites"][f"{SHOP}/"]
    assert kept["expires_at"] > 1.0


def test_the_default_token_file_is_in_the_users_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/ada/.cfg")
    assert default_token_file() == Path("/home/ada/.cfg/st-middleware/tokens.json")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_token_file() == Path.home() / ".config" / "st-middleware" / "tokens.json"
    assert SmallTransfersAuth().token_file == default_token_file()  # nothing read or written yet
    assert SmallTransfersAuth(remember=False).token_file is None


def test_forget_drops_tokens_here_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    site = FakeSite("token")
    bot = program(site, token_file=path, remember=True)
    with bot.client() as client:
        client.get(site.url("/api/quote"))
    bot.auth.forget(site.url("/anything"))
    assert bot.auth.sites() == []
    assert json.loads(path.read_text())["sites"] == {}


# -- secrets stay secret ----------------------------------------------------------------------


def test_no_token_or_device_code_in_logs_output_or_reprs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    site = FakeSite("authorization_pending", "token")
    clock = FakeClock()
    auth = SmallTransfersAuth(  # the default on_code: printed to standard error
        token_file=tmp_path / "tokens.json", clock=clock, sleep=clock.sleep, client_name="bot"
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(site)) as client:
        client.get(site.url("/api/quote"))
    (token,) = site.valid

    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(
        f"Open {site.url('/smalltransfers/device/verify?user_code=BCDFGHJK')} and enter BCDF-GHJK"
    )
    assert "device authorization" in caplog.text  # it does log, just nothing secret
    for secret in (token, site.device_code):
        assert secret not in caplog.text
        assert secret not in printed.err
        assert secret not in repr(auth)
    assert (
        repr(auth) == f"SmallTransfersAuth(client_name='bot', tokens='{tmp_path / 'tokens.json'}')"
    )


def test_an_async_on_code_needs_an_async_client() -> None:
    site = FakeSite("token")

    async def relay(device: DeviceAuthorization) -> None:
        pass  # pragma: no cover - never awaited

    bot = program(site, on_code=relay)
    with bot.client() as client, pytest.raises(TypeError, match="AsyncClient"):
        client.get(site.url("/api/quote"))


# -- async --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_path_awaits_its_waits_and_an_async_on_code() -> None:
    site = FakeSite("authorization_pending", "slow_down", "token")
    clock = FakeClock()
    relayed: list[str] = []

    def blocking_sleep(seconds: float) -> None:
        raise AssertionError("the async path slept the blocking way")

    async def relay(device: DeviceAuthorization) -> None:  # e.g. a chat message to the human
        relayed.append(device.user_code)

    auth = SmallTransfersAuth(
        remember=False,
        on_code=relay,
        clock=clock,
        sleep=blocking_sleep,
        async_sleep=clock.async_sleep,
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(site)) as client:
        answer = await client.get(site.url("/api/quote"))
        again = await client.get(site.url("/api/quote"))
    assert (answer.status_code, again.status_code) == (200, 200)
    assert relayed == ["BCDF-GHJK"]
    assert clock.waits == [5, 5, 10]


@pytest.mark.anyio
async def test_the_async_path_raises_the_same_errors() -> None:
    site = FakeSite("access_denied")
    clock = FakeClock()
    auth = SmallTransfersAuth(
        remember=False, on_code=lambda device: None, clock=clock, async_sleep=clock.async_sleep
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(site)) as client:
        with pytest.raises(AccessDenied):
            await client.get(site.url("/api/quote"))


# -- against the real middleware and emulator ---------------------------------------------------


class _Page(HTMLParser):
    """The forms on a page (action, fields, buttons by id) and every element id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.forms: list[tuple[str, dict[str, str], dict[str, tuple[str, str]]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if "id" in attr:
            self.ids.add(attr["id"])
        if tag == "form":
            self.forms.append((attr.get("action", ""), {}, {}))
        elif self.forms and tag == "input" and attr.get("name"):
            self.forms[-1][1][attr["name"]] = attr.get("value", "")
        elif self.forms and tag == "button" and attr.get("id"):
            self.forms[-1][2][attr["id"]] = (attr.get("name", ""), attr.get("value", ""))


Visit = Generator[tuple[str, str, dict[str, str]], httpx.Response, str]


def customer_answers(emu: Emulator, customer: Customer, url: str, press: str) -> Visit:
    """What the customer's browser does from ``url`` on: yields (method, URL, form), gets pages.

    Presses Continue, signs in with Small Transfers when sent there (the
    emulator's Allow, as the testing kit's ``sign_in`` does it), then presses
    ``press`` (``st-allow`` or ``st-deny``); returns the last page's text.
    """
    answer = yield ("GET", url, {})
    for _ in range(10):
        if answer.is_redirect:
            location = answer.url.join(answer.headers["location"])
            if str(location).startswith(emu.url):
                query = parse_qs(location.query.decode())
                redirect_uri, state = query["redirect_uri"][0], query["state"][0]
                code = emu.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
                location = httpx.URL(redirect_uri, params={"code": code, "state": state})
            answer = yield ("GET", str(location), {})
            continue
        page = _Page(answer.text)
        if "st-device-done" in page.ids:
            return answer.text
        for action, fields, buttons in page.forms:
            button = next((b for b in ("st-continue", press) if b in buttons), None)
            if button is not None:
                name, value = buttons[button]
                answer = yield ("POST", str(answer.url.join(action)), {**fields, name: value})
                break
        else:
            raise AssertionError(f"no way on from this page: {answer.text[:500]}")
    raise AssertionError("the verification pages never ended")


def approve(browser: httpx.Client, visit: Visit) -> str:
    answer: Any = None
    try:
        while True:
            method, url, fields = visit.send(answer)
            answer = browser.request(method, url, data=fields or None)
    except StopIteration as done:
        return str(done.value)


async def async_approve(browser: httpx.AsyncClient, visit: Visit) -> str:
    answer: Any = None
    try:
        while True:
            method, url, fields = visit.send(answer)
            answer = await browser.request(method, url, data=fields or None)
    except StopIteration as done:
        return str(done.value)


def quote_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    customer, charge = environ["smalltransfers.customer"], environ["smalltransfers.charge"]
    start_response("200 OK", [("Content-Type", "application/json")])
    body = {"for": customer.id if customer else None, "paid": charge.amount_micros if charge else 0}
    return [json.dumps(body).encode()]


PRICING = {"/api/*": 500}
REAL = "http://localhost"


@pytest.fixture
def shop(st_emulator: Emulator) -> Iterator[SmallTransfersWSGI]:
    mw = SmallTransfersWSGI(
        quote_app, **emulator_options(st_emulator, pricing=PRICING, device_interval=1)
    )
    yield mw
    mw.close()


def real_client(app: Any, auth: httpx.Auth | None = None) -> httpx.Client:
    transport = httpx.WSGITransport(app=app, remote_addr="127.0.0.1")
    return httpx.Client(transport=transport, base_url=REAL, auth=auth)


def no_wait(seconds: float) -> None:
    """The first poll comes right after an approval given in ``on_code``: no need to wait."""


async def async_no_wait(seconds: float) -> None:
    """:func:`no_wait`, awaited."""


def approving(
    shop: Any,
    emu: Emulator,
    customer: Customer,
    press: str = "st-allow",
    pages: list[str] | None = None,
) -> Any:
    """An ``on_code`` that approves at once, from a browser that is not signed in yet."""

    def on_code(device: DeviceAuthorization) -> None:
        with real_client(shop) as browser:
            visit = customer_answers(emu, customer, device.verification_uri_complete, press)
            done = approve(browser, visit)
        if pages is not None:
            pages.append(done)

    return on_code


def test_the_real_middleware_charges_a_program_once_per_request_after_one_approval(
    shop: SmallTransfersWSGI, st_emulator: Emulator, st_customer: Customer, tmp_path: Path
) -> None:
    pages: list[str] = []
    auth = SmallTransfersAuth(
        client_name="quote bot",
        token_file=tmp_path / "tokens.json",
        on_code=approving(shop, st_emulator, st_customer, pages=pages),
        sleep=no_wait,
    )
    with real_client(shop, auth) as program:
        first = program.get("/api/quote")
        second = program.get("/api/quote")
        free = program.get("/about")
    assert first.json() == {"for": st_customer.id, "paid": 500}
    assert second.json() == {"for": st_customer.id, "paid": 500}
    assert free.json() == {"for": st_customer.id, "paid": 0}  # the customer, on free pages too
    assert charges(st_emulator, st_customer) == [500, 500]  # once each: the 401 charged nothing
    assert "Program allowed" in pages[0]
    assert "quote bot can now pay" in pages[0]
    assert auth.sites() == [f"{REAL}/"]
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600


def test_the_real_middleware_refuses_a_denied_program(
    shop: SmallTransfersWSGI, st_emulator: Emulator, st_customer: Customer
) -> None:
    pages: list[str] = []
    auth = SmallTransfersAuth(
        remember=False,
        on_code=approving(shop, st_emulator, st_customer, "st-deny", pages),
        sleep=no_wait,
    )
    with real_client(shop, auth) as program, pytest.raises(AccessDenied):
        program.get("/api/quote")
    assert "Program denied" in pages[0]
    assert charges(st_emulator, st_customer) == []


def test_a_program_signed_out_asks_again_and_its_old_token_is_refused(
    shop: SmallTransfersWSGI, st_emulator: Emulator, st_customer: Customer
) -> None:
    auth = SmallTransfersAuth(
        remember=False, on_code=approving(shop, st_emulator, st_customer), sleep=no_wait
    )
    with real_client(shop, auth) as program:
        assert program.get("/api/quote").status_code == 200
        token = program.get("/api/quote").request.headers["authorization"]
        assert auth.sign_out(program, "/smalltransfers/sign-out").status_code == 204
        assert auth.sites() == []
    with real_client(shop) as thief:
        stolen = thief.get("/api/quote", headers={"Authorization": token})
    assert stolen.status_code == 401
    assert 'error="invalid_token"' in stolen.headers["www-authenticate"]

    # The token kept, but revoked on Small Transfers' dashboard: dropped, approved anew.
    with real_client(shop, auth) as program:
        assert program.get("/api/quote").status_code == 200
        st_emulator.revoke(st_customer.id)
        assert program.get("/api/quote").json() == {"for": st_customer.id, "paid": 500}
    assert charges(st_emulator, st_customer) == [500, 500, 500, 500]


def test_the_client_meets_the_real_slow_down_and_backs_off(
    shop: SmallTransfersWSGI, st_emulator: Emulator, st_customer: Customer
) -> None:
    """Polls sent too fast (no real wait) get the middleware's slow_down; +5 s follows."""
    waits: list[float] = []
    device: list[DeviceAuthorization] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # after pending and slow_down: approve, and really wait now
            url = device[0].verification_uri_complete
            with real_client(shop) as browser:
                approve(browser, customer_answers(st_emulator, st_customer, url, "st-allow"))
            threading.Event().wait(1.05)

    auth = SmallTransfersAuth(remember=False, on_code=device.append, sleep=sleep)
    with real_client(shop, auth) as program:
        assert program.get("/api/quote").status_code == 200
    assert waits == [1, 1, 6]


def test_the_real_expired_token_answer_ends_the_flow(
    st_emulator: Emulator, st_customer: Customer
) -> None:
    lapsing = SmallTransfersWSGI(
        quote_app,
        **emulator_options(st_emulator, pricing=PRICING, device_interval=1, device_expires_in=2),
    )
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        threading.Event().wait(1.1)

    # The client's clock stands still, so only the site can say the code has lapsed.
    auth = SmallTransfersAuth(
        remember=False, on_code=lambda device: None, clock=lambda: 0.0, sleep=sleep
    )
    try:
        with real_client(lapsing, auth) as program, pytest.raises(DeviceCodeExpired) as lapsed:
            program.get("/api/quote")
    finally:
        lapsing.close()
    assert polls == [1, 1]  # pending at 1.1 s, lapsed at 2.2 s
    assert lapsed.value.error == "expired_token"


@pytest.mark.anyio
async def test_the_real_asgi_middleware_with_an_async_client(
    st_emulator: Emulator, st_customer: Customer
) -> None:
    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        charge = scope["smalltransfers.charge"]
        body = json.dumps(
            {"for": scope["smalltransfers.customer"].id, "paid": charge.amount_micros}
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    mw = SmallTransfersASGI(
        asgi_app, **emulator_options(st_emulator, pricing=PRICING, device_interval=1)
    )
    transport = httpx.ASGITransport(app=mw)

    async def on_code(device: DeviceAuthorization) -> None:
        async with httpx.AsyncClient(transport=transport, base_url=REAL) as browser:
            visit = customer_answers(
                st_emulator, st_customer, device.verification_uri_complete, "st-allow"
            )
            assert "Program allowed" in await async_approve(browser, visit)

    auth = SmallTransfersAuth(
        remember=False, on_code=on_code, client_name="async bot", async_sleep=async_no_wait
    )
    async with httpx.AsyncClient(transport=transport, base_url=REAL, auth=auth) as program:
        answers = [(await program.get("/api/quote")).json() for _ in range(2)]
    await mw.aclose()
    assert answers == [{"for": st_customer.id, "paid": 500}] * 2
    assert charges(st_emulator, st_customer) == [500, 500]


def test_a_browser_already_signed_in_goes_straight_to_allow(
    shop: SmallTransfersWSGI, st_emulator: Emulator
) -> None:
    ada = new_customer(st_emulator)
    with real_client(shop) as browser:
        sign_in(browser, st_emulator, ada)

        def on_code(device: DeviceAuthorization) -> None:
            # Were a sign-in page to come up, the visit would sign in somebody else: the
            # token being Ada's shows it went from the code straight to Allow.
            stranger = new_customer(st_emulator)
            url = device.verification_uri_complete
            approve(browser, customer_answers(st_emulator, stranger, url, "st-allow"))

        auth = SmallTransfersAuth(remember=False, on_code=on_code, sleep=no_wait)
        with real_client(shop, auth) as program:
            assert program.get("/api/quote").json()["for"] == ada.id
    assert charges(st_emulator, ada) == [500]
