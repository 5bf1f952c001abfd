"""Loopback redirect URIs: only ones a browser reads exactly as the emulator does.

With no registered redirect URI the emulator accepts loopback ones (local development).
Each URI below is one a lenient parser (`urllib.parse.urlsplit`) and a browser (the WHATWG
URL standard) can read differently, or one that is simply not a plain loopback URL: the
sign-in page must answer with an error page (never a redirect) and `issue_code` must refuse.
"""

from __future__ import annotations

import httpx
import pytest
from emulator_support import REDIRECT_URI, authorize_form, exchange

from st_middleware.emulator import Customer, Emulator
from st_middleware.emulator.records import is_loopback_uri

EVIL = [
    # A browser reads "\" as "/": the host is evil.com and "@127.0.0.1/cb" is the path.
    "http://evil.com\\@127.0.0.1/cb",
    "http://evil.com\\@localhost:8000/smalltransfers/callback",
    "http://evil.com\\\\@127.0.0.1/cb",
    "http://127.0.0.1\\@evil.com/cb",
    "http://localhost\\evil.com/cb",
    "http:\\\\evil.com\\@127.0.0.1/cb",
    # Userinfo: whatever precedes "@" is not the host.
    "http://evil.com@127.0.0.1/cb",
    "http://user:pass@localhost/cb",
    "http://127.0.0.1:80@evil.com/",
    "http://[::1]@evil.com/cb",
    "http://evil.com%5c@127.0.0.1/cb",
    "http://evil.com%40127.0.0.1/cb",
    # Hosts that merely start with a loopback name.
    "http://127.0.0.1.evil.com/cb",
    "http://localhost.evil.com/cb",
    "http://LOCALHOST.evil.com/cb",
    "http://localhost./cb",
    # Whitespace and control characters (browsers drop tabs and newlines, then reparse).
    "http://127.0.0.1\t.evil.com/cb",
    "http://127.0.0.1/cb\n",
    "http://127.0.0.1/c\tb",
    "http://127.0.0.1/cb?x=a b",
    " http://127.0.0.1/cb",
    "http://127.0.0.1/cb\x00",
    # No scheme, or not http(s).
    "//evil.com/cb",
    "//127.0.0.1/cb",
    "javascript://127.0.0.1/%0aalert(1)",
    "ftp://127.0.0.1/cb",
    "HTTP://127.0.0.1/cb",
    # Encoded, numeric and non-ASCII spellings of a host.
    "http://%6c%6fcalhost/cb",
    "http://localhost%2eevil.com/cb",
    "http://0x7f.0.0.1/cb",
    "http://2130706433/cb",
    "http://127.1/cb",
    "http://[::ffff:127.0.0.1]/cb",
    "http://127.0.0.1\u3002evil.com/cb",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/cb",
    # Malformed ports, a fragment, nothing after the scheme.
    "http://localhost:99999/cb",
    "http://localhost:8000:9000/cb",
    "http://localhost:/cb",
    "http://127.0.0.1/cb#frag",
    "http://",
]

GOOD = [
    "http://127.0.0.1:8000/smalltransfers/callback",
    "http://localhost/cb?x=1",
    "http://[::1]:9/cb",
    "https://localhost:8443/a/b?c=d&e=%2F",
    "http://LocalHost:3000/cb",
    "http://127.0.0.1",
    "http://localhost?next=/x",
]


@pytest.mark.parametrize("uri", EVIL)
def test_an_ambiguous_or_foreign_redirect_uri_is_refused_everywhere(
    client: httpx.Client, emu: Emulator, customer: Customer, uri: str
) -> None:
    assert not is_loopback_uri(uri)
    with pytest.raises(ValueError, match="redirect URI"):
        emu.issue_code(customer.id, uri)
    answer = client.post("/_emulator/codes", json={"customer_id": customer.id, "redirect_uri": uri})
    assert answer.status_code == 422

    params = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": uri,
        "response_type": "code",
    }
    # Allow on a genuine page, with the redirect URI swapped for the hostile one.
    form = {**authorize_form(client, emu), **params, "customer_id": customer.id}
    for response in (
        client.get("/customer/authorize", params=params),
        client.post("/customer/authorize", data={**form, "decision": "allow"}),
        client.post("/customer/authorize", data={**form, "decision": "deny"}),
    ):
        assert response.status_code == 404, response.text
        assert "location" not in response.headers
        assert '<code id="error-code">redirect_uri_not_found</code>' in response.text


@pytest.mark.parametrize("uri", GOOD)
def test_a_plain_loopback_redirect_uri_is_accepted(
    client: httpx.Client, emu: Emulator, customer: Customer, uri: str
) -> None:
    assert is_loopback_uri(uri)
    assert exchange(client, emu, emu.issue_code(customer.id, uri)).status_code == 200
    form = authorize_form(client, emu, redirect_uri=uri)
    response = client.post(
        "/customer/authorize", data={**form, "customer_id": customer.id, "decision": "allow"}
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(uri.partition("?")[0])


def test_a_registered_redirect_uri_is_compared_exactly_even_when_odd() -> None:
    # A merchant's own registration is taken as written: exact match, no loopback rule.
    registered = "https://app.example/cb"
    with Emulator(port=0, redirect_uris=[registered]) as emu:
        customer = emu.create_customer()
        assert emu.issue_code(customer.id, registered)
        for uri in (REDIRECT_URI, "https://APP.example/cb", "https://app.example/cb/"):
            with pytest.raises(ValueError, match="redirect URI"):
                emu.issue_code(customer.id, uri)
