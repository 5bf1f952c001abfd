"""The command line (a real subprocess) and the ledger under 200 concurrent requests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from st_middleware.emulator import Emulator

# Real subprocesses and 200-connection bursts: the project's "slow" integration tests.
pytestmark = pytest.mark.slow

URL_LINE = re.compile(
    r"Small Transfers emulator on (http://127\.0\.0\.1:(\d+)) — publishable key: (\S+) "
    r"secret key: (\S+)"
)


@contextmanager
def running_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    """Start `python -m st_middleware.emulator --port 0 ARGS`; always reaped at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "st_middleware.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = URL_LINE.search(line)
        assert match, f"unexpected first line: {line!r}"
        yield process, match
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def stop(process: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=20)
    return process.returncode, out, err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_url_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    with running_cli("--publishable-key", "pk_test_cli", "--secret-key", "sk_test_cli") as (
        process,
        match,
    ):
        url, port, publishable_key, secret_key = match.groups()
        assert int(port) > 0
        assert (publishable_key, secret_key) == ("pk_test_cli", "sk_test_cli")
        assert httpx.get(url + "/_emulator/health").json() == {"ok": True}
        # Admin is off unless asked for.
        assert httpx.get(url + "/_emulator/ledger").status_code == 404
        code, _, err = stop(process, sig)
    assert code == 0
    assert "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_flags_admin_faults_and_redirect_uris() -> None:
    registered = "http://localhost:5000/cb"
    with running_cli(
        "--admin", "--fail-with", "maintenance_mode", "--redirect-uri", registered
    ) as (process, match):
        url = match.group(1)
        response = httpx.post(url + "/api/v1/transactions", json={})
        assert response.status_code == 503
        assert response.json()["code"] == "maintenance_mode"
        assert httpx.get(url + "/_emulator/faults").json()["faults"]["error"] == "maintenance_mode"
        params = {"publishable_key": "pk_test_emulator", "response_type": "code"}
        ok = httpx.get(url + "/customer/authorize", params={**params, "redirect_uri": registered})
        assert ok.status_code == 200
        other = httpx.get(
            url + "/customer/authorize",
            params={**params, "redirect_uri": "http://localhost:5001/cb"},
        )
        assert other.status_code == 404
        assert stop(process, signal.SIGTERM)[0] == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_allow_host_adds_names_to_the_host_check() -> None:
    with running_cli("--allow-host", "emu.test", "--allow-host", "proxy.test:9000") as (
        process,
        match,
    ):
        url, port = match.group(1), match.group(2)
        for host in (f"emu.test:{port}", "proxy.test:9000", f"localhost:{port}"):
            assert httpx.get(url + "/", headers={"Host": host}).status_code == 200, host
        assert httpx.get(url + "/", headers={"Host": f"evil.test:{port}"}).status_code == 421
        assert stop(process, signal.SIGTERM)[0] == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_db_keeps_customers_across_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "emulator.sqlite3")
    with running_cli("--db", db, "--admin") as (process, match):
        created = httpx.post(
            match.group(1) + "/_emulator/customers", json={"email": "kept@example.com"}
        ).json()
        assert stop(process, signal.SIGTERM)[0] == 0
    with running_cli("--db", db, "--admin") as (process, match):
        customers = httpx.get(match.group(1) + "/_emulator/customers").json()
        assert [c["id"] for c in customers] == [created["id"]]
        assert stop(process, signal.SIGTERM)[0] == 0


def test_cli_rejects_conflicting_faults() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "st_middleware.emulator",
            "--port",
            "0",
            "--fail-with",
            "server_error",
            "--drop",
            "before",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "choose one of" in result.stderr


# -- 200 concurrent requests ----------------------------------------------------------

CONCURRENCY = 200


async def _fire(url: str, bodies: list[dict[str, object]], path: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        return await asyncio.gather(
            *(
                client.post(path, json=body, headers={"Idempotency-Key": f"k{i}"})
                for i, body in enumerate(bodies)
            )
        )


def test_200_concurrent_transactions_land_exactly_once() -> None:
    with Emulator(port=0) as emu:
        customer = emu.create_customer(limit_micros=10**12)
        keys = {
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "accessToken": emu.issue_token(customer.id),
        }
        bodies: list[dict[str, object]] = [
            {**keys, "amountMicros": 1000 + i} for i in range(CONCURRENCY)
        ]
        responses = asyncio.run(_fire(emu.url, bodies, "/api/v1/transactions"))
        assert [r.status_code for r in responses] == [201] * CONCURRENCY
        ledger = emu.ledger()
        assert len(ledger) == CONCURRENCY
        assert sum(r.captured_micros for r in ledger) == sum(1000 + i for i in range(CONCURRENCY))
        assert {r.id for r in ledger} == {r.json()["id"] for r in responses}
        assert sorted(r.idempotency_key or "" for r in ledger) == sorted(
            f"k{i}" for i in range(CONCURRENCY)
        )


def test_spending_limit_holds_under_concurrency() -> None:
    with Emulator(port=0) as emu:
        # Room for exactly 50 of the 200 authorizations.
        customer = emu.create_customer(limit_micros=50 * 1000)
        keys = {
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "accessToken": emu.issue_token(customer.id),
        }
        bodies: list[dict[str, object]] = [
            {**keys, "currency": "usd", "amountMicros": 1000} for _ in range(CONCURRENCY)
        ]
        responses = asyncio.run(_fire(emu.url, bodies, "/api/v1/charges"))
        statuses = [r.status_code for r in responses]
        assert statuses.count(201) == 50
        assert statuses.count(402) == CONCURRENCY - 50
        assert emu.spent(customer.id) == 50 * 1000
        assert len(emu.ledger()) == 50
