"""Sign-in: the authorize page, its decisions, and the code-for-token exchange."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from emulator_support import REDIRECT_URI, assert_problem, exchange, form_token, hidden_fields

from st_middleware.emulator import Customer, Emulator


def authorize_params(emu: Emulator, **overrides: str) -> dict[str, str]:
    params = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "add-charge",
        "state": "xyz",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != ""}


def redirect_query(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 303
    location = response.headers["location"]
    return parse_qs(urlsplit(location).query)


# -- token exchange -------------------------------------------------------------------


def test_exchange_returns_token_and_customer(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    response = exchange(client, emu, emu.issue_code(customer.id, REDIRECT_URI))
    assert response.status_code == 200
    body = response.json()
    assert body["accessToken"]
    assert body["tokenType"] == "bearer"
    assert body["scope"] == "add-charge"
    assert body["customer"] == {
        "id": customer.id,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "live": False,
    }


def test_code_is_single_use(client: httpx.Client, emu: Emulator, customer: Customer) -> None:
    code = emu.issue_code(customer.id)
    assert exchange(client, emu, code).status_code == 200
    assert_problem(exchange(client, emu, code), 410, "authorization_code_gone")


def test_expired_code_is_gone() -> None:
    with Emulator(port=0, code_ttl=0.0) as emu, httpx.Client(base_url=emu.url) as client:
        code = emu.issue_code(emu.create_customer().id)
        assert_problem(exchange(client, emu, code), 410, "authorization_code_gone")


def test_wrong_secret_is_invalid_credentials(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    code = emu.issue_code(customer.id)
    assert_problem(exchange(client, emu, code, secretKey="sk_wrong"), 401, "invalid_credentials")
    assert_problem(
        exchange(client, emu, code, publishableKey="pk_unknown"), 401, "invalid_credentials"
    )
    # The failed attempts did not use the code up.
    assert exchange(client, emu, code).status_code == 200


def test_unknown_code_and_bad_grant_are_invalid_request(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    assert_problem(exchange(client, emu, "no-such-code"), 400, "invalid_request")
    code = emu.issue_code(customer.id)
    assert_problem(exchange(client, emu, code, grantType="password"), 400, "invalid_request")
    assert_problem(exchange(client, emu, code, authorizationCode=None), 400, "invalid_request")


def test_code_is_bound_to_its_merchant(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    emu.add_merchant("pk_test_other", "sk_test_other")
    code = emu.issue_code(customer.id)
    other = {"publishableKey": "pk_test_other", "secretKey": "sk_test_other"}
    assert_problem(exchange(client, emu, code, **other), 400, "invalid_request")


def test_tokens_of_a_revoked_grant_and_a_new_sign_in(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    assert emu.revoke(customer.id) == 1
    response = client.post("/api/v1/transactions", json={**keys, "amountMicros": 1})
    assert_problem(response, 403, "authorization_revoked")
    # Signing in again gives a working token.
    fresh = exchange(client, emu, emu.issue_code(customer.id)).json()["accessToken"]
    response = client.post(
        "/api/v1/transactions", json={**keys, "accessToken": fresh, "amountMicros": 1}
    )
    assert response.status_code == 201


# -- the authorize page ---------------------------------------------------------------


def test_authorize_page_renders_allow_and_deny(client: httpx.Client, emu: Emulator) -> None:
    response = client.get("/customer/authorize", params=authorize_params(emu))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<button id="allow" name="decision" value="allow">Allow</button>' in page
    assert 'id="deny"' in page
    assert 'value="deny"' in page
    # A fresh emulator offers a default customer so Allow works in one click.
    assert "test@example.com" in page
    assert [c.email for c in emu.customers()] == ["test@example.com"]
    assert "http://" not in page.split("<body>")[0]  # no external assets


def test_allow_redirects_with_code_and_state(client: httpx.Client, emu: Emulator) -> None:
    client.get("/customer/authorize", params=authorize_params(emu))
    customer_id = emu.customers()[0].id
    form = {**authorize_params(emu), "customer_id": customer_id, "decision": "allow"}
    response = client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    query = redirect_query(response)
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert query["state"] == ["xyz"]
    token = exchange(client, emu, query["code"][0])
    assert token.status_code == 200
    assert token.json()["customer"]["id"] == customer_id


def test_allow_creates_a_new_customer(client: httpx.Client, emu: Emulator) -> None:
    form = {
        **authorize_params(emu, state=""),
        "customer_id": "new",
        "new_first_name": "Grace",
        "new_last_name": "Hopper",
        "new_email": "grace@example.com",
        "new_limit_usd": "2.5",
        "decision": "allow",
    }
    response = client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    query = redirect_query(response)
    assert "state" not in query  # echoed only when sent
    created = [c for c in emu.customers() if c.email == "grace@example.com"]
    assert len(created) == 1
    assert created[0].limit_micros == 2_500_000
    assert f"st_emulator_customer={created[0].id}" in response.headers["set-cookie"]


def test_allow_with_bad_new_customer_rerenders_the_form(
    client: httpx.Client, emu: Emulator
) -> None:
    form = {
        **authorize_params(emu),
        "customer_id": "new",
        "new_first_name": "A",
        "new_last_name": "B",
        "new_email": "a@example.com",
        "new_limit_usd": "0.0000001",
        "decision": "allow",
    }
    response = client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    assert response.status_code == 400
    assert 'id="allow"' in response.text
    assert "location" not in response.headers


def test_deny_redirects_with_access_denied(client: httpx.Client, emu: Emulator) -> None:
    form = {**authorize_params(emu), "decision": "deny"}
    query = redirect_query(
        client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    )
    assert query == {"error": ["access_denied"], "state": ["xyz"]}


def test_redirect_keeps_the_uris_own_query(client: httpx.Client, emu: Emulator) -> None:
    uri = "http://localhost:3000/cb?tenant=7"
    form = {**authorize_params(emu, redirect_uri=uri), "decision": "deny"}
    response = client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    assert response.headers["location"].startswith("http://localhost:3000/cb?tenant=7&")
    assert redirect_query(response)["tenant"] == ["7"]


def test_redirect_url_alias_and_charge_scope(client: httpx.Client, emu: Emulator) -> None:
    params = authorize_params(emu, redirect_uri="", scope="charge")
    params["redirect_url"] = REDIRECT_URI
    assert client.get("/customer/authorize", params=params).status_code == 200
    customer_id = emu.customers()[0].id
    response = client.post(
        "/customer/authorize",
        data={**params, "customer_id": customer_id, "decision": "allow", **form_token(client, emu)},
    )
    code = redirect_query(response)["code"][0]
    assert exchange(client, emu, code).json()["scope"] == "charge"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"publishable_key": "pk_unknown"}, 400, "invalid_request"),
        ({"publishable_key": ""}, 400, "invalid_request"),
        ({"response_type": "token"}, 400, "invalid_request"),
        ({"response_type": ""}, 400, "invalid_request"),
        ({"scope": "admin"}, 400, "invalid_request"),
        ({"redirect_uri": ""}, 400, "invalid_request"),
        ({"redirect_uri": "https://evil.example/cb"}, 404, "redirect_uri_not_found"),
        ({"redirect_uri": "http://127.0.0.1.evil.example/cb"}, 404, "redirect_uri_not_found"),
    ],
)
def test_bad_sign_in_requests_get_an_error_page(
    client: httpx.Client, emu: Emulator, overrides: dict[str, str], status: int, code: str
) -> None:
    params = authorize_params(emu, **overrides)
    token = form_token(client, emu)
    for response in (
        client.get("/customer/authorize", params=params),
        client.post("/customer/authorize", data={**params, "decision": "allow", **token}),
    ):
        assert response.status_code == status
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert f'<code id="error-code">{code}</code>' in response.text


def test_registered_redirect_uris_are_matched_exactly() -> None:
    registered = "https://app.example/smalltransfers/callback"
    with (
        Emulator(port=0, redirect_uris=[registered]) as emu,
        httpx.Client(base_url=emu.url) as client,
    ):
        params = authorize_params(emu, redirect_uri=registered)
        page = client.get("/customer/authorize", params=params)
        assert page.status_code == 200
        token = hidden_fields(page.text, "/customer/authorize")["csrf_token"]
        for uri in (REDIRECT_URI, registered + "/", registered + "?x=1"):
            params = authorize_params(emu, redirect_uri=uri, csrf_token=token)
            response = client.post("/customer/authorize", data={**params, "decision": "deny"})
            assert response.status_code == 404
            assert "location" not in response.headers


def test_inactive_merchant_cannot_start_a_sign_in(client: httpx.Client, emu: Emulator) -> None:
    emu.add_merchant("pk_test_off", "sk_test_off", active=False)
    params = authorize_params(emu, publishable_key="pk_test_off")
    response = client.get("/customer/authorize", params=params)
    assert response.status_code == 403
    assert "merchant_inactive" in response.text


def test_issue_code_checks_the_redirect_uri(emu: Emulator, customer: Customer) -> None:
    with pytest.raises(ValueError, match="redirect URI"):
        emu.issue_code(customer.id, "https://evil.example/cb")
    with pytest.raises(ValueError, match="unknown customer"):
        emu.issue_code("cus_nope")
