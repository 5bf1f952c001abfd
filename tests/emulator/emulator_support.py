"""Helpers shared by the emulator's tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx

from st_middleware.emulator import Emulator

REDIRECT_URI = "http://127.0.0.1:8000/smalltransfers/callback"


def exchange(client: httpx.Client, emu: Emulator, code: str, **overrides: Any) -> httpx.Response:
    """POST /api/v1/oauth/tokens as a middleware would."""
    body = {
        "grantType": "authorization_code",
        "publishableKey": emu.publishable_key,
        "secretKey": emu.secret_key,
        "authorizationCode": code,
        **overrides,
    }
    return client.post("/api/v1/oauth/tokens", json=body)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    """An RFC 9457 problem with the API's code, plus `message` for seed-era clients."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"] == body["message"]


class _FormReader(HTMLParser):
    """The action and named inputs of each form of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("type") == "hidden":
            self.forms[-1][1][values["name"]] = values.get("value", "")


def hidden_fields(page: str, action: str) -> dict[str, str]:
    """The hidden inputs of the page's first form posting to `action` (as a browser sends)."""
    reader = _FormReader()
    reader.feed(page)
    for form_action, fields in reader.forms:
        if form_action == action:
            return fields
    raise AssertionError(f"no form posting to {action} in the page")


def authorize_form(client: httpx.Client, emu: Emulator, **params: str) -> dict[str, str]:
    """Open the sign-in page (the client keeps its cookies) and return its form's hidden fields."""
    query = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        **params,
    }
    page = client.get("/customer/authorize", params=query)
    assert page.status_code == 200, page.text
    return hidden_fields(page.text, "/customer/authorize")


def form_token(client: httpx.Client, emu: Emulator) -> dict[str, str]:
    """The token field of a genuine sign-in page, to post any sign-in form with this client."""
    return {"csrf_token": authorize_form(client, emu)["csrf_token"]}
