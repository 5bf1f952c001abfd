"""The emulator's SQLite database: merchants, customers, codes, tokens and the ledger.

One connection serves every thread, guarded by a lock; every operation that reads and
then writes money runs in one `BEGIN IMMEDIATE` transaction under that lock, so a
spending-limit check and the insert it allows can never interleave with another
request. The rules of the ledger live here and raise `ApiError` with the API's codes.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .messages import ApiError
from .records import ChargeKind, ChargeRecord, Customer, Grant, Merchant

DEFAULT_LIMIT_MICROS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (
    publishable_key TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL,
    redirect_uris TEXT NOT NULL DEFAULT '[]',
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL,
    live INTEGER NOT NULL DEFAULT 0,
    limit_micros INTEGER NOT NULL,
    blocked INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    code TEXT PRIMARY KEY,
    merchant TEXT NOT NULL REFERENCES merchants,
    customer_id TEXT NOT NULL REFERENCES customers,
    redirect_uri TEXT,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    merchant TEXT NOT NULL REFERENCES merchants,
    customer_id TEXT NOT NULL REFERENCES customers,
    scope TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS tokens_by_customer ON tokens (customer_id, merchant);
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    merchant TEXT NOT NULL REFERENCES merchants,
    customer_id TEXT NOT NULL REFERENCES customers,
    kind TEXT NOT NULL CHECK (kind IN ('transaction', 'charge')),
    state TEXT NOT NULL CHECK (state IN ('authorized', 'captured', 'lapsed')),
    authorized_micros INTEGER NOT NULL CHECK (authorized_micros >= 0),
    captured_micros INTEGER NOT NULL CHECK (captured_micros >= 0),
    idempotency_key TEXT,
    created_at REAL NOT NULL,
    expires_at REAL,
    captured_at REAL
);
CREATE INDEX IF NOT EXISTS charges_by_customer ON charges (customer_id, state);
CREATE INDEX IF NOT EXISTS charges_by_state ON charges (state, expires_at);
"""

# What a customer has spent: captured amounts plus authorizations still holding funds.
# Callers sweep lapsed authorizations first, so 'authorized' rows are all still valid.
_SPENT_SQL = """
SELECT COALESCE(SUM(CASE state WHEN 'captured' THEN captured_micros
                               WHEN 'authorized' THEN authorized_micros
                               ELSE 0 END), 0)
FROM charges WHERE customer_id = ?
"""

# Compared against when the publishable key is unknown, so both failures take the same time.
_DUMMY_SECRET = secrets.token_urlsafe(24).encode()


class Store:
    """Thread-safe access to the emulator's database (`":memory:"` or a file path)."""

    def __init__(
        self,
        path: str = ":memory:",
        *,
        authorization_ttl: float = 900.0,
        code_ttl: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authorization_ttl = authorization_ttl
        self.code_ttl = code_ttl
        self._clock = clock
        self._lock = threading.RLock()
        # isolation_level=None: transactions are begun explicitly by `_transaction`.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database; an in-memory one is gone after this."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- merchants ---------------------------------------------------------------------

    def put_merchant(
        self,
        publishable_key: str,
        secret_key: str,
        redirect_uris: tuple[str, ...] = (),
        active: bool = True,
    ) -> Merchant:
        """Create the merchant, or replace its secret, redirect URIs and status."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO merchants (publishable_key, secret_key, redirect_uris, active)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (publishable_key) DO UPDATE SET"
                " secret_key = excluded.secret_key, redirect_uris = excluded.redirect_uris,"
                " active = excluded.active",
                (publishable_key, secret_key, json.dumps(list(redirect_uris)), int(active)),
            )
        return Merchant(publishable_key, secret_key, tuple(redirect_uris), active)

    def merchant(self, publishable_key: str) -> Merchant | None:
        """The merchant with this publishable key, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM merchants WHERE publishable_key = ?", (publishable_key,)
            ).fetchone()
        return _merchant(row) if row else None

    def merchants(self) -> list[Merchant]:
        """All merchants, by publishable key."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM merchants ORDER BY publishable_key").fetchall()
        return [_merchant(row) for row in rows]

    # -- customers ---------------------------------------------------------------------

    def create_customer(
        self,
        first_name: str,
        last_name: str,
        email: str,
        limit_micros: int = DEFAULT_LIMIT_MICROS,
        blocked: bool = False,
    ) -> Customer:
        """A new test customer (`live` is always false here)."""
        if type(limit_micros) is not int or limit_micros < 0:
            raise ValueError("limit_micros must be a non-negative int")
        customer = Customer(
            id="cus_" + secrets.token_hex(8),
            first_name=first_name,
            last_name=last_name,
            email=email,
            live=False,
            limit_micros=limit_micros,
            blocked=blocked,
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO customers (id, first_name, last_name, email, live, limit_micros,"
                " blocked, created_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    customer.id,
                    first_name,
                    last_name,
                    email,
                    limit_micros,
                    int(blocked),
                    self._clock(),
                ),
            )
        return customer

    def customer(self, customer_id: str) -> Customer | None:
        """The customer with this id, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM customers WHERE id = ?", (customer_id,)
            ).fetchone()
        return _customer(row) if row else None

    def customers(self) -> list[Customer]:
        """All customers, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM customers ORDER BY created_at, id").fetchall()
        return [_customer(row) for row in rows]

    def update_customer(
        self, customer_id: str, *, limit_micros: int | None = None, blocked: bool | None = None
    ) -> Customer:
        """Change a customer's spending limit or blocked flag."""
        if limit_micros is not None and (type(limit_micros) is not int or limit_micros < 0):
            raise ValueError("limit_micros must be a non-negative int")
        with self._transaction() as db:
            found = db.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,))
            if found.fetchone() is None:
                raise KeyError(customer_id)
            if limit_micros is not None:
                db.execute(
                    "UPDATE customers SET limit_micros = ? WHERE id = ?",
                    (limit_micros, customer_id),
                )
            if blocked is not None:
                db.execute(
                    "UPDATE customers SET blocked = ? WHERE id = ?", (int(blocked), customer_id)
                )
            row = db.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
        return _customer(row)

    def spent(self, customer_id: str) -> int:
        """Micros counted against the customer's limit now."""
        with self._transaction() as db:
            self._sweep_lapsed(db)
            return int(db.execute(_SPENT_SQL, (customer_id,)).fetchone()[0])

    # -- sign-in -----------------------------------------------------------------------

    def issue_code(
        self, merchant: str, customer_id: str, redirect_uri: str | None, scope: str
    ) -> str:
        """A single-use authorization code for this merchant and customer."""
        code = secrets.token_urlsafe(24)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO codes (code, merchant, customer_id, redirect_uri, scope, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (code, merchant, customer_id, redirect_uri, scope, self._clock()),
            )
        return code

    def issue_token(self, merchant: str, customer_id: str, scope: str) -> str:
        """An access token straight away, as a completed sign-in would give."""
        with self._transaction() as db:
            return self._insert_token(db, merchant, customer_id, scope)

    def exchange_code(
        self, publishable_key: str, secret_key: str, code: str
    ) -> tuple[str, str, Customer]:
        """Trade a code for `(access_token, scope, customer)`, using the code up.

        An unknown code, or one issued to another merchant, is `invalid_request` (400):
        the service cannot tell it from a typo. A used or expired code is
        `authorization_code_gone` (410).
        """
        with self._transaction() as db:
            self._authenticate(db, publishable_key, secret_key)
            row = db.execute("SELECT * FROM codes WHERE code = ?", (code,)).fetchone()
            if row is None or row["merchant"] != publishable_key:
                raise ApiError("invalid_request", "Unknown authorization code.")
            if row["used"] or self._clock() >= row["created_at"] + self.code_ttl:
                raise ApiError(
                    "authorization_code_gone",
                    "The authorization code was already used or has expired.",
                )
            db.execute("UPDATE codes SET used = 1 WHERE code = ?", (code,))
            token = self._insert_token(db, publishable_key, row["customer_id"], row["scope"])
            customer = db.execute(
                "SELECT * FROM customers WHERE id = ?", (row["customer_id"],)
            ).fetchone()
            return token, row["scope"], _customer(customer)

    def _insert_token(
        self, db: sqlite3.Connection, merchant: str, customer_id: str, scope: str
    ) -> str:
        token = "st_at_" + secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO tokens (token, merchant, customer_id, scope, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (token, merchant, customer_id, scope, self._clock()),
        )
        return token

    def revoke(self, customer_id: str, merchant: str | None = None) -> int:
        """Revoke the customer's tokens (for one merchant, or all); returns how many."""
        with self._transaction() as db:
            sql = "UPDATE tokens SET revoked_at = ? WHERE customer_id = ? AND revoked_at IS NULL"
            args: tuple[Any, ...] = (self._clock(), customer_id)
            if merchant is not None:
                sql += " AND merchant = ?"
                args += (merchant,)
            return db.execute(sql, args).rowcount

    def grants(self, customer_id: str) -> list[Grant]:
        """The merchants this customer has signed in to, with their live token counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT merchant, MAX(scope) AS scope, MIN(created_at) AS granted_at,"
                " SUM(revoked_at IS NULL) AS active FROM tokens WHERE customer_id = ?"
                " GROUP BY merchant ORDER BY merchant",
                (customer_id,),
            ).fetchall()
        return [
            Grant(row["merchant"], customer_id, row["scope"], row["granted_at"], row["active"])
            for row in rows
        ]

    # -- money -------------------------------------------------------------------------

    def charge(
        self,
        publishable_key: str,
        secret_key: str,
        access_token: str,
        amount_micros: int,
        kind: ChargeKind,
        idempotency_key: str | None,
    ) -> ChargeRecord:
        """Record a transaction (captured at once) or an authorization, within the limit."""
        with self._transaction() as db:
            self._authenticate(db, publishable_key, secret_key)
            customer = self._customer_for_token(db, publishable_key, access_token)
            if customer.blocked:
                raise ApiError("charges_blocked", "Charges are blocked for this customer.")
            self._sweep_lapsed(db)
            spent = int(db.execute(_SPENT_SQL, (customer.id,)).fetchone()[0])
            if spent + amount_micros > customer.limit_micros:
                raise ApiError(
                    "charge_limit_exceeded",
                    "The charge would exceed the customer's spending limit.",
                )
            now = self._clock()
            if kind == "transaction":
                record = ChargeRecord(
                    "tx_" + secrets.token_hex(12),
                    publishable_key,
                    customer.id,
                    kind,
                    "captured",
                    amount_micros,
                    amount_micros,
                    idempotency_key,
                    now,
                    captured_at=now,
                )
            else:
                record = ChargeRecord(
                    "ch_" + secrets.token_hex(12),
                    publishable_key,
                    customer.id,
                    kind,
                    "authorized",
                    amount_micros,
                    0,
                    idempotency_key,
                    now,
                    expires_at=now + self.authorization_ttl,
                )
            db.execute(
                "INSERT INTO charges (id, merchant, customer_id, kind, state, authorized_micros,"
                " captured_micros, idempotency_key, created_at, expires_at, captured_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.merchant,
                    record.customer_id,
                    record.kind,
                    record.state,
                    record.authorized_micros,
                    record.captured_micros,
                    record.idempotency_key,
                    record.created_at,
                    record.expires_at,
                    record.captured_at,
                ),
            )
            return record

    def capture(
        self,
        publishable_key: str,
        secret_key: str,
        access_token: str,
        charge_id: str,
        amount_micros: int,
    ) -> ChargeRecord:
        """Capture up to the authorized amount of one of this merchant's charges (0 allowed)."""
        with self._transaction() as db:
            self._authenticate(db, publishable_key, secret_key)
            customer = self._customer_for_token(db, publishable_key, access_token)
            self._sweep_lapsed(db)
            # Another merchant's or another customer's charge is reported as unknown.
            row = db.execute(
                "SELECT * FROM charges WHERE id = ? AND merchant = ? AND customer_id = ?"
                " AND kind = 'charge'",
                (charge_id, publishable_key, customer.id),
            ).fetchone()
            if row is None:
                raise ApiError("charge_not_found", "No such charge.")
            if row["state"] == "lapsed":
                raise ApiError("charge_expired", "The authorization has lapsed.")
            if row["state"] == "captured":
                raise ApiError("charge_already_captured", "The charge was already captured.")
            if amount_micros > row["authorized_micros"]:
                raise ApiError(
                    "charge_amount_exceeds_authorized", "The amount exceeds the authorized amount."
                )
            now = self._clock()
            db.execute(
                "UPDATE charges SET state = 'captured', captured_micros = ?, captured_at = ?"
                " WHERE id = ?",
                (amount_micros, now, charge_id),
            )
            row = db.execute("SELECT * FROM charges WHERE id = ?", (charge_id,)).fetchone()
            return _charge(row)

    def ledger(self, customer_id: str | None = None) -> list[ChargeRecord]:
        """Ledger rows in the order they were written, for one customer or all."""
        with self._transaction() as db:
            self._sweep_lapsed(db)
            if customer_id is None:
                rows = db.execute("SELECT * FROM charges ORDER BY rowid").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM charges WHERE customer_id = ? ORDER BY rowid", (customer_id,)
                ).fetchall()
        return [_charge(row) for row in rows]

    # -- helpers (called inside a transaction) ---------------------------------------

    def _sweep_lapsed(self, db: sqlite3.Connection) -> None:
        # Authorizations lapse lazily: whoever next looks at the ledger marks them.
        db.execute(
            "UPDATE charges SET state = 'lapsed' WHERE state = 'authorized' AND expires_at <= ?",
            (self._clock(),),
        )

    @staticmethod
    def _authenticate(db: sqlite3.Connection, publishable_key: str, secret_key: str) -> None:
        row = db.execute(
            "SELECT secret_key, active FROM merchants WHERE publishable_key = ?",
            (publishable_key,),
        ).fetchone()
        expected = row["secret_key"].encode() if row else _DUMMY_SECRET
        given = secret_key.encode()
        # Constant-time comparison: the time taken says nothing about the secret.
        if not hmac.compare_digest(expected, given) or row is None:
            raise ApiError("invalid_credentials", "Invalid publishable key or secret key.")
        if not row["active"]:
            raise ApiError("merchant_inactive", "This merchant account is not active.")

    @staticmethod
    def _customer_for_token(db: sqlite3.Connection, merchant: str, token: str) -> Customer:
        row = db.execute(
            "SELECT customers.*, tokens.revoked_at FROM tokens"
            " JOIN customers ON customers.id = tokens.customer_id"
            " WHERE tokens.token = ? AND tokens.merchant = ?",
            (token, merchant),
        ).fetchone()
        if row is None:
            raise ApiError("invalid_access_token", "Unknown access token.")
        if row["revoked_at"] is not None:
            raise ApiError("authorization_revoked", "The customer revoked this authorization.")
        return _customer(row)


def _merchant(row: sqlite3.Row) -> Merchant:
    return Merchant(
        row["publishable_key"],
        row["secret_key"],
        tuple(json.loads(row["redirect_uris"])),
        bool(row["active"]),
    )


def _customer(row: sqlite3.Row) -> Customer:
    return Customer(
        row["id"],
        row["first_name"],
        row["last_name"],
        row["email"],
        bool(row["live"]),
        row["limit_micros"],
        bool(row["blocked"]),
    )


def _charge(row: sqlite3.Row) -> ChargeRecord:
    return ChargeRecord(
        row["id"],
        row["merchant"],
        row["customer_id"],
        row["kind"],
        row["state"],
        row["authorized_micros"],
        row["captured_micros"],
        row["idempotency_key"],
        row["created_at"],
        row["expires_at"],
        row["captured_at"],
    )
