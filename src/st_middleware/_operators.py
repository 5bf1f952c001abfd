"""What ``python -m st_middleware captures`` does: show the capture outbox, retry one capture.

Operators need to see the captures that are not confirmed yet (pending: the
workers keep trying; failed: a terminal answer, never tried again) without
the session secret and without ever printing a token. An outbox entry's
payload is a :class:`~._captures.CaptureRecord`; only its plain fields are
read here (its ``sealed_token`` is never copied into anything printed).

Everything printed comes from the store, and a path was chosen by a visitor:
control characters are escaped, so a hostile path cannot move the cursor or
rewrite the operator's terminal.

``--retry ID`` makes one capture due now. A pending one is rescheduled (the
store's ``reschedule``); a failed one, which no worker would ever touch
again, is put back as pending (after fixing what failed, the merchant keys
say). Either way the capture worker of any running middleware on that store
sends it at its next round, about a second later. A capture being tried at
this very moment (leased) is left alone: releasing its lease could send it
twice at once, which the ``409`` would absorb but the operator did not ask for.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._captures import CAPTURE_TTL, IDLE, CaptureRecord
from ._errors import ConfigurationError
from ._pages import format_micros
from ._store import CaptureEntry, CaptureState, Store, StoreUnavailable, open_store
from ._store._open import parse_store_url

__all__ = ["CaptureView", "OperatorError", "open_for_operators", "run_captures"]


class OperatorError(Exception):
    """A failure the command reports in one line, with its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CaptureView:
    """One outbox entry as operators see it: plain fields only, never a token."""

    id: str
    state: CaptureState
    created_at: float
    attempts: int
    due_at: float
    leased_until: float
    last_error: str | None
    #: False when the payload is not a capture record this version can read.
    readable: bool
    charge_id: str | None = None
    idempotency_key: str | None = None
    amount_micros: int | None = None
    authorized_micros: int | None = None
    customer_id: str | None = None
    method: str | None = None
    path: str | None = None

    @classmethod
    def of(cls, entry: CaptureEntry) -> CaptureView:
        common: dict[str, Any] = {
            "id": entry.id,
            "state": entry.state,
            "created_at": entry.created_at,
            "attempts": entry.attempts,
            "due_at": entry.due_at,
            "leased_until": entry.leased_until,
            "last_error": entry.last_error,
        }
        try:
            record = CaptureRecord.from_payload(entry.payload)
        except ValueError:
            return cls(readable=False, **common)
        # Field by field: the record's sealed token must not travel any further.
        return cls(
            readable=True,
            charge_id=record.charge_id,
            idempotency_key=record.idempotency_key,
            amount_micros=record.amount_micros,
            authorized_micros=record.authorized_micros,
            customer_id=record.customer_id,
            method=record.method,
            path=record.path,
            **common,
        )

    def in_flight(self, now: float) -> bool:
        """Whether a worker holds it right now (a lease that has not run out)."""
        return self.state == "pending" and self.leased_until > now

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` names it: its outbox id, its charge id or its idempotency key."""
        return wanted in (self.id, self.charge_id, self.idempotency_key)

    def amount(self) -> str:
        if self.amount_micros is None:
            return "?"
        return f"{self.amount_micros} micros ({_usd(self.amount_micros)})"

    def next_attempt(self, now: float) -> str:
        if self.state == "failed":
            return "never (failed)"
        if self.in_flight(now):
            return f"in flight (lease ends in {_duration(self.leased_until - now)})"
        if self.due_at <= now:
            return "due now"
        return f"in {_duration(self.due_at - now)}"

    def to_json(self, now: float) -> dict[str, Any]:
        pending = self.state == "pending"
        return {
            "id": self.id,
            "state": self.state,
            "charge_id": self.charge_id,
            "idempotency_key": self.idempotency_key,
            "amount_micros": self.amount_micros,
            "amount": _usd(self.amount_micros) if self.amount_micros is not None else None,
            "authorized_micros": self.authorized_micros,
            "customer_id": self.customer_id,
            "method": self.method,
            "path": self.path,
            "created_at": self.created_at,
            "age_seconds": round(max(0.0, now - self.created_at), 3),
            "attempts": self.attempts,
            "due_at": self.due_at if pending else None,
            "next_attempt_in_seconds": round(max(0.0, self.due_at - now), 3) if pending else None,
            "in_flight": self.in_flight(now),
            "leased_until": self.leased_until if self.in_flight(now) else None,
            "last_error": self.last_error,
            "readable": self.readable,
        }


# -- the store -------------------------------------------------------------------------


def open_for_operators(url: str | None) -> tuple[Store, str]:
    """The store ``url`` names (else ``SMALL_TRANSFERS_STORE``) and how to show it.

    Refuses ``memory://``, which lives inside one server process, and a SQLite
    path with no file: opening it would create an empty store and report
    "nothing pending" for a mistyped path.
    """
    if url is None:
        url = os.environ.get("SMALL_TRANSFERS_STORE", "").strip()
        if not url:
            raise OperatorError(
                "no store: pass --store URL or set SMALL_TRANSFERS_STORE "
                '(e.g. "sqlite:////var/lib/app/st.db" or "redis://HOST:6379/0")',
                status=2,
            )
    try:
        spec = parse_store_url(url)
        if spec.kind == "memory":
            raise OperatorError(
                "memory:// lives inside one server process: its captures cannot be read "
                "from another; run servers with a SQLite or Redis store to see them here",
                status=2,
            )
        if spec.kind == "sqlite" and not os.path.isfile(spec.target):
            raise OperatorError(f"no SQLite store at {spec.target} (check the path)", status=2)
        return open_store(url).sync, spec.shown
    except ConfigurationError as exc:
        raise OperatorError(str(exc), status=2) from None
    except StoreUnavailable as exc:
        raise OperatorError(f"the store is unavailable: {exc}") from None


def list_captures(store: Store) -> list[CaptureView]:
    """Every pending and failed capture, oldest first."""
    try:
        return [CaptureView.of(entry) for entry in store.captures()]
    except StoreUnavailable as exc:
        raise OperatorError(f"the store is unavailable: {exc}") from None


@dataclass(frozen=True, slots=True)
class Retried:
    """What ``--retry`` did: ``"rescheduled"`` a pending capture or ``"requeued"`` a failed one."""

    action: str
    view: CaptureView
    message: str


def retry_capture(store: Store, wanted: str, now: float) -> Retried:
    """Make the capture ``wanted`` names due now (see the module docstring)."""
    views = list_captures(store)
    found = [view for view in views if view.matches(wanted)]
    if not found:
        raise OperatorError(
            f"no pending or failed capture is named {_shown(wanted)} "
            "(captured already, expired, or another store?)"
        )
    if len(found) > 1:
        ids = ", ".join(_shown(view.id) for view in found)
        raise OperatorError(f"{_shown(wanted)} names several captures ({ids}): give the ID")
    (view,) = found
    if view.in_flight(now):
        raise OperatorError(
            f"capture {_shown(view.id)} is being tried right now, or was by a process that "
            f"died (its lease ends in {_duration(view.leased_until - now)}); nothing changed: "
            "a worker takes it up when the lease ends"
        )
    try:
        if view.state == "pending":
            store.reschedule(view.id, now, view.attempts, view.last_error)
            action = "rescheduled"
        else:
            entry = next(e for e in store.captures() if e.id == view.id)
            again = CaptureEntry(
                id=entry.id,
                payload=entry.payload,
                due_at=now,
                attempts=entry.attempts,
                created_at=entry.created_at,
                last_error=entry.last_error,
                state="pending",
            )
            store.enqueue(again, CAPTURE_TTL)
            action = "requeued"
    except StopIteration:
        raise OperatorError(f"capture {_shown(view.id)} is gone (captured meanwhile?)") from None
    except StoreUnavailable as exc:
        raise OperatorError(f"the store is unavailable: {exc}") from None
    was = "was failed; put back as pending and " if action == "requeued" else ""
    message = (
        f"capture {_shown(view.id)} (charge {_shown(view.charge_id or '?')}, {view.amount()}) "
        f"{was}due now: the capture worker of any running middleware on this store sends it "
        f"at its next round (every {IDLE:g} s or so); a server starts its worker at its "
        "first request, so with none running it goes out when one is"
    )
    return Retried(action, view, message)


# -- the command -------------------------------------------------------------------------


def run_captures(
    *,
    store_url: str | None,
    retry: str | None,
    as_json: bool,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """The ``captures`` command: print the listing (or retry one); the exit status.

    Results go to ``out`` (stdout), failures to ``err`` (stderr), so that
    ``--json`` output piped to a program is either JSON or nothing.
    """
    if err is None:
        err = _stderr
    try:
        store, shown = open_for_operators(store_url)
    except OperatorError as exc:
        err(f"error: {exc}")
        return exc.status
    try:
        now = clock()
        if retry is not None:
            done = retry_capture(store, retry, now)
            if as_json:
                answer = {"action": done.action, "capture": done.view.to_json(now)}
                out(json.dumps({**answer, "message": done.message}, indent=2))
            else:
                out(done.message)
            return 0
        views = list_captures(store)
        if as_json:
            out(json.dumps(_listing_json(views, now, shown), indent=2))
        else:
            for line in listing_lines(views, now, shown):
                out(line)
        return 0
    except OperatorError as exc:
        err(f"error: {exc}")
        return exc.status
    finally:
        store.close()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


_HEADER = ("STATE", "ID", "AMOUNT", "CUSTOMER", "REQUEST", "AGE", "ATTEMPTS", "NEXT ATTEMPT")


def listing_lines(views: Sequence[CaptureView], now: float, shown: str) -> list[str]:
    """The text listing: a header, one line per capture, a summary."""
    if not views:
        return [f"no pending or failed captures in {shown}"]
    rows = [
        (
            view.state,
            _shown(view.id),
            view.amount(),
            _shown(view.customer_id or "?"),
            _shown(f"{view.method} {view.path}" if view.readable else "? (unreadable payload)"),
            _duration(max(0.0, now - view.created_at)),
            str(view.attempts),
            view.next_attempt(now),
        )
        for view in views
    ]
    widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(len(_HEADER))]
    header = "  ".join(cell.ljust(width) for cell, width in zip(_HEADER, widths, strict=True))
    lines = [f"{header}  LAST ERROR"]
    for row, view in zip(rows, views, strict=True):
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(f"{cells}  {_shown(view.last_error or '-')}")
    pending = sum(view.state == "pending" for view in views)
    failed = len(views) - pending
    lines.append(f"{len(views)} captures in {shown}: {pending} pending, {failed} failed")
    if failed:
        lines.append(
            "failed captures are never tried again by the workers: fix the cause, then "
            "python -m st_middleware captures --retry ID"
        )
    return lines


def _listing_json(views: Sequence[CaptureView], now: float, shown: str) -> dict[str, Any]:
    return {
        "store": shown,
        "now": now,
        "pending": sum(view.state == "pending" for view in views),
        "failed": sum(view.state == "failed" for view in views),
        "captures": [view.to_json(now) for view in views],
    }


def _usd(micros: int) -> str:
    try:
        return format_micros(micros)
    except (TypeError, ValueError):
        return "?"


def _duration(seconds: float) -> str:
    """``12s``, ``5m02s``, ``3h04m``, ``2d03h``: short, and exact enough to act on."""
    whole = int(seconds + 0.999)  # rounded up: "in 0s" would read as "already due"
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _shown(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
