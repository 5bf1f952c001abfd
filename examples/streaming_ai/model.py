"""A stand-in language model: yields tokens one at a time, like a streamed AI answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

#: What one generated token costs the visitor: 0.00005 USD.
MICROS_PER_TOKEN = 50
#: The most one answer may cost: authorized before the model runs.
MAX_ANSWER_MICROS = 20_000

_ANSWER = (
    "Micropayments let a page cost what it is worth: a fraction of a cent for an answer, "
    "authorized up front, captured for the tokens actually written."
).split()


def tokens(prompt: str) -> Iterator[str]:
    """The answer to ``prompt``, one token (word) at a time."""
    limit = max(4, min(len(_ANSWER), len(prompt.split()) * 4))
    for word in _ANSWER[:limit]:
        yield word + " "


def sse(event: str, data: object) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
