"""The customer a request comes from, as Small Transfers described them at sign-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Customer"]


@dataclass(frozen=True, slots=True)
class Customer:
    """A signed-in Small Transfers customer.

    Found in ``environ["smalltransfers.customer"]`` (WSGI) or
    ``scope["smalltransfers.customer"]`` (ASGI); ``None`` there means nobody is
    signed in. ``live`` is ``False`` for test-mode customers.
    """

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    live: bool = False

    @property
    def name(self) -> str:
        """First and last name, for greetings."""
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @classmethod
    def from_api(cls, data: Any) -> Customer:
        """Read the ``customer`` object of a token reply (camelCase keys).

        Raises ``ValueError`` when the shape is not the documented one.
        """
        if not isinstance(data, dict):
            raise ValueError("customer is not an object")
        customer_id = data.get("id")
        if not isinstance(customer_id, (str, int)) or isinstance(customer_id, bool):
            raise ValueError("customer.id missing")
        return cls(
            id=str(customer_id),
            first_name=_text(data.get("firstName")),
            last_name=_text(data.get("lastName")),
            email=_text(data.get("email")),
            live=data.get("live") is True,
        )

    def to_compact(self) -> list[Any]:
        """A short form for the session cookie (every byte counts under 4096)."""
        return [self.id, self.first_name, self.last_name, self.email, self.live]

    @classmethod
    def from_compact(cls, data: Any) -> Customer:
        """The inverse of :meth:`to_compact`; ``ValueError`` on any other shape."""
        if not isinstance(data, list) or len(data) != 5:
            raise ValueError("bad customer shape")
        cid, first, last, email, live = data
        if not all(isinstance(v, str) for v in (cid, first, last, email)) or not isinstance(
            live, bool
        ):
            raise ValueError("bad customer shape")
        return cls(cid, first, last, email, live)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
