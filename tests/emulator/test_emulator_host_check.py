"""The Host header: a defence against DNS rebinding.

A page on a hostile origin can point its own DNS name at 127.0.0.1 and then talk to the
emulator as same-origin. The browser still sends that name as Host, so the emulator
answers only to its own address and the loopback names (with its port), plus the names
given with `allowed_hosts` / `--allow-host`.
"""

from __future__ import annotations

import http.client
import re

import httpx
import pytest
from emulator_support import assert_problem

from st_middleware.emulator import Emulator
from st_middleware.emulator.__main__ import main

PATHS = [("GET", "/customer/dashboard"), ("GET", "/_emulator/health"), ("POST", "/api/v1/charges")]


def status_for(emu: Emulator, host: str, method: str = "GET", path: str = "/") -> int:
    with httpx.Client(base_url=f"http://127.0.0.1:{emu.port}") as client:
        return client.request(method, path, headers={"Host": host}).status_code


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:{port}",
        "evil.example",
        "127.0.0.1.evil.example:{port}",
        "localhost.evil.example:{port}",
        "localhost:1",
        "localhost",
        "127.0.0.1:{port}0",
        "[::1]",
        "user@localhost:{port}",
        "",
    ],
)
@pytest.mark.parametrize(("method", "path"), PATHS)
def test_a_foreign_host_is_misdirected(emu: Emulator, host: str, method: str, path: str) -> None:
    with httpx.Client(base_url=emu.url) as client:
        response = client.request(method, path, headers={"Host": host.format(port=emu.port)})
    assert_problem(response, 421, "misdirected_request")
    assert "--allow-host" in response.json()["detail"]


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
def test_loopback_names_with_the_port_pass(emu: Emulator, name: str) -> None:
    for method, path in PATHS:
        assert status_for(emu, f"{name}:{emu.port}", method, path) != 421


def test_a_request_without_host_is_misdirected(emu: Emulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        connection.putrequest("GET", "/_emulator/health", skip_host=True)
        connection.endheaders()
        assert connection.getresponse().status == 421
    finally:
        connection.close()


def test_a_refused_request_uses_up_no_fault(emu: Emulator) -> None:
    emu.set_faults(error="maintenance_mode", count=1)
    assert status_for(emu, "evil.example", "POST", "/api/v1/charges") == 421
    assert status_for(emu, f"127.0.0.1:{emu.port}", "POST", "/api/v1/charges") == 503


def test_allowed_hosts_add_names_with_or_without_a_port() -> None:
    with Emulator(port=0, allowed_hosts=["emu.test", "Proxy.Test:9000"]) as emu:
        assert status_for(emu, f"emu.test:{emu.port}") == 200
        assert status_for(emu, "EMU.TEST:1234") == 200  # no port given: any port
        assert status_for(emu, "emu.test") == 200
        assert status_for(emu, "proxy.test:9000") == 200
        assert status_for(emu, f"proxy.test:{emu.port}") == 421
        assert status_for(emu, f"other.test:{emu.port}") == 421


@pytest.mark.parametrize("bad", ["http://emu.test", "emu.test/", "a b", "emu.test:x", "::1", ""])
def test_a_malformed_allowed_host_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="allowed host"):
        Emulator(port=0, allowed_hosts=[bad])


def test_a_non_loopback_bound_address_is_accepted() -> None:
    # 127.0.0.2 stands in for a LAN address: a name the loopback list does not hold.
    with Emulator(host="127.0.0.2", port=0) as emu:
        assert emu.url == f"http://127.0.0.2:{emu.port}"
        with httpx.Client(base_url=emu.url) as client:
            assert client.get("/_emulator/health").status_code == 200
            assert client.get("/", headers={"Host": f"evil.example:{emu.port}"}).status_code == 421


def test_a_wildcard_bind_accepts_any_ip_address_but_no_unknown_name() -> None:
    # Reached by IP from other machines: an IP literal cannot be rebound, a DNS name can.
    with Emulator(host="0.0.0.0", port=0) as emu:
        for host in ("192.168.1.20", "0.0.0.0", "[fe80::1]", "localhost"):
            assert status_for(emu, f"{host}:{emu.port}") == 200, host
        assert status_for(emu, "192.168.1.20:1") == 421
        assert status_for(emu, f"evil.example:{emu.port}") == 421


def test_help_shows_defaults_fault_codes_and_allow_host(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "--host HOST address to listen on (default: 127.0.0.1)" in text
    assert "(default: 8100)" in text
    assert "(default: pk_test_emulator)" in text
    assert "--allow-host NAME" in text
    for code in ("maintenance_mode", "charge_limit_exceeded", "server_error"):
        assert code in text
    assert "default: None" not in text
