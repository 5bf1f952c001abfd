"""Where cookies are sealed, opened and rendered.

Two sealed cookies exist: the *session* (access token + customer, for
``session_max_age``) and the short-lived, single-use sign-in *state*. Each is
encrypted with Fernet under keys derived by HKDF-SHA256 from every session
secret **and the cookie's purpose**, so one can never be opened as the other.
The first secret seals; all of them open (rotation), through ``MultiFernet``.

Rules kept here, and only here:

- Anything that does not open (tampered, truncated, non-ASCII, expired,
  foreign secret, other purpose, unexpected shape) is "no cookie", never an
  error, and is cleared on the way out.
- Several *different* values under the session cookie's name in one request
  (cookie tossing, a stale duplicate) mean "no session": we cannot tell which
  one the visitor meant.
- The lifetime is absolute: it runs from sign-in (``iat`` inside the sealed
  payload) and re-sealing under a newer secret keeps it, so refreshes never
  extend a session.
- ``Secure`` is set on https and on plain http unless the host is loopback
  (a TLS-terminating proxy must never strip it); a ``Secure`` cookie takes the
  ``__Host-`` name prefix, which pins it to this host and path ``/``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets as _secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.cookies import Morsel
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._config import Settings
from ._customer import Customer
from ._errors import CookieTooLarge
from ._request import Request, cookie_values, is_loopback_host

__all__ = ["Cookies", "Session", "SignInState"]

log = logging.getLogger("st_middleware")

#: Browsers drop a Set-Cookie whose name, value and attributes pass 4096 bytes.
MAX_COOKIE_BYTES = 4096
STATE_MAX_AGE = 600
#: The device flow's browser cookie (its form token, and which device is being approved).
DEVICE_COOKIE = "st_device"
_SLIM_TEXT = 64
_SLIM_EMAIL = 254
_FORMAT_VERSION = 1
_CLOCK_SKEW = 60
_OPENED_CACHE_SIZE = 4096
# Fernet tokens are urlsafe base64; its decoder silently skips other bytes,
# so anything outside the alphabet is refused before decrypting.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-]{40,4000}={0,2}")


def derive_key(secret: str, purpose: str, generation: int = 0) -> bytes:
    """A Fernet key for one purpose and key generation, from one session secret (HKDF-SHA256).

    Bumping ``generation`` changes every key at once: all outstanding cookies
    stop opening, the merchant's "sign everybody out" switch.
    """
    raw = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"st-middleware",
        info=f"st-middleware/v{_FORMAT_VERSION}/{purpose}/{generation}".encode(),
    ).derive(secret.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


class Sealer:
    """Seals and opens JSON payloads for one purpose (keys built once, here)."""

    __slots__ = ("_clock", "_older", "_primary")

    def __init__(
        self,
        secrets: tuple[str, ...],
        purpose: str,
        generation: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        fernets = [Fernet(derive_key(secret, purpose, generation)) for secret in secrets]
        self._primary = fernets[0]
        # Retired secrets only open; a hit there asks for a re-seal.
        self._older = MultiFernet(fernets[1:]) if len(fernets) > 1 else None

    def seal(self, data: Any, issued_at: int) -> str:
        body = json.dumps(
            {"v": _FORMAT_VERSION, "iat": issued_at, "d": data},
            separators=(",", ":"),
            ensure_ascii=False,  # \uXXXX would take 6 bytes where UTF-8 takes 2-3
        )
        return self._primary.encrypt_at_time(body.encode("utf-8"), int(self._clock())).decode(
            "ascii"
        )

    def open(self, token: str, max_age: int, now: int) -> tuple[Any, int, bool] | None:
        """``(data, issued_at, sealed_by_older_secret)``, or ``None`` if it does not open."""
        # Fernet issues padded tokens; recent cryptography also opens them with
        # the padding dropped. Only the exact form we issued opens.
        if len(token) % 4 or not _TOKEN_SHAPE.fullmatch(token):
            return None
        raw = token.encode("ascii")
        stale = False
        try:
            plain = self._primary.decrypt_at_time(raw, max_age, now)
        except (InvalidToken, ValueError, TypeError):
            if self._older is None:
                return None
            try:
                plain = self._older.decrypt_at_time(raw, max_age, now)
            except (InvalidToken, ValueError, TypeError):
                return None
            stale = True
        try:
            payload = json.loads(plain)
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("v") != _FORMAT_VERSION:
            return None
        issued_at = payload.get("iat")
        if isinstance(issued_at, bool) or not isinstance(issued_at, int):
            return None
        if not (now - max_age < issued_at <= now + _CLOCK_SKEW):
            return None
        return payload.get("d"), issued_at, stale


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in visitor: the access token (never shown) and the customer."""

    access_token: str = field(repr=False)
    customer: Customer
    issued_at: int


@dataclass(frozen=True, slots=True)
class SignInState:
    """What the sign-in route remembers for its callback."""

    state: str = field(repr=False)
    next_path: str


@dataclass(frozen=True, slots=True)
class SessionRead:
    """The result of looking for the session cookie on a request (immutable: shared)."""

    session: Session | None = None
    #: Set-Cookie header values the response must carry (clear or re-seal).
    set_cookies: tuple[str, ...] = ()
    #: Why a cookie present was refused: ``"duplicate"``, ``"invalid"``, ``"rejected_hook"``.
    rejected: str | None = None


_NO_SESSION = SessionRead()


class Cookies:
    """Reads and writes the session and state cookies for one middleware instance."""

    __slots__ = (
        "_bearer",
        "_bearers",
        "_clock",
        "_device_form",
        "_max_age",
        "_names",
        "_session",
        "_sessions",
        "_settings",
        "_state",
        "store_tokens",
    )

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._max_age = settings.session_max_age
        generation = settings.session_generation
        self._session = Sealer(settings.session_secrets, "session", generation, clock)
        self._state = Sealer(settings.session_secrets, "sign-in-state", generation, clock)
        #: Seals access tokens kept in the state store (captures waiting to be sent).
        self.store_tokens = Sealer(settings.session_secrets, "store-token", generation, clock)
        # A program's bearer token is a sealed session of its own purpose: a
        # cookie can never be replayed as one, nor the other way round.
        self._bearer = Sealer(settings.session_secrets, "bearer", generation, clock)
        self._device_form = Sealer(settings.session_secrets, "device-form", generation, clock)
        # Cookies and bearer tokens already opened, each kind apart (a cookie
        # opened once must never be taken for a bearer token, nor the reverse).
        self._sessions = _Opener(self._session, self._max_age)
        self._bearers = _Opener(self._bearer, self._max_age)
        self._names = {
            (base, secure): (f"__Host-{base}" if secure else base)
            for base in (settings.cookie_name, settings.state_cookie_name, DEVICE_COOKIE)
            for secure in (True, False)
        }

    # -- policy ---------------------------------------------------------------

    def is_secure(self, request: Request) -> bool:
        forced = self._settings.secure_cookies
        if forced is not None:
            return forced
        return not (request.scheme == "http" and is_loopback_host(request.host))

    def _name(self, base: str, request: Request) -> tuple[str, bool]:
        secure = self.is_secure(request)
        return self._names[(base, secure)], secure

    # -- the session cookie -----------------------------------------------------

    def read_session(self, request: Request, now: int | None = None) -> SessionRead:
        """The session of this request, with the cookie work its answer needs."""
        if self._settings.cookie_name not in request.cookie:
            return _NO_SESSION  # both names (with or without __Host-) contain it
        name, secure = self._name(self._settings.cookie_name, request)
        values = cookie_values(request.cookie, name)
        if not values:
            return _NO_SESSION
        if len(set(values)) > 1:
            return SessionRead(None, (_render(name, "", 0, secure),), "duplicate")
        now = int(self._clock()) if now is None else now
        session, stale = self._sessions.open(values[0], now)
        if session is None:
            return SessionRead(None, (_render(name, "", 0, secure),), "invalid")
        reject = self._settings.reject_session
        if reject is not None and _rejected(reject, session):
            return SessionRead(None, (_render(name, "", 0, secure),), "rejected_hook")
        if stale:
            # Opened by a retired secret: re-seal under the current one, same iat.
            return SessionRead(session, (self._render_session(session, name, secure, now),))
        return SessionRead(session)

    def session_id(self, session: Session) -> str:
        """A stable, secret-free id of ``session``: the same for every re-sealed copy.

        A hash of the token and the sign-in time (both kept by a re-seal and
        by a secret rotation, so every host agrees on it): sign-out can name
        the session in the store without storing anything that opens it (the
        token is long and random: its hash reveals nothing usable).
        """
        text = f"st-middleware/session/{session.issued_at}/{session.access_token}"
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:18]).decode()

    # -- bearer tokens (programs) -------------------------------------------------

    def new_bearer(self, session: Session) -> tuple[str, int]:
        """A bearer token for ``session``'s customer and access token, and its lifetime.

        It lives ``session_max_age`` from now (its own issue time), like a cookie
        from its sign-in.
        """
        data = {"t": session.access_token, "c": session.customer.to_compact()}
        return self._bearer.seal(data, int(self._clock())), self._max_age

    def open_bearer(self, token: str) -> Session | None:
        """The session a bearer token carries; ``None`` if it does not open (or expired)."""
        return self._bearers.open(token, int(self._clock()))[0]

    @staticmethod
    def bearer_id(token: str) -> str:
        """A secret-free id of one bearer token (its revocation key)."""
        digest = hashlib.sha256(f"st-middleware/bearer/{token}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    # -- the device flow's browser form (CSRF token, the device being approved) ---

    def read_device_form(self, request: Request) -> dict[str, Any] | None:
        name, _ = self._name(DEVICE_COOKIE, request)
        values = cookie_values(request.cookie, name)
        if len(values) != 1:
            return None
        opened = self._device_form.open(
            values[0], self._settings.device_expires_in, int(self._clock())
        )
        data = opened[0] if opened is not None else None
        return data if isinstance(data, dict) and isinstance(data.get("csrf"), str) else None

    def device_form(self, request: Request, data: dict[str, Any]) -> str:
        """The Set-Cookie value that remembers ``data`` for this browser's device approval."""
        name, secure = self._name(DEVICE_COOKIE, request)
        value = self._device_form.seal(data, int(self._clock()))
        return _render(name, value, self._settings.device_expires_in, secure)

    def clear_device_form(self, request: Request) -> str:
        name, secure = self._name(DEVICE_COOKIE, request)
        return _render(name, "", 0, secure)

    def remaining(self, session: Session) -> int:
        """Seconds until ``session`` expires (at least 1)."""
        return max(1, session.issued_at + self._max_age - int(self._clock()))

    def set_session(self, request: Request, session: Session) -> str:
        """The Set-Cookie value that stores ``session``."""
        name, secure = self._name(self._settings.cookie_name, request)
        return self._render_session(session, name, secure, session.issued_at)

    def clear_session(self, request: Request) -> str:
        """The Set-Cookie value that deletes the session (same name, path and flags)."""
        name, secure = self._name(self._settings.cookie_name, request)
        return _render(name, "", 0, secure)

    def _render_session(self, session: Session, name: str, secure: bool, now: int) -> str:
        # The cookie dies when the session does, not session_max_age after a re-seal.
        remaining = max(1, session.issued_at + self._max_age - now)
        customer = session.customer
        try:
            return self._render_sealed(session, customer, name, remaining, secure)
        except CookieTooLarge:
            # Very long names must not lock a customer out: keep the id (what
            # charges need) and shortened details; only a huge token fails.
            slim = replace(
                customer,
                first_name=customer.first_name[:_SLIM_TEXT],
                last_name=customer.last_name[:_SLIM_TEXT],
                email=customer.email[:_SLIM_EMAIL],
            )
            log.warning("customer %s details shortened to fit the session cookie", customer.id)
            return self._render_sealed(session, slim, name, remaining, secure)

    def _render_sealed(
        self, session: Session, customer: Customer, name: str, max_age: int, secure: bool
    ) -> str:
        data = {"t": session.access_token, "c": customer.to_compact()}
        value = self._session.seal(data, session.issued_at)
        return _render(name, value, max_age, secure)

    # -- the sign-in state cookie ----------------------------------------------

    def new_state(self, request: Request, next_path: str) -> tuple[SignInState, str]:
        """A fresh random state and the Set-Cookie value that remembers it."""
        state = SignInState(_secrets.token_urlsafe(24), next_path)
        name, secure = self._name(self._settings.state_cookie_name, request)
        value = self._state.seal({"s": state.state, "n": next_path}, int(self._clock()))
        return state, _render(name, value, STATE_MAX_AGE, secure)

    def read_state(self, request: Request, now: int | None = None) -> SignInState | None:
        """The state this browser's sign-in started with, if it is valid and recent."""
        name, _ = self._name(self._settings.state_cookie_name, request)
        values = cookie_values(request.cookie, name)
        if len(values) != 1:
            return None
        now = int(self._clock()) if now is None else now
        opened = self._state.open(values[0], STATE_MAX_AGE, now)
        if opened is None:
            return None
        data = opened[0]
        if not isinstance(data, dict):
            return None
        state, next_path = data.get("s"), data.get("n")
        if not isinstance(state, str) or not isinstance(next_path, str) or not state:
            return None
        return SignInState(state, next_path)

    def clear_state(self, request: Request) -> str:
        name, secure = self._name(self._settings.state_cookie_name, request)
        return _render(name, "", 0, secure)


class _Opener:
    """Opens one kind of sealed session (cookie or bearer token), remembering recent ones.

    Decrypting costs tens of microseconds; a visitor or a program sends the
    same value request after request. A hit is the very bytes Fernet
    authenticated before, so only the clock can change the answer: the
    absolute lifetime is checked again. Bounded (oldest out first), so memory
    stays flat.
    """

    __slots__ = ("_max_age", "_sealer", "seen")

    def __init__(self, sealer: Sealer, max_age: int) -> None:
        self._sealer = sealer
        self._max_age = max_age
        #: value -> (session, sealed by an older secret)
        self.seen: dict[str, tuple[Session, bool]] = {}

    def open(self, value: str, now: int) -> tuple[Session | None, bool]:
        """``(session, sealed_by_an_older_secret)``; ``(None, False)`` if it does not open."""
        cached = self.seen.get(value)
        if cached is not None and now - self._max_age < cached[0].issued_at <= now + _CLOCK_SKEW:
            return cached
        opened = self._sealer.open(value, self._max_age, now)
        session = _session_from(opened)
        if session is None:
            return None, False
        stale = opened is not None and opened[2]
        seen = self.seen
        if len(seen) >= _OPENED_CACHE_SIZE:
            # Threads may race to evict the same entry: losing that race is harmless.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del seen[next(iter(seen))]
        seen[value] = (session, stale)
        return session, stale


def _rejected(reject: Callable[[Customer, int], bool], session: Session) -> bool:
    try:
        return bool(reject(session.customer, session.issued_at))
    except Exception:
        # Fail closed: if the merchant's deny list cannot answer, the session is not trusted.
        log.exception("reject_session hook raised; treating the session as rejected")
        return True


def _session_from(opened: tuple[Any, int, bool] | None) -> Session | None:
    if opened is None:
        return None
    data, issued_at, _ = opened
    if not isinstance(data, dict):
        return None
    token = data.get("t")
    if not isinstance(token, str) or not token:
        return None
    try:
        customer = Customer.from_compact(data.get("c"))
    except ValueError:
        return None
    return Session(token, customer, issued_at)


def _render(name: str, value: str, max_age: int, secure: bool) -> str:
    morsel: Morsel[str] = Morsel()
    # Fernet tokens are valid cookie octets as they are: pass them as the coded
    # value so Morsel does not wrap them in quotes.
    morsel.set(name, value, value)
    morsel["path"] = "/"
    morsel["max-age"] = max_age
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if secure:
        morsel["secure"] = True
    header = morsel.OutputString()
    if len(header) >= MAX_COOKIE_BYTES:
        raise CookieTooLarge(
            f"the {name} cookie would be {len(header)} bytes; browsers drop cookies "
            f"of {MAX_COOKIE_BYTES} bytes or more"
        )
    return header
