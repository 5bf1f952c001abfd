"""The customer's side: let a program pay on a Small Transfers site after one approval.

A script, CLI or AI agent cannot press "Sign In with Small Transfers".
:class:`SmallTransfersAuth` is an ``httpx`` auth that gets it a bearer token
the way TVs and CLIs sign in (RFC 8628's device authorization): the first
priced request answers ``401``, the auth asks the site for a code, shows the
customer a URL and the code, and waits while the customer approves the
program in a browser (the usual Small Transfers sign-in, then "Allow").
It keeps the token in a file only its owner can read, and retries the
request with it; from then on every request carries the token and is
charged like a signed-in browser's, until the token expires or the
customer signs the program out::

    import httpx
    from st_middleware.client import SmallTransfersAuth

    auth = SmallTransfersAuth(client_name="nightly report")
    with httpx.Client(auth=auth, base_url="https://shop.example") as client:
        quote = client.get("/api/quote")   # the first time: "Open URL and enter CODE"
        quote.raise_for_status()           # 200: paid from the customer's account
        print(quote.json())

    # async: the same auth works with httpx.AsyncClient (no blocking waits).

Nothing here prints, logs or ``repr``s a token or a device code.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import anyio
import httpx

__all__ = [
    "AccessDenied",
    "DeviceAuthorization",
    "DeviceCodeExpired",
    "DeviceFlowError",
    "DeviceFlowTimeout",
    "SmallTransfersAuth",
    "TokenFileError",
    "default_token_file",
    "print_to_stderr",
]

log = logging.getLogger("st_middleware.client")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.5: the interval a client waits when the server names none, and
#: what ``slow_down`` adds to it.
DEFAULT_INTERVAL = 5.0
SLOW_DOWN_STEP = 5.0
#: The longest wait between two polls when the token route is having trouble.
MAX_INTERVAL = 60.0
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# RFC 6750's b64token: anything else could not travel in a header unharmed.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_INVALID_TOKEN = re.compile(r'error\s*=\s*"?invalid_token"?', re.IGNORECASE)


# -- errors ------------------------------------------------------------------------------


class DeviceFlowError(Exception):
    """The device authorization ended without a token.

    ``error`` is the RFC 8628 / RFC 6749 error code the site answered
    (``access_denied``, ``expired_token``, ``invalid_grant``...), or one of
    ours for what was never an answer: ``invalid_response`` (not the
    protocol), ``insecure_transport`` (a token over plain http),
    ``cross_origin`` (a flow on another site than the request's).
    """

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{description} ({error})")
        self.error = error
        self.description = description


class AccessDenied(DeviceFlowError):
    """The customer pressed "Deny": this program may not pay (``access_denied``)."""


class DeviceCodeExpired(DeviceFlowError):
    """Nobody approved the program before the code lapsed (``expired_token``)."""


class DeviceFlowTimeout(DeviceFlowError):
    """The auth's own ``timeout`` ran out first; ``error`` is the last answer polled."""


class TokenFileError(Exception):
    """The token file is unsafe (others may read it) or unreadable; the message says why."""


# -- what the customer is shown ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """What the customer needs to approve the program: where to go, which code to check.

    Handed to ``on_code``. Holds no secret: the device code stays inside the auth.
    """

    #: The code to confirm on the page, e.g. ``"BCDF-GHJK"``.
    user_code: str
    #: The page where the code is entered.
    verification_uri: str
    #: The same page with the code filled in (the one to open); ``verification_uri`` if
    #: the site offers none.
    verification_uri_complete: str
    #: Seconds until the code lapses.
    expires_in: float
    #: The site the program will pay on: origin and mount, e.g. ``"https://shop.example/"``.
    site: str
    #: The name the customer sees on the approval page, if one was given.
    client_name: str | None = None


def print_to_stderr(device: DeviceAuthorization) -> None:
    """The default ``on_code``: "Open URL and enter CODE" on standard error."""
    print(
        f"Open {device.verification_uri_complete} and enter {device.user_code} "
        f"to let this program pay on {device.site} (within {int(device.expires_in)} s).",
        file=sys.stderr,
        flush=True,
    )


OnCode = Callable[[DeviceAuthorization], Awaitable[None] | None]


# -- where tokens are kept ---------------------------------------------------------------


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/st-middleware/tokens.json``, else ``~/.config/...``.

    On Windows: ``%APPDATA%\\st-middleware\\tokens.json``.
    """
    if os.name == "nt":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "st-middleware" / "tokens.json"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One site's token, and where to get another when it stops working."""

    token: str = field(repr=False)
    expires_at: float | None
    device_authorization_url: str

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class _Tokens:
    """Tokens by site (``origin + mount + "/"``), in memory and, optionally, in a private file.

    The file is rewritten whole through a ``0600`` temporary file and an atomic
    rename, so a reader never sees half a file and the token is never, even
    briefly, readable by others. It is refused when anyone but its owner can
    read or write it.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, _Entry] = {}
        self._loaded = False
        # Threads of one sync client share the auth: one change to the file at a time.
        self._mutex = threading.Lock()

    def find(self, url: httpx.URL) -> tuple[str, _Entry] | None:
        """The live token of the site ``url`` belongs to (the longest matching mount)."""
        with self._mutex:
            if not self._loaded:
                self._load()
            here = _origin(url) + url.path
            now = time.time()
            sites = [
                (site, entry)
                for site, entry in self._entries.items()
                if here.startswith(site) and entry.live(now)
            ]
        return max(sites, key=lambda pair: len(pair[0]), default=None)

    def reload(self) -> None:
        """Read the file again (another process may have got a token meanwhile)."""
        with self._mutex:
            self._load()

    def put(self, site: str, entry: _Entry) -> None:
        with self._mutex:
            self._load()
            self._entries[site] = entry
            self._save()

    def drop(self, site: str, token: str | None = None) -> None:
        """Forget ``site``'s token (only if it is still ``token``, when given)."""
        with self._mutex:
            self._load()
            entry = self._entries.get(site)
            if entry is not None and (token is None or entry.token == token):
                del self._entries[site]
                self._save()

    def sites(self) -> list[str]:
        with self._mutex:
            if not self._loaded:
                self._load()
            return sorted(self._entries)

    def _load(self) -> None:
        self._loaded = True
        if self.path is None:
            return
        raw = _read_private(self.path)
        if raw is None:
            self._entries = {}
            return
        try:
            sites = json.loads(raw)["sites"]
            self._entries = {
                site: _Entry(
                    token=str(item["access_token"]),
                    expires_at=None if item["expires_at"] is None else float(item["expires_at"]),
                    device_authorization_url=str(item["device_authorization_url"]),
                )
                for site, item in sites.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenFileError(
                f"{self.path} is not a token file this client wrote; delete it "
                "(the program will ask for a new approval)"
            ) from None

    def _save(self) -> None:
        if self.path is None:
            return
        now = time.time()
        sites = {
            site: {
                "access_token": entry.token,
                "expires_at": entry.expires_at,
                "device_authorization_url": entry.device_authorization_url,
            }
            for site, entry in self._entries.items()
            if entry.live(now)  # expired tokens are pruned as a side effect
        }
        _write_private(self.path, json.dumps({"version": 1, "sites": sites}, indent=2))


def _read_private(path: Path) -> bytes | None:
    """The file's bytes, after checking only its owner can read or change it; ``None``: none."""
    try:
        # O_NOFOLLOW: a symlink planted at the path is refused, not followed.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"cannot open the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        _check_private(os.fstat(file.fileno()), path)
        return file.read()


def _check_private(info: os.stat_result, path: Path | str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise TokenFileError(f"the token file {path} is not a regular file")
    if os.name == "nt":  # pragma: no cover - POSIX modes mean little there; %APPDATA% is per user
        return
    if info.st_uid != os.getuid():
        raise TokenFileError(f"the token file {path} belongs to another user; delete it")
    if info.st_mode & 0o077:
        raise TokenFileError(
            f"the token file {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "its tokens may have been read: delete it and approve the program again"
        )


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600 before a byte is written; the rename is atomic.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tokens-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            if os.name != "nt":
                os.fchmod(file.fileno(), 0o600)
            _check_private(os.fstat(file.fileno()), temporary)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the flow ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


class _Lock(Enum):
    """One device flow at a time per auth: the driver takes its lock, later releases it."""

    TAKE = "take"
    RELEASE = "release"


# What the flow asks its driver for: send a request (and get its response back),
# wait, show the customer the code, take or release the lock.
_Effect = httpx.Request | _Sleep | DeviceAuthorization | _Lock
_Flow = Generator[_Effect, "httpx.Response | None", Any]


class SmallTransfersAuth(httpx.Auth):
    """An ``httpx`` auth that pays on Small Transfers sites with a device-approved token.

    Use it as any httpx auth, with ``httpx.Client`` or ``httpx.AsyncClient``::

        auth = SmallTransfersAuth(client_name="research agent")
        client = httpx.Client(auth=auth)
        answer = client.get("https://shop.example/api/quote")
        # first time only, on stderr: "Open https://shop.example/smalltransfers/device/verify
        #   ?user_code=BCDFGHJK and enter BCDF-GHJK ..." -- then, once the customer
        # has pressed Allow in the browser, the request is sent again with the token
        print(answer.json())          # and every later request carries it
        auth.sign_out(client, "https://shop.example/smalltransfers/sign-out")

    What happens on each request:

    * A token kept for the request's site (origin and mount) is sent in
      ``Authorization: Bearer``; no token is ever sent to another site.
    * A ``401`` whose problem+json offers ``device_authorization_url`` (the
      middleware's answer to a priced request without credentials) starts the
      device flow: ``POST`` to that URL (with ``client_name``), ``on_code``
      shows the URL and code, the token route is polled every ``interval``
      seconds (``slow_down`` adds 5), and the request is sent once more with
      the new token. Free requests, and any other answer, pass untouched.
    * A token the site no longer accepts (``401``, ``error="invalid_token"``:
      expired, signed out, revoked) is forgotten and the flow runs again, at
      most once per request.
    * The customer's "Deny" raises :class:`AccessDenied`, a code nobody
      approved in time :class:`DeviceCodeExpired`, ``timeout`` running out
      :class:`DeviceFlowTimeout`; all are :class:`DeviceFlowError` with the
      RFC ``error`` code.

    Arguments (all keyword-only):

    * ``client_name``: shown to the customer on the approval page.
    * ``token_file``: where tokens are kept (default :func:`default_token_file`);
      created ``0600``, refused if others can read it.
    * ``remember``: ``False`` keeps tokens in memory only (gone with the process).
    * ``on_code``: called with a :class:`DeviceAuthorization` to show the
      customer (default: printed to standard error). With an ``AsyncClient``
      it may be ``async``. An agent would relay it to its human here.
    * ``timeout``: seconds to wait for the approval in all (the code's own
      lifetime bounds it too).
    * ``allow_http``: obtain and send tokens over plain ``http`` to hosts other
      than loopback (off: a token on the wire is money anyone may spend).
    * ``clock``, ``sleep``, ``async_sleep``: the waits, replaceable in tests.

    Request bodies are read into memory first, so the request can be sent again.
    """

    # The first answer may be a 401 to retry after: the body must be replayable.
    requires_request_body = True

    def __init__(
        self,
        *,
        client_name: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        remember: bool = True,
        on_code: OnCode = print_to_stderr,
        timeout: float = 900.0,
        allow_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        path = Path(token_file) if token_file is not None else default_token_file()
        self._tokens = _Tokens(path if remember else None)
        self._client_name = client_name
        self._on_code = on_code
        self._timeout = timeout
        self._allow_http = allow_http
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        # One device flow at a time: requests that meet a 401 while one runs wait
        # for its token instead of showing the customer a second code.
        self._lock = threading.Lock()
        self._async_lock = anyio.Lock()

    def __repr__(self) -> str:
        where = self._tokens.path if self._tokens.path is not None else "memory"
        return f"SmallTransfersAuth(client_name={self._client_name!r}, tokens={str(where)!r})"

    @property
    def token_file(self) -> Path | None:
        """Where tokens are kept; ``None`` with ``remember=False``."""
        return self._tokens.path

    def sites(self) -> list[str]:
        """The sites (``origin + mount + "/"``) this auth holds a token for."""
        return self._tokens.sites()

    def forget(self, url: str | httpx.URL | None = None) -> None:
        """Forget the token for ``url``'s site (every token without ``url``), here only.

        The site still accepts a forgotten token until it expires: :meth:`sign_out` revokes it.
        """
        if url is None:
            for site in self._tokens.sites():
                self._tokens.drop(site)
            return
        found = self._tokens.find(httpx.URL(url))
        if found is not None:
            self._tokens.drop(found[0])

    def sign_out(self, client: httpx.Client, url: str | httpx.URL) -> httpx.Response:
        """Revoke the token at the site's sign-out route ``url`` (``204``), then forget it."""
        response = client.post(url, auth=self)
        self.forget(client.build_request("POST", url).url)
        return response

    async def async_sign_out(
        self, client: httpx.AsyncClient, url: str | httpx.URL
    ) -> httpx.Response:
        """:meth:`sign_out` for an ``httpx.AsyncClient``."""
        response = await client.post(url, auth=self)
        self.forget(client.build_request("POST", url).url)
        return response

    # -- the two drivers: the one flow below, run with blocking or awaited waits ------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The sync driver (``httpx.Client``): carries out what :meth:`_flow` asks for."""
        flow = self._flow(request)
        reply: httpx.Response | None = None
        locked = False
        try:
            while True:
                try:
                    effect = flow.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(effect, httpx.Request):
                    reply = yield effect
                    if effect is not request or reply.status_code == 401:
                        reply.read()  # the flow reads these; the app's own answers stream on
                elif isinstance(effect, _Sleep):
                    self._sleep(effect.seconds)
                elif isinstance(effect, DeviceAuthorization):
                    shown = self._on_code(effect)
                    if inspect.isawaitable(shown):
                        if inspect.iscoroutine(shown):
                            shown.close()
                        raise TypeError("on_code is async: use an httpx.AsyncClient with it")
                elif effect is _Lock.TAKE:
                    self._lock.acquire()
                    locked = True
                else:
                    self._lock.release()
                    locked = False
        finally:
            flow.close()
            if locked:
                self._lock.release()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The async driver (``httpx.AsyncClient``): the same flow, with awaited waits."""
        await request.aread()
        flow = self._flow(request)
        reply: httpx.Response | None = None
        locked = False
        try:
            while True:
                try:
                    effect = flow.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(effect, httpx.Request):
                    reply = yield effect
                    if effect is not request or reply.status_code == 401:
                        await reply.aread()
                elif isinstance(effect, _Sleep):
                    await self._async_sleep(effect.seconds)
                elif isinstance(effect, DeviceAuthorization):
                    shown = self._on_code(effect)
                    if inspect.isawaitable(shown):
                        await shown
                elif effect is _Lock.TAKE:
                    await self._async_lock.acquire()
                    locked = True
                else:
                    self._async_lock.release()
                    locked = False
        finally:
            flow.close()
            if locked:
                self._async_lock.release()

    # -- the flow: every decision; requests, waits and the lock go through a driver --

    def _flow(self, request: httpx.Request) -> _Flow:
        found = self._tokens.find(request.url) if self._may_carry(request.url) else None
        sent = found[1].token if found is not None else None
        if sent is not None:
            request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        assert response is not None
        if response.status_code != 401:
            return
        problem = _problem(response)
        offer = problem.get("device_authorization_url")
        if found is not None:
            if not (_INVALID_TOKEN.search(response.headers.get("www-authenticate", "")) or offer):
                return  # a 401 of the app's own, not a verdict on our token
            log.info("the token for %s is no longer accepted; asking for a new one", found[0])
            self._tokens.drop(found[0], sent)
            offer = offer or found[1].device_authorization_url
        if not isinstance(offer, str):
            return  # not a Small Transfers sign-in answer: the caller gets it as it is
        device_url = request.url.join(offer)
        self._check_endpoint(request.url, device_url)

        yield _Lock.TAKE
        # While this request waited for the lock, another one (or process) may have
        # finished a flow for the same site: use its token rather than ask again.
        self._tokens.reload()
        again = self._tokens.find(request.url)
        if again is not None and again[1].token != sent:
            token = again[1].token
        else:
            token = yield from self._device_flow(request.url, device_url, problem.get("token_url"))
        yield _Lock.RELEASE

        request.headers["Authorization"] = f"Bearer {token}"
        yield request  # the priced request, once more: the 401 ran nothing and charged nothing

    def _device_flow(self, url: httpx.URL, device_url: httpx.URL, offered: object) -> _Flow:
        """RFC 8628 §3.1-3.5: ask for a code, show it, poll politely; the token, kept.

        The token route is the device answer's ``token_url``, else the 401's (``offered``).
        """
        fields = {"client_name": self._client_name} if self._client_name else {}
        answer = yield _post(device_url, fields)
        assert answer is not None
        grant = _json_object(answer)
        device_code, user_code, verification_uri = (
            _text(grant, name) for name in ("device_code", "user_code", "verification_uri")
        )
        if answer.status_code != 200 or not (device_code and user_code and verification_uri):
            raise DeviceFlowError(
                str(grant.get("error") or "invalid_response"),
                f"{device_url} answered {answer.status_code} without a device code",
            )
        named = _text(grant, "token_url") or offered
        if not isinstance(named, str) or not named:
            raise DeviceFlowError("invalid_response", f"{device_url} named no token_url")
        token_url = device_url.join(named)
        self._check_endpoint(url, token_url)
        expires_in = _seconds(grant.get("expires_in"), 600.0)
        interval = _seconds(grant.get("interval"), DEFAULT_INTERVAL)
        site = _site(url, device_url)
        log.info("device authorization for %s: waiting for the customer's approval", site)
        yield DeviceAuthorization(
            user_code=user_code,
            verification_uri=verification_uri,
            verification_uri_complete=_text(grant, "verification_uri_complete") or verification_uri,
            expires_in=expires_in,
            site=site,
            client_name=self._client_name,
        )

        start = self._clock()
        lapses, gives_up = start + expires_in, start + self._timeout
        last = "authorization_pending"
        while True:
            if self._clock() + interval >= lapses:
                raise DeviceCodeExpired("expired_token", "nobody approved the program in time")
            if self._clock() + interval > gives_up:
                raise DeviceFlowTimeout(last, f"no approval within {self._timeout:g} s")
            yield _Sleep(interval)
            reply = yield _post(token_url, {"grant_type": GRANT_TYPE, "device_code": device_code})
            assert reply is not None
            body = _json_object(reply)
            if reply.status_code == 200:
                token, lifetime = _access_token(body, token_url)
                expires_at = time.time() + lifetime if lifetime is not None else None
                self._tokens.put(site, _Entry(token, expires_at, str(device_url)))
                log.info("device authorization for %s: approved, token kept", site)
                return token
            last = str(body.get("error") or "")
            if last == "authorization_pending":
                continue
            if last == "slow_down":
                interval += SLOW_DOWN_STEP
            elif last == "access_denied":
                raise AccessDenied(last, "the customer denied this program")
            elif last == "expired_token":
                raise DeviceCodeExpired(last, "nobody approved the program in time")
            elif reply.status_code == 429 or reply.status_code >= 500:
                # The site's trouble, not a verdict: wait longer and ask again.
                interval = min(interval * 2 or DEFAULT_INTERVAL, MAX_INTERVAL)
                last = last or f"http_{reply.status_code}"
            else:
                raise DeviceFlowError(
                    last or "invalid_response",
                    f"{token_url} answered {reply.status_code} to the device code",
                )

    # -- where tokens may go ------------------------------------------------------------

    def _may_carry(self, url: httpx.URL) -> bool:
        return url.scheme == "https" or url.host in _LOOPBACK or self._allow_http

    def _check_endpoint(self, url: httpx.URL, endpoint: httpx.URL) -> None:
        """A token for this site comes from this site, over a channel fit for it.

        Another origin's device route would hand this site a token for that
        other site (money the customer approved for somebody else).
        """
        if _origin(endpoint) != _origin(url):
            raise DeviceFlowError(
                "cross_origin", f"{_origin(url)} offered a device flow on {_origin(endpoint)}"
            )
        if not self._may_carry(url):
            raise DeviceFlowError(
                "insecure_transport",
                f"{_origin(url)} is plain http: a bearer token there could be read on the "
                "way (use https, or allow_http=True for a network you trust)",
            )


def _post(url: httpx.URL, fields: dict[str, str]) -> httpx.Request:
    return httpx.Request("POST", url, data=fields, headers={"Accept": "application/json"})


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _site(url: httpx.URL, device_url: httpx.URL) -> str:
    """The request's origin and mount: the folders its path shares with the device route's.

    ``/app/api/quote`` and ``/app/smalltransfers/device`` give ``/app/``; a
    site at the root gives ``/``. The token is sent below that path only.
    """
    common: list[str] = []
    for mine, theirs in zip(
        url.path.split("/")[:-1], device_url.path.split("/")[:-1], strict=False
    ):
        if mine != theirs:
            break
        common.append(mine)
    return _origin(url) + "/".join(common) + "/"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _problem(response: httpx.Response) -> dict[str, Any]:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return _json_object(response) if kind.endswith("json") else {}


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _seconds(value: object, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default


def _access_token(body: dict[str, Any], token_url: httpx.URL) -> tuple[str, float | None]:
    token = body.get("access_token")
    kind = str(body.get("token_type", "")).lower()
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token) or kind != "bearer":
        raise DeviceFlowError("invalid_response", f"{token_url} sent no usable bearer token")
    lifetime = body.get("expires_in")
    return token, _seconds(lifetime, 0.0) if lifetime is not None else None
