"""Priced downloads keep ``sendfile()`` under gunicorn, in authorize-capture mode.

gunicorn's sync worker sends a body with ``sendfile()`` only when the body it
gets *is* its ``wsgi.file_wrapper`` (``isinstance``); a middleware that wraps
the body to capture after it loses that, and every byte then goes through
Python (0 sendfile calls before the fix). The middleware now hands gunicorn's
``FileWrapper`` through and captures from its ``close()``.

Two witnesses: ``strace -e trace=sendfile`` attached to the worker for one
download (the syscalls, and the bytes they sent), and gunicorn's own
``Response.sendfile`` recorded inside the worker (``stack_download_app.py``),
which needs no ptrace.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack_support import Served, Servers, Spec, captured_row, gunicorn, wait_for

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow

SIZE = 1 << 20  # 1 MiB
CAPTURE = SIZE // 1024  # the app captures a micro per KiB
#: The bytes a finished call returned (a call strace splits shows "<... sendfile resumed>").
_RETURNED = re.compile(r"\)\s+=\s+(\d+)$")


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("download") / "big.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture(scope="module")
def server(servers: Servers, download: Path) -> Served:
    # One sync worker: the process strace attaches to is the one that serves.
    spec = Spec(
        "gunicorn",
        gunicorn("stack_download_app:app", "--worker-class", "sync"),
        env={"STACK_DOWNLOAD_FILE": str(download)},
    )
    [served] = servers.start(spec)
    return served


def worker_pid(server: Served) -> int:
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, f"expected one gunicorn worker, got {children}"
    return int(children[0])


@pytest.fixture
def traced_worker(server: Served, tmp_path: Path) -> Iterator[Path]:
    """strace on the gunicorn worker while the test runs; the file it writes the calls to."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install -y strace); see the other witness")
    calls, errors = tmp_path / "strace.out", tmp_path / "strace.err"
    command = ["strace", "-f", "-e", "trace=sendfile", "-o", str(calls)]
    with errors.open("wb") as stderr:
        tracer = subprocess.Popen(
            [*command, "-p", str(worker_pid(server))],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def attached() -> bool:
            if tracer.poll() is not None:
                pytest.skip(f"strace cannot attach here: {errors.read_text().strip()}")
            return "attached" in errors.read_text()

        wait_for(attached, 15, "strace to attach")
        yield calls
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)  # strace detaches and leaves the worker running
        try:
            tracer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()


def fetch(server: Served, emu: Emulator, customer: Customer) -> bytes:
    with server.client() as client:
        kit.sign_in(client, emu, customer)
        answer = client.get("/files/big.bin")
    assert answer.status_code == 200, server.tail()
    return answer.content


def test_strace_counts_sendfile_calls_for_one_priced_download(
    server: Served,
    download: Path,
    traced_worker: Path,
    st_emulator: Emulator,
    st_customer: Customer,
) -> None:
    body = fetch(server, st_emulator, st_customer)
    assert hashlib.sha256(body).digest() == hashlib.sha256(download.read_bytes()).digest()
    row = captured_row(st_emulator, st_customer)

    def traced() -> list[str] | None:
        lines = [line for line in _lines(traced_worker) if "sendfile" in line]
        return lines if _sent(lines) >= SIZE else None

    lines = wait_for(traced, 10, f"sendfile calls in {_lines(traced_worker)[-5:]}")
    calls = sum("sendfile(" in line for line in lines)
    assert calls >= 1, lines
    assert _sent(lines) == SIZE, "every byte of the file went out through sendfile()"
    assert (row.authorized_micros, row.captured_micros) == (5000, CAPTURE)
    assert kit.charges(st_emulator, st_customer) == [CAPTURE], "captured once"


def test_gunicorn_gets_its_file_wrapper_and_sends_it_with_sendfile(
    server: Served, st_emulator: Emulator, st_customer: Customer
) -> None:
    before = httpx.get(server.origin + "/probe/sendfile").json()
    assert len(fetch(server, st_emulator, st_customer)) == SIZE
    # Exactly one more call of gunicorn's Response.sendfile, and it did send.
    assert httpx.get(server.origin + "/probe/sendfile").json() == [*before, True]
    row = captured_row(st_emulator, st_customer)
    assert (row.authorized_micros, row.captured_micros) == (5000, CAPTURE)


def _sent(lines: list[str]) -> int:
    return sum(int(found.group(1)) for found in map(_RETURNED.search, lines) if found)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []
