"""Where a program is allowed to pay: the device authorization flow (RFC 8628's shape).

A program (script, CLI, AI agent) cannot click "Sign In with Small
Transfers". It asks the device route for a code; the customer opens the
verification page in a browser, confirms the code, signs in with Small
Transfers as usual and presses Allow; the program, polling the token route,
then gets a bearer token once. The token is a sealed session of its own
purpose: the same customer and access token as a cookie would carry,
accepted in ``Authorization: Bearer`` on every request.

Everything lives in the state store, under keys that never hold a secret in
clear: ``device:<h>`` (the authorization: user code, status, expiry),
``device-poll:<h>`` (the last poll, for ``slow_down``), ``device-token:<h>``
(the sealed bearer token, taken exactly once), ``user-code:<CODE>`` (which
device a code names, single use) and ``device-tries:<client>`` (wrong codes
entered, limited), where ``<h>`` is a hash of the device code.

Like the core, this module does no I/O: its flows yield effects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ._answers import Answer, Headers, redirect
from ._config import Settings
from ._effects import Flow, StoreCall
from ._pages import render_device_page
from ._request import Request
from ._routes import Routes
from ._session import Cookies, Session
from ._store import StoreUnavailable

__all__ = ["GRANT_TYPE", "DeviceFlow", "normalize_user_code"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §6.1: base-20, no vowels (no words), no look-alikes; 20^8 codes.
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_USER_CODE_LENGTH = 8
#: Wrong codes one client may enter per device lifetime before it is refused.
MAX_WRONG_CODES = 5
_NO_STORE: Headers = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
# The verification pages must never be framed (clickjacking an "Allow"). Their
# forms post to this page and may be redirected on to Small Transfers' sign-in,
# so form-action stays open; "same-origin" keeps the Origin header on those
# posts (with "no-referrer" Chromium sends "Origin: null", which we refuse).
_PAGE_HEADERS: Headers = [
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Type", "text/html; charset=utf-8"),
]


def normalize_user_code(text: str) -> str:
    """A user code as typed (any case, dashes, spaces) in its canonical form, or ``""``."""
    letters = "".join(ch for ch in text.upper() if ch.isalnum())
    if len(letters) != _USER_CODE_LENGTH or any(ch not in _ALPHABET for ch in letters):
        return ""
    return letters


def _shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _hashed(device_code: str) -> str:
    # The device code is the program's secret until it has its token: only a hash is stored.
    return hashlib.sha256(f"st-middleware/device/{device_code}".encode()).hexdigest()[:32]


class DeviceFlow:
    """The device routes of one middleware instance (sans-IO: its methods are flows)."""

    __slots__ = ("_clock", "_cookies", "_log", "_routes", "_settings")

    def __init__(
        self,
        settings: Settings,
        cookies: Cookies,
        routes: Routes,
        *,
        clock: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self._settings = settings
        self._cookies = cookies
        self._routes = routes
        self._clock = clock
        self._log = log

    # -- the program: ask for a code, then poll for the token ------------------------

    def authorize(self, request: Request, body: bytes) -> Flow[Answer]:
        """``POST device_path``: a device code, a user code and where to enter it."""
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "use POST"})
        origin = self._routes.origin(request)
        if origin is None:
            return _json(400, {"error": "invalid_request", "error_description": "bad Host"})
        fields = _fields(request, body)
        client_name = (fields.get("client_name") or "a program")[:80]
        settings = self._settings
        device_code = secrets.token_urlsafe(32)
        now = self._clock()
        for _ in range(5):
            user_code = "".join(secrets.choice(_ALPHABET) for _ in range(_USER_CODE_LENGTH))
            record = {
                "user_code": user_code,
                "client_name": client_name,
                "status": "pending",
                "expires_at": now + settings.device_expires_in,
            }
            try:
                # A user code names one pending device at a time.
                free = yield StoreCall(
                    "add",
                    (f"user-code:{user_code}", _hashed(device_code).encode(), _life(settings)),
                )
                if not free:
                    continue
                yield StoreCall("put", (_key(device_code), _dump(record), _life(settings)))
            except StoreUnavailable as exc:
                self._log.error("device authorization: the state store is unavailable (%s)", exc)
                return _json(503, {"error": "temporarily_unavailable"}, retry_after=True)
            break
        else:  # pragma: no cover - 20^8 codes: five collisions in a row do not happen
            return _json(503, {"error": "temporarily_unavailable"}, retry_after=True)
        verify = origin + self._routes.path(request, self.verify_path)
        self._log.info("device authorization started for %s", client_name)
        return _json(
            200,
            {
                "device_code": device_code,
                "user_code": _shown(user_code),
                "verification_uri": verify,
                "verification_uri_complete": verify + "?" + urlencode({"user_code": user_code}),
                "expires_in": settings.device_expires_in,
                "interval": settings.device_interval,
                "token_url": origin + self._routes.path(request, settings.token_path),
            },
        )

    def token(self, request: Request, body: bytes) -> Flow[Answer]:
        """``POST token_path``: the program polls; RFC 8628 §3.5 answers."""
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "use POST"})
        fields = _fields(request, body)
        if fields.get("grant_type") != GRANT_TYPE:
            return _error("unsupported_grant_type")
        device_code = fields.get("device_code") or ""
        if not device_code or len(device_code) > 200:
            return _error("invalid_request", "device_code is missing")
        key, now = _key(device_code), self._clock()
        try:
            record = _load((yield StoreCall("get", (key,))))
            if record is None:
                return _error("invalid_grant", "unknown or already used device code")
            if now >= record["expires_at"]:
                return _error("expired_token")
            if record["status"] == "denied":
                return _error("access_denied")
            poll_key = "device-poll:" + key.partition(":")[2]
            last = yield StoreCall("get", (poll_key,))
            yield StoreCall("put", (poll_key, repr(now).encode(), _life(self._settings)))
            if last is not None and now - float(last) < self._settings.device_interval:
                return _error("slow_down")
            if record["status"] != "approved":
                return _error("authorization_pending")
            # Handed out exactly once, whoever polls first; then the device code is used up.
            sealed = yield StoreCall("take", ("device-token:" + key.partition(":")[2],))
            if sealed is not None:
                yield StoreCall("delete", (key,))
        except StoreUnavailable as exc:
            self._log.error("device token: the state store is unavailable (%s)", exc)
            return _json(503, {"error": "temporarily_unavailable"}, retry_after=True)
        opened = (
            None
            if sealed is None
            else self._cookies.store_tokens.open(
                sealed.decode(), self._settings.device_expires_in + 60, int(now)
            )
        )
        if opened is None or not isinstance(opened[0], str):
            return _error("invalid_grant", "unknown or already used device code")
        self._log.info("device authorization completed: a bearer token was issued")
        return _json(
            200,
            {
                "access_token": opened[0],
                "token_type": "Bearer",
                "expires_in": self._settings.session_max_age,
            },
        )

    # -- the customer's browser: confirm the code, sign in, allow ----------------------

    @property
    def verify_path(self) -> str:
        return self._settings.device_path + "/verify"

    def verify(
        self, request: Request, body: bytes, session: Session | None, sign_in: Callable[[str], str]
    ) -> Flow[Answer]:
        """``verify_path``: the code to confirm, then (signed in) Allow or Deny.

        ``sign_in(next_path)`` is the sign-in route's URL returning to ``next_path``.
        """
        form = self._cookies.read_device_form(request)
        cookies: list[str] = []
        if form is None:
            form = {"csrf": secrets.token_urlsafe(24)}
            cookies.append(self._cookies.device_form(request, form))
        here = self._routes.path(request, self.verify_path)
        if request.method == "POST":
            fields = _fields(request, body)
            if not _same_site(request, self._routes) or not hmac.compare_digest(
                (fields.get("csrf") or "").encode(), form["csrf"].encode()
            ):
                return self._page(
                    request,
                    cookies,
                    403,
                    "This form has expired",
                    "Reload the page and try again.",
                    form,
                    code="",
                )
            decision = fields.get("decision")
            if decision in ("allow", "deny"):
                return (yield from self._decide(request, form, session, decision == "allow"))
            return (yield from self._confirm(request, form, fields, session, sign_in))
        # GET: a device already confirmed in this browser and a session -> Allow/Deny.
        if form.get("device") and session is not None:
            return (yield from self._approval(request, form, session, cookies))
        code = normalize_user_code(dict(parse_qsl(request.query_string)).get("user_code", ""))
        return self._page(
            request,
            cookies,
            200,
            "Connect a program",
            "Check that this code is the one your program shows, then continue.",
            form,
            code=_shown(code) if code else "",
            action=here,
        )

    def _confirm(
        self,
        request: Request,
        form: dict[str, Any],
        fields: dict[str, str],
        session: Session | None,
        sign_in: Callable[[str], str],
    ) -> Flow[Answer]:
        code = normalize_user_code(fields.get("user_code") or "")
        here = self._routes.path(request, self.verify_path)
        tries_key = f"device-tries:{request.client or 'unknown'}"
        try:
            tries = yield StoreCall("get", (tries_key,))
            if tries is not None and int(tries) >= MAX_WRONG_CODES:
                return self._page(
                    request,
                    [],
                    429,
                    "Too many wrong codes",
                    "Wait a few minutes, then start again from your program.",
                    form,
                )
            device = (yield StoreCall("get", (f"user-code:{code}",))) if code else None
            record = None
            if device is not None:
                record = _load((yield StoreCall("get", ("device:" + device.decode(),))))
            if (
                record is None
                or record["status"] != "pending"
                or (self._clock() >= record["expires_at"])
            ):
                yield StoreCall("incr", (tries_key, float(self._settings.device_expires_in)))
                return self._page(
                    request,
                    [],
                    400,
                    "That code was not found",
                    "Check the code your program shows (it lapses after a few minutes) "
                    "and type it again.",
                    form,
                    code=fields.get("user_code", "")[:16],
                    action=here,
                )
        except StoreUnavailable as exc:
            self._log.error("device verification: the state store is unavailable (%s)", exc)
            return self._unavailable(request, form)
        assert device is not None
        form = {**form, "device": device.decode()}
        cookie = self._cookies.device_form(request, form)
        if session is None:
            # The usual Small Transfers sign-in, then back here to Allow or Deny.
            return redirect(sign_in(here), [cookie])
        return redirect(here, [cookie])

    def _approval(
        self, request: Request, form: dict[str, Any], session: Session, cookies: list[str]
    ) -> Flow[Answer]:
        try:
            record = _load((yield StoreCall("get", ("device:" + form["device"],))))
        except StoreUnavailable:
            record = None
        if record is None or record["status"] != "pending":
            cookies.append(self._cookies.clear_device_form(request))
            return self._lapsed(request, cookies, form)
        customer = session.customer
        who = customer.name or customer.email or customer.id
        return self._page(
            request,
            cookies,
            200,
            "Allow this program to pay?",
            f"{record['client_name']} asks to be charged from your Small Transfers account "
            f"({who}) for what it uses on this site, within your spending limit, until you "
            "sign it out or revoke this site on Small Transfers.",
            form,
            action=self._routes.path(request, self.verify_path),
            buttons=(
                ("st-allow", "decision", "allow", "Allow"),
                ("st-deny", "decision", "deny", "Deny"),
            ),
        )

    def _decide(
        self, request: Request, form: dict[str, Any], session: Session | None, allow: bool
    ) -> Flow[Answer]:
        device = form.get("device")
        cleared = [self._cookies.clear_device_form(request)]
        if not device or session is None:
            return self._lapsed(request, cleared, form)
        key, life = "device:" + device, _life(self._settings)
        try:
            record = _load((yield StoreCall("get", (key,))))
            if record is None or record["status"] != "pending":
                return self._lapsed(request, cleared, form)
            if allow:
                token, _ = self._cookies.new_bearer(session)
                sealed = self._cookies.store_tokens.seal(token, int(self._clock()))
                yield StoreCall("put", ("device-token:" + device, sealed.encode(), life))
            record["status"] = "approved" if allow else "denied"
            yield StoreCall("put", (key, _dump(record), life))
            yield StoreCall("delete", (f"user-code:{record['user_code']}",))  # single use
        except StoreUnavailable as exc:
            self._log.error("device approval: the state store is unavailable (%s)", exc)
            return self._unavailable(request, form)
        self._log.info(
            "device %s for customer %s", "allowed" if allow else "denied", session.customer.id
        )
        if allow:
            return self._page(
                request,
                cleared,
                200,
                "Program allowed",
                f"{record['client_name']} can now pay on this site. You can close this window.",
                form,
                done=True,
            )
        return self._page(
            request,
            cleared,
            200,
            "Program denied",
            "Nothing was allowed and nothing was charged. You can close this window.",
            form,
            done=True,
        )

    def _lapsed(self, request: Request, cookies: list[str], form: dict[str, Any]) -> Answer:
        return self._page(
            request,
            cookies,
            400,
            "This request has lapsed",
            "Start again from your program.",
            form,
            done=True,
        )

    def _unavailable(self, request: Request, form: dict[str, Any]) -> Answer:
        return self._page(
            request, [], 503, "Temporarily unavailable", "Please try again in a moment.", form
        )

    def _page(
        self,
        request: Request,
        cookies: list[str],
        status: int,
        heading: str,
        message: str,
        form: dict[str, Any],
        *,
        code: str | None = None,
        action: str | None = None,
        buttons: tuple[tuple[str, str, str, str], ...] = (),
        done: bool = False,
    ) -> Answer:
        if code is not None and not buttons:
            buttons = (("st-continue", "step", "confirm", "Continue"),)
        body = render_device_page(
            title=heading,
            heading=heading,
            message=message,
            status=status,
            action=action,
            hidden={"csrf": form["csrf"]},
            code=code,
            buttons=buttons if action is not None else (),
            done=done,
            back_url=self._routes.home(request),
        )
        headers = [*_PAGE_HEADERS, ("Content-Length", str(len(body)))]
        headers.extend(("Set-Cookie", cookie) for cookie in cookies)
        return Answer(status, headers, body)


def _life(settings: Settings) -> float:
    # Kept a little past the expiry, to answer "expired_token" rather than "unknown".
    return float(settings.device_expires_in + 600)


def _key(device_code: str) -> str:
    return "device:" + _hashed(device_code)


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _load(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "status" in record else None


def _fields(request: Request, body: bytes) -> dict[str, str]:
    """The form-encoded or JSON fields of a POST body (the first of each name)."""
    if len(body) > 4096:
        return {}
    text = body.decode("utf-8", "replace")
    if "json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        )
    fields: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=20):
        fields.setdefault(key, value)
    return fields


def _same_site(request: Request, routes: Routes) -> bool:
    """A present Origin must be this site's (a form posted from elsewhere is refused)."""
    origin = request.headers.get("origin")
    return origin is None or origin == routes.origin(request)


def _json(status: int, data: dict[str, Any], *, retry_after: bool = False) -> Answer:
    body = json.dumps(data).encode()
    headers: Headers = [*_NO_STORE, ("Content-Type", "application/json")]
    if retry_after:
        headers.append(("Retry-After", "5"))
    headers.append(("Content-Length", str(len(body))))
    return Answer(status, headers, body)


def _error(error: str, description: str | None = None) -> Answer:
    """An RFC 6749 §5.2 error of the token route: always a 400 with ``{"error": ...}``."""
    data = {"error": error}
    if description:
        data["error_description"] = description
    return _json(400, data)
