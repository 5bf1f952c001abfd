"""Fault injection for `/api/v1/*`: what can go wrong between a merchant and Small Transfers.

A `FaultPlan` applies to the next `count` API requests whose path starts with `path`
(every one until cleared when `count` is None). `latency` delays the answer and combines
with any one of the other kinds:

- `error`: answer with that API error code and its status; the ledger is not touched.
- `drop="before"`: close the connection without processing or answering.
- `drop="after"`: process the request (the ledger IS written), then close without answering.
- `malformed`: process, then answer 200 with a body that is not JSON.
- `huge_body`: process, then answer 200 with a ~10 MB body.
- `endless_body`: process, then answer 200 and trickle body bytes until the client hangs up.

The last three stand for an answer broken on its way back, so the charge did happen.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from .messages import ERROR_STATUSES, Response

HUGE_BODY_BYTES = 10 * 1024 * 1024
TRICKLE_INTERVAL = 0.05  # seconds between two bytes of an endless body
API_PREFIX = "/api/v1/"

DropWhen = Literal["before", "after"]


@dataclass(frozen=True)
class FaultPlan:
    """What to do to the next matching API requests. At most one kind besides `latency`."""

    latency: float = 0.0
    error: str | None = None
    drop: DropWhen | None = None
    malformed: bool = False
    huge_body: bool = False
    endless_body: bool = False
    count: int | None = None
    path: str = API_PREFIX

    def __post_init__(self) -> None:
        # Checked here rather than in the JSON parser so the Python API gets the same errors.
        if (
            isinstance(self.latency, bool)
            or not isinstance(self.latency, (int, float))
            or not math.isfinite(self.latency)
            or self.latency < 0
        ):
            raise ValueError("latency must be a non-negative number of seconds")
        if self.error is not None and self.error not in ERROR_STATUSES:
            raise ValueError(f"error must be one of the API error codes, not {self.error!r}")
        if self.drop not in (None, "before", "after"):
            raise ValueError('drop must be "before", "after" or null')
        for name in ("malformed", "huge_body", "endless_body"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean")
        if self.count is not None and (type(self.count) is not int or self.count < 1):
            raise ValueError("count must be a positive integer or null")
        if not isinstance(self.path, str) or not self.path.startswith("/api/v1"):
            raise ValueError("path must be a prefix starting with /api/v1")
        kinds = [
            self.error is not None,
            self.drop is not None,
            self.malformed,
            self.huge_body,
            self.endless_body,
        ]
        if sum(kinds) > 1:
            raise ValueError("choose one of error, drop, malformed, huge_body, endless_body")
        if sum(kinds) == 0 and not self.latency:
            raise ValueError("a fault plan needs latency or one fault kind")

    @classmethod
    def from_json(cls, payload: Any) -> FaultPlan:
        """A plan from the admin endpoint's JSON object (the same names as the keywords)."""
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        unknown = set(payload) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**payload)

    def to_json(self) -> dict[str, Any]:
        """The plan as the admin endpoint shows it."""
        return asdict(self)

    @property
    def processes(self) -> bool:
        """Whether the request still reaches the ledger under this plan."""
        return self.error is None and self.drop != "before"


class Faults:
    """The active plan, consumed request by request; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None
        self._remaining: int | None = None

    def set(self, plan: FaultPlan) -> None:
        """Replace the active plan."""
        with self._lock:
            self._plan, self._remaining = plan, plan.count

    def clear(self) -> None:
        """Stop injecting faults."""
        with self._lock:
            self._plan = self._remaining = None

    def describe(self) -> dict[str, Any] | None:
        """The active plan and how many requests it still applies to (None: until cleared)."""
        with self._lock:
            if self._plan is None:
                return None
            return {**self._plan.to_json(), "remaining": self._remaining}

    def take(self, path: str) -> FaultPlan | None:
        """The plan for this request, counting it against the plan's budget."""
        with self._lock:
            plan = self._plan
            if plan is None or not path.startswith(API_PREFIX) or not path.startswith(plan.path):
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining == 0:
                    self._plan = self._remaining = None
            return plan


def malformed_response() -> Response:
    """A 200 whose body claims to be JSON and is not (a proxy's error page, say)."""
    body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    return Response(200, [("Content-Type", "application/json")], body)


def huge_response() -> Response:
    """A 200 whose JSON body is about 10 MB of padding."""
    body = b'{"padding":"' + b"x" * HUGE_BODY_BYTES + b'"}'
    return Response(200, [("Content-Type", "application/json")], body)


def trickle(write: Callable[[bytes], object], stopping: threading.Event) -> None:
    """Write one byte at a time, slowly, until the peer goes away or the server stops."""
    try:
        write(b'{"padding":"')
        # Event.wait doubles as the pause, so a stopping server ends the loop at once.
        while not stopping.wait(TRICKLE_INTERVAL):
            write(b"x")
    except OSError:
        return  # the client hung up: the point of this fault
