"""Where a capture is sent, recorded and retried until Small Transfers confirms it.

In authorize-capture mode the app has already delivered when the capture is
due, so a capture must never be lost to a transient fault. Each one is
written to the state store's outbox *before* it is sent (with a lease held by
this process), sent at once, and then:

- confirmed (a 2xx, or ``409 charge_already_captured``: an earlier attempt went
  through) -> removed from the outbox, reported ``captured``;
- a transient failure (no connection, timeout, reset, 429, 5xx) -> kept, with
  its next attempt after a backoff with jitter (first retry within 1 s,
  doubling, never more than 60 s apart), for the capture worker;
- a terminal answer -> marked failed (kept a week for operators), reported
  ``capture_failed`` at ERROR and to ``on_charge_failed``.

The worker (a thread for WSGI, a task per event loop for ASGI) runs
:meth:`Captures.round` through the adapter's driver: it claims due captures
with a lease (one attempt at a time across every process sharing the store)
and tries each again. A capture left pending by a process that died is
claimed by the next one once its lease lapses.

Like the core, this module does no I/O: it yields effects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _api as api
from ._charge import ChargeEvent, Outcome
from ._config import Settings
from ._effects import Flow, StoreCall
from ._errors import SmallTransfersError, capture_verdict
from ._session import Sealer
from ._store import CaptureEntry, StoreUnavailable

__all__ = ["CAPTURE_TTL", "CaptureRecord", "Captures", "backoff"]

#: How long a capture may stay in the outbox at all (authorizations lapse long before).
CAPTURE_TTL = 7 * 24 * 3600.0
#: How many captures one worker round claims.
BATCH = 16
#: Seconds between worker rounds when nothing is due (and after the store failed).
IDLE, STORE_DOWN = 1.0, 5.0
#: Every how many rounds observers get the outbox's size (a full listing of the store).
GAUGE_EVERY = 15

Report = Callable[[ChargeEvent, "SmallTransfersError | None"], None]


def backoff(attempts: int, jitter: float) -> float:
    """Seconds before the next attempt after ``attempts`` failures (``jitter`` in [0, 1)).

    0.25-0.5 s after the first failure, doubling, at most 60 s: three failures
    in a row are retried within 30 s of the first attempt.
    """
    return min(60.0, 0.5 * 2.0 ** (attempts - 1)) * (0.5 + jitter / 2)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """What a capture needs, as kept in the outbox (the token sealed, the rest plain).

    Plain fields let operators list pending captures (``python -m st_middleware
    captures``) without any secret; the access token opens only with the
    session secret.
    """

    charge_id: str
    amount_micros: int
    authorized_micros: int
    customer_id: str
    method: str
    path: str
    idempotency_key: str
    sealed_token: str = field(repr=False)
    #: The pricing rule (a metrics label), when a rule table priced it.
    route: str | None = None

    def payload(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> CaptureRecord:
        """The record in ``payload``; ``ValueError`` if it is not one of ours."""
        try:
            return cls(**json.loads(payload))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a capture record: {exc}") from None

    def event(
        self, outcome: Outcome, code: str | None = None, duration: float | None = None
    ) -> ChargeEvent:
        return ChargeEvent(
            outcome=outcome,
            mode="authorize-capture",
            amount_micros=self.amount_micros,
            customer_id=self.customer_id,
            method=self.method,
            path=self.path,
            idempotency_key=self.idempotency_key,
            charge_id=self.charge_id,
            code=code,
            route=self.route,
            duration_s=duration,
        )


class Captures:
    """The outbox's decisions for one middleware instance (sans-IO, like the core)."""

    __slots__ = (
        "_clock",
        "_lease",
        "_log",
        "_random",
        "_report",
        "_rounds",
        "_settings",
        "_tokens",
    )

    def __init__(
        self,
        settings: Settings,
        tokens: Sealer,
        report: Report,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._report = report
        self._clock = clock
        self._random = random
        self._log = log
        # About one call's timeout: an attempt a dead process had in flight is
        # taken over once it can no longer be running.
        self._lease = settings.timeout + 5.0
        self._rounds = 0

    def new(self, record: CaptureRecord, token: str) -> Flow[None]:
        """Record a capture in the outbox, then try it at once."""
        now = self._clock()
        sealed = self._tokens.seal(token, int(now))
        record = CaptureRecord(**{**asdict(record), "sealed_token": sealed})
        entry = CaptureEntry(
            id=record.idempotency_key + ":capture",
            payload=record.payload(),
            due_at=now,
            attempts=0,
            created_at=now,
            last_error=None,
            state="pending",
            leased_until=now + self._lease,  # ours while we try it now
        )
        try:
            yield StoreCall("enqueue", (entry, CAPTURE_TTL))
            self._settings.watch.capture("recorded")
        except StoreUnavailable as exc:
            self._log.error(
                "capture of charge %s could not be recorded (%s): sending it once, "
                "without retries (key %s)",
                record.charge_id,
                exc,
                record.idempotency_key,
            )
            yield from self._attempt(entry, record, token, recorded=False)
            return
        yield from self._attempt(entry, record, token, recorded=True)

    def round(self, *, final: bool = False) -> Flow[float]:
        """One round of the worker: try every due capture; seconds until the next round.

        ``final`` (shutdown): captures still waiting for their backoff are
        tried now too, one last time.
        """
        now = self._clock()
        try:
            if final:
                for waiting in (yield StoreCall("captures", ())):
                    if waiting.state == "pending" and waiting.leased_until <= now < waiting.due_at:
                        args = (waiting.id, now, waiting.attempts, waiting.last_error)
                        yield StoreCall("reschedule", args)
            entries: list[CaptureEntry] = yield StoreCall("claim", (now, self._lease, BATCH))
            self._rounds += 1
            if self._settings.watch.active and self._rounds % GAUGE_EVERY == 1:
                every: list[CaptureEntry] = yield StoreCall("captures", ())
                failed = sum(1 for waiting in every if waiting.state == "failed")
                self._settings.watch.captures_pending(len(every) - failed, failed)
        except StoreUnavailable as exc:
            self._log.warning("capture worker: the state store is unavailable (%s)", exc)
            return STORE_DOWN
        for entry in entries:
            try:
                record = CaptureRecord.from_payload(entry.payload)
                opened = self._tokens.open(record.sealed_token, int(CAPTURE_TTL), int(now))
            except ValueError:
                opened = None
            if opened is None or not isinstance(opened[0], str):
                # Sealed under a secret this process does not have, or not ours at all.
                self._log.error("capture %s cannot be opened here; left for its owner", entry.id)
                continue
            yield from self._attempt(entry, record, opened[0], recorded=True)
        return 0.0 if len(entries) == BATCH else IDLE

    def _attempt(
        self, entry: CaptureEntry, record: CaptureRecord, token: str, *, recorded: bool
    ) -> Flow[None]:
        attempts = entry.attempts + 1
        key = record.idempotency_key + ":capture"
        watch = self._settings.watch
        started = self._clock()
        try:
            flow = api.capture_charge(
                self._settings, token, record.charge_id, record.amount_micros, key
            )
            yield from flow
        except SmallTransfersError as error:
            took = self._clock() - started
            verdict = capture_verdict(error)
            if verdict == "confirmed":
                if recorded:
                    yield from self._settle(entry.id, "finish", (entry.id,))
                watch.capture("captured")
                self._report(record.event("captured", error.code, took), None)
            elif verdict == "retry" and recorded:
                due = self._clock() + backoff(attempts, self._random())
                self._log.warning(
                    "capture of charge %s failed (%s), attempt %d: retrying in %.1f s (key %s)",
                    record.charge_id,
                    api.describe(error),
                    attempts,
                    due - self._clock(),
                    record.idempotency_key,
                )
                later = (entry.id, due, attempts, api.describe(error)[:200])
                yield from self._settle(entry.id, "reschedule", later)
                watch.capture("retried")
            else:
                if recorded:
                    failed = (entry.id, attempts, api.describe(error)[:200], CAPTURE_TTL)
                    yield from self._settle(entry.id, "fail", failed)
                watch.capture("lost")
                self._report(record.event("capture_failed", error.code, took), error)
            return
        except BaseException:
            if not recorded:
                self._report(record.event("interrupted", "interrupted"), None)
            # Recorded: the lease lapses and the worker tries again.
            raise
        if recorded:
            yield from self._settle(entry.id, "finish", (entry.id,))
        watch.capture("captured")
        self._report(record.event("captured", None, self._clock() - started), None)

    def _settle(self, entry_id: str, method: str, args: tuple[Any, ...]) -> Flow[None]:
        try:
            yield StoreCall(method, args)
        except StoreUnavailable as exc:
            # The outcome is known and reported; at worst the worker tries the
            # capture again once the lease lapses, and 409 confirms it.
            self._log.warning("capture %s: the state store is unavailable (%s)", entry_id, exc)
