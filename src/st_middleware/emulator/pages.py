"""The HTML side of the emulator: the sign-in (authorize) page, the customer dashboard, an index.

Pages are self-contained (inline CSS, no scripts, no external assets). A sign-in request
that names an unknown merchant, an unsupported `response_type` or scope, or a redirect URI
the merchant did not register gets an error page and never a redirect, as on the real
service: redirecting would hand codes to whoever crafted the link. Every form carries a
token (`guards.FormTokens`), so only the emulator's own pages can Allow, Deny or Revoke.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from .api import MAX_MICROS
from .guards import FormTokens
from .messages import ApiError, Request, Response
from .records import ChargeRecord, Customer, Merchant
from .store import Store

CUSTOMER_COOKIE = "st_emulator_customer"
SCOPES = frozenset({"add-charge", "charge"})
DEFAULT_SCOPE = "add-charge"


@dataclass(frozen=True)
class SignIn:
    """A validated sign-in request: who asks, where to send the browser back, for what."""

    merchant: Merchant
    redirect_uri: str
    scope: str
    state: str | None

    def hidden_fields(self) -> str:
        """The request, carried through the form as hidden inputs."""
        values = {
            "publishable_key": self.merchant.publishable_key,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": self.scope,
        }
        if self.state is not None:
            values["state"] = self.state
        return "".join(
            f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in values.items()
        )

    def redirect(self, **params: str) -> Response:
        """303 back to the redirect URI with `params` (and `state`), keeping its own query."""
        if self.state is not None:
            params["state"] = self.state
        parts = urlsplit(self.redirect_uri)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        return Response(303, [("Location", location), ("Cache-Control", "no-store")])


def parse_sign_in(store: Store, params: dict[str, str]) -> SignIn:
    """Check a sign-in request; raises `ApiError` (shown as an error page, never redirected)."""
    publishable_key = params.get("publishable_key", "")
    if not publishable_key:
        raise ApiError("invalid_request", "The publishable_key parameter is missing.")
    merchant = store.merchant(publishable_key)
    if merchant is None:
        raise ApiError("invalid_request", "No merchant has this publishable key.")
    # redirect_url: the spelling an older community integration used.
    redirect_uri = params.get("redirect_uri") or params.get("redirect_url") or ""
    if not redirect_uri:
        raise ApiError("invalid_request", "The redirect_uri parameter is missing.")
    if not merchant.accepts_redirect_uri(redirect_uri):
        raise ApiError(
            "redirect_uri_not_found", "This redirect URI is not registered for the merchant."
        )
    if not merchant.active:
        raise ApiError("merchant_inactive", "This merchant account is not active.")
    if params.get("response_type") != "code":
        raise ApiError("invalid_request", 'The response_type parameter must be "code".')
    scope = params.get("scope") or DEFAULT_SCOPE
    if scope not in SCOPES:
        raise ApiError("invalid_request", f"Unsupported scope: {scope}.")
    return SignIn(merchant, redirect_uri, scope, params.get("state") or None)


def handle_page(store: Store, request: Request, form_secret: bytes) -> Response:
    """Answer a request for one of the HTML pages; `form_secret` signs the forms' tokens."""
    routes: dict[tuple[str, str], Callable[[Store, Request, FormTokens], Response]] = {
        ("GET", "/"): _index,
        ("GET", "/customer/authorize"): _authorize_form,
        ("POST", "/customer/authorize"): _authorize_decision,
        ("GET", "/customer/dashboard"): _dashboard,
        ("POST", "/customer/revoke"): _revoke,
    }
    handler = routes.get((request.method, request.path))
    if handler is None:
        known = any(path == request.path for _, path in routes)
        code = "method_not_allowed" if known else "not_found"
        return error_page(ApiError(code, f"Nothing answers {request.method} {request.path} here."))
    forms = FormTokens(form_secret, request)
    try:
        if request.method == "POST":
            forms.verify(request)  # before anything else: a forged post changes nothing
        return forms.set_cookie(handler(store, request, forms))
    except ApiError as error:
        return error_page(error)


# -- sign-in ---------------------------------------------------------------------------


def _authorize_form(store: Store, request: Request, forms: FormTokens) -> Response:
    sign_in = parse_sign_in(store, request.query_params())
    if not store.customers():
        # So that Allow works with one click on a fresh emulator.
        store.create_customer("Test", "Customer", "test@example.com")
    return _render_authorize(store, sign_in, forms, request.cookie(CUSTOMER_COOKIE))


def _authorize_decision(store: Store, request: Request, forms: FormTokens) -> Response:
    form = request.form()
    sign_in = parse_sign_in(store, form)
    decision = form.get("decision")
    if decision == "deny":
        return sign_in.redirect(error="access_denied")
    if decision != "allow":
        raise ApiError("invalid_request", 'decision must be "allow" or "deny".')
    customer_id = form.get("customer_id", "")
    if customer_id == "new" or (not customer_id and form.get("new_email")):
        try:
            customer = _new_customer(store, form)
        except ValueError as error:
            return _render_authorize(store, sign_in, forms, None, str(error), form)
    else:
        found = store.customer(customer_id)
        if found is None:
            return _render_authorize(store, sign_in, forms, None, "Choose a customer.", form)
        customer = found
    code = store.issue_code(
        sign_in.merchant.publishable_key, customer.id, sign_in.redirect_uri, sign_in.scope
    )
    response = sign_in.redirect(code=code)
    response.headers.append(
        ("Set-Cookie", f"{CUSTOMER_COOKIE}={quote(customer.id)}; Path=/; HttpOnly; SameSite=Lax")
    )
    return response


def _new_customer(store: Store, form: dict[str, str]) -> Customer:
    first = form.get("new_first_name", "").strip()
    last = form.get("new_last_name", "").strip()
    email = form.get("new_email", "").strip()
    if not first or not last:
        raise ValueError("Enter a first and a last name.")
    if "@" not in email or any(c.isspace() for c in email):
        raise ValueError("Enter an email address.")
    return store.create_customer(first, last, email, parse_usd(form.get("new_limit_usd") or "1"))


def parse_usd(text: str) -> int:
    """Micros from a USD amount such as "1" or "0.25" (Decimal: never a float)."""
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise ValueError("The spending limit must be an amount in USD.") from None
    micros = amount * 1_000_000
    if not amount.is_finite() or amount < 0 or micros != micros.to_integral_value():
        raise ValueError("The spending limit must be a positive amount with at most 6 decimals.")
    if micros > MAX_MICROS:
        raise ValueError("The spending limit is too large.")
    return int(micros)


def _render_authorize(
    store: Store,
    sign_in: SignIn,
    forms: FormTokens,
    chosen: str | None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    form = form or {}
    customers = store.customers()
    ids = {c.id for c in customers}
    chosen = form.get("customer_id") or chosen
    if chosen not in ids and chosen != "new":
        chosen = customers[0].id if customers else "new"
    options = "".join(
        f'<label class="choice"><input type="radio" name="customer_id" value="{_e(c.id)}"'
        f"{' checked' if c.id == chosen else ''}> <span><b>{_e(c.first_name)} "
        f"{_e(c.last_name)}</b> &lt;{_e(c.email)}&gt;<br><small>{_e(c.id)} · limit "
        f"{usd(c.limit_micros)}{' · blocked' if c.blocked else ''}</small></span></label>"
        for c in customers
    )

    def field(name: str, label: str, kind: str = "text", placeholder: str = "") -> str:
        value = _e(form.get(name, ""))
        return (
            f'<label class="field">{label}<input type="{kind}" name="{name}" '
            f'value="{value}" placeholder="{_e(placeholder)}"></label>'
        )

    body = f"""
<h1>Sign in with Small Transfers</h1>
<p class="lead"><b>{_e(sign_in.merchant.publishable_key)}</b> asks permission to charge you
per request (scope <code>{_e(sign_in.scope)}</code>), within your spending limit.</p>
<p class="muted">You will return to <code>{_e(sign_in.redirect_uri)}</code>.</p>
{f'<p class="error">{_e(error)}</p>' if error else ""}
<form method="post" action="/customer/authorize">
{forms.hidden_field("/customer/authorize")}
{sign_in.hidden_fields()}
<fieldset><legend>Test customer</legend>
{options}
<label class="choice"><input type="radio" name="customer_id" value="new"
{" checked" if chosen == "new" else ""}> <span><b>New customer</b></span></label>
<div class="new">
{field("new_first_name", "First name", placeholder="Ada")}
{field("new_last_name", "Last name", placeholder="Lovelace")}
{field("new_email", "Email", "email", "ada@example.com")}
{field("new_limit_usd", "Spending limit (USD)", placeholder="1.00")}
</div>
</fieldset>
<div class="actions">
<button id="deny" class="secondary" name="decision" value="deny">Deny</button>
<button id="allow" name="decision" value="allow">Allow</button>
</div>
</form>"""
    return page("Sign in with Small Transfers", body, 400 if error else 200)


# -- customer dashboard ----------------------------------------------------------------


def _dashboard(store: Store, request: Request, forms: FormTokens) -> Response:
    wanted = request.query_params().get("customer_id") or request.cookie(CUSTOMER_COOKIE)
    customer = store.customer(wanted) if wanted else None
    if customer is None:
        body = "<h1>Customer dashboard</h1><p>Choose a customer:</p>" + _customer_list(
            store.customers()
        )
        return page("Customer dashboard", body, 404 if wanted else 200)
    spent = store.spent(customer.id)
    share = min(100, spent * 100 // customer.limit_micros) if customer.limit_micros else 100
    grants = "".join(
        f"<tr><td><code>{_e(g.merchant)}</code></td><td>{_e(g.scope)}</td>"
        f"<td>{_time(g.granted_at)}</td><td>"
        + (
            f'<form method="post" action="/customer/revoke">'
            f"{forms.hidden_field('/customer/revoke')}"
            f'<input type="hidden" name="customer_id" value="{_e(customer.id)}">'
            f'<input type="hidden" name="merchant" value="{_e(g.merchant)}">'
            f'<button id="revoke-{_e(g.merchant)}" class="secondary">Revoke</button></form>'
            if g.active_tokens
            else '<span class="badge lapsed">revoked</span>'
        )
        + "</td></tr>"
        for g in store.grants(customer.id)
    )
    by_merchant: dict[str, list[ChargeRecord]] = {}
    for row in store.ledger(customer.id):
        by_merchant.setdefault(row.merchant, []).append(row)
    charges = "".join(
        f"<h3><code>{_e(merchant)}</code></h3>{_charges_table(rows)}"
        for merchant, rows in by_merchant.items()
    )
    body = f"""
<p class="muted"><a href="/">← all customers</a></p>
<h1>{_e(customer.first_name)} {_e(customer.last_name)}</h1>
<p class="muted">{_e(customer.email)} · <code>{_e(customer.id)}</code>
{' · <span class="badge lapsed">charges blocked</span>' if customer.blocked else ""}</p>
<h2>Spending</h2>
<p>{usd(spent)} used of {usd(customer.limit_micros)}</p>
<div class="bar"><div style="width:{share}%"></div></div>
<h2>Merchants you signed in to</h2>
{
        f"<table><tr><th>Merchant</th><th>Scope</th><th>Since</th><th></th></tr>{grants}</table>"
        if grants
        else '<p class="muted">None yet.</p>'
    }
<h2>Charges</h2>
{charges or '<p class="muted">No charges yet.</p>'}"""
    return page("Customer dashboard", body, wide=True)


def _charges_table(rows: Iterable[ChargeRecord]) -> str:
    cells = "".join(
        f"<tr><td>{_time(r.created_at)}</td><td>{r.kind}</td>"
        f'<td><span class="badge {r.state}">{r.state}</span></td>'
        f"<td>{usd(r.authorized_micros)}</td><td>{usd(r.captured_micros)}</td>"
        f"<td><code>{_e(r.idempotency_key or '—')}</code></td></tr>"
        for r in rows
    )
    return (
        "<table><tr><th>Time</th><th>Kind</th><th>State</th><th>Authorized</th>"
        f"<th>Captured</th><th>Idempotency key</th></tr>{cells}</table>"
    )


def _revoke(store: Store, request: Request, forms: FormTokens) -> Response:
    form = request.form()
    customer_id = form.get("customer_id", "")
    if store.customer(customer_id) is None:
        raise ApiError("invalid_request", "Unknown customer.")
    store.revoke(customer_id, form.get("merchant") or None)
    location = "/customer/dashboard?" + urlencode({"customer_id": customer_id})
    return Response(303, [("Location", location)])


def _index(store: Store, request: Request, forms: FormTokens) -> Response:
    merchants = "".join(
        f"<tr><td><code>{_e(m.publishable_key)}</code></td><td>"
        + (", ".join(f"<code>{_e(u)}</code>" for u in m.redirect_uris) or "any loopback URI")
        + f"</td><td>{'active' if m.active else 'inactive'}</td></tr>"
        for m in store.merchants()
    )
    body = f"""
<h1>Small Transfers emulator</h1>
<p>A local stand-in for <code>https://smalltransfers.com</code>: point a middleware's
<code>base_url</code> here. API under <code>/api/v1</code>, sign-in at
<code>/customer/authorize</code>, the <a href="/customer/dashboard">customer dashboard</a>.</p>
<h2>Customers</h2>
{_customer_list(store.customers())}
<h2>Merchants</h2>
<table><tr><th>Publishable key</th><th>Redirect URIs</th><th>Status</th></tr>{merchants}</table>"""
    return page("Small Transfers emulator", body, wide=True)


def _customer_list(customers: list[Customer]) -> str:
    if not customers:
        return '<p class="muted">No customers yet: the first sign-in creates one.</p>'
    items = "".join(
        f'<li><a href="/customer/dashboard?{urlencode({"customer_id": c.id})}">'
        f"{_e(c.first_name)} {_e(c.last_name)}</a> &lt;{_e(c.email)}&gt; "
        f"<small><code>{_e(c.id)}</code> · limit {usd(c.limit_micros)}</small></li>"
        for c in customers
    )
    return f"<ul>{items}</ul>"


# -- shared ----------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6fb;color:#1c2333;font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
main{max-width:560px;margin:40px auto;background:#fff;border-radius:12px;padding:32px;
box-shadow:0 2px 12px rgba(20,30,60,.08)}
main.wide{max-width:960px}
h1{font-size:1.5rem;margin:0 0 12px}h2{font-size:1.15rem;margin:28px 0 8px}
h3{font-size:1rem;margin:18px 0 6px}
.lead{font-size:1.05rem}.muted{color:#5d6880}.error{color:#a3192b;background:#fdecee;
padding:8px 12px;border-radius:6px}
code{background:#eef1f7;border-radius:4px;padding:1px 5px;font-size:.9em;overflow-wrap:anywhere}
fieldset{border:1px solid #dde2ec;border-radius:8px;padding:12px 16px;margin:16px 0}
legend{padding:0 6px;color:#5d6880}
.choice{display:flex;gap:8px;align-items:flex-start;padding:6px 0;cursor:pointer}
.choice input{margin-top:6px}
.new{display:grid;grid-template-columns:1fr 1fr;gap:8px 12px;margin:4px 0 0 24px}
.field{display:flex;flex-direction:column;font-size:.85rem;color:#5d6880}
.field input{font:inherit;color:#1c2333;padding:6px 8px;border:1px solid #c9d0de;
border-radius:6px}
.actions{display:flex;justify-content:flex-end;gap:12px}
button{font:inherit;font-weight:600;border:0;border-radius:8px;padding:10px 22px;
cursor:pointer;background:#1f5eff;color:#fff}
button.secondary{background:#e7ebf3;color:#1c2333}
button:hover{filter:brightness(.95)}
td button{padding:4px 12px;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6e9f0}
th{color:#5d6880;font-weight:600}
.badge{border-radius:10px;padding:1px 8px;font-size:.8rem;background:#e7ebf3}
.badge.captured{background:#dff5e5;color:#17632f}.badge.authorized{background:#e2ebff;
color:#1f3f99}.badge.lapsed{background:#f3e3e3;color:#7a2a2a}
.bar{height:10px;background:#e7ebf3;border-radius:5px;overflow:hidden}
.bar div{height:100%;background:#1f5eff}
"""

_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # No scripts, no framing; form-action is left open because Allow redirects off-site.
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("X-Frame-Options", "DENY"),
    # Not "no-referrer": under it browsers send "Origin: null" with the pages' own form
    # posts, which the CSRF check must refuse. "same-origin" still tells other sites
    # nothing (the authorize page's URL carries the sign-in's state).
    ("Referrer-Policy", "same-origin"),
]


def page(title: str, body: str, status: int = 200, *, wide: bool = False) -> Response:
    """A complete HTML page."""
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main{' class=wide' if wide else ''}>{body}</main></body></html>"
    )
    return Response(status, list(_PAGE_HEADERS), document.encode())


def error_page(error: ApiError) -> Response:
    """An HTML error page carrying the API error code."""
    phrase = HTTPStatus(error.status).phrase
    body = (
        f"<h1>{error.status} {_e(phrase)}</h1><p>{_e(error.detail)}</p>"
        f'<p class="muted">Error code: <code id="error-code">{_e(error.code)}</code></p>'
    )
    return page(f"{error.status} {phrase}", body, error.status)


def usd(micros: int) -> str:
    """Micros as USD, e.g. 3000 -> "$0.003", 1_000_000 -> "$1.00" (integer arithmetic)."""
    whole, fraction = divmod(micros, 1_000_000)
    decimals = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"${whole:,}.{decimals}"


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
