"""The HTML side of the emulator: the sign-in (authorize) page, the customer dashboard, an index.

Pages are self-contained (inline CSS and icon, no scripts, no external assets) and fit a
phone's width. A sign-in request that names an unknown merchant, an unsupported
`response_type` or scope, or a redirect URI the merchant did not register gets an error
page and never a redirect, as on the real service: redirecting would hand codes to
whoever crafted the link. Every form carries a token (`guards.FormTokens`), so only the
emulator's own pages can Allow, Deny, Revoke or change a spending limit.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from .._pages import FAVICON_LINK, FAVICON_SVG
from .api import MAX_MICROS
from .guards import FormTokens
from .messages import ApiError, Request, Response
from .records import ChargeRecord, Customer, Merchant
from .store import Store

CUSTOMER_COOKIE = "st_emulator_customer"
SCOPES = frozenset({"add-charge", "charge"})
DEFAULT_SCOPE = "add-charge"


@dataclass(frozen=True)
class Site:
    """What the pages know of the emulator besides its database."""

    form_secret: bytes  # signs the forms' tokens
    merchant_names: Mapping[str, str]  # publishable key -> the name shown to customers
    log: Callable[[str], None]  # a line on stderr when the emulator is --verbose

    def merchant_name(self, publishable_key: str) -> str:
        """The merchant's display name; its key when it was given none."""
        return self.merchant_names.get(publishable_key) or publishable_key


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


Handler = Callable[[Store, Request, FormTokens, Site], Response]


def handle_page(store: Store, request: Request, site: Site) -> Response:
    """Answer a request for one of the HTML pages (or the favicon)."""
    routes: dict[tuple[str, str], Handler] = {
        ("GET", "/"): _index,
        ("GET", "/favicon.ico"): _favicon,
        ("GET", "/customer/authorize"): _authorize_form,
        ("POST", "/customer/authorize"): _authorize_decision,
        ("GET", "/customer/dashboard"): _dashboard,
        ("POST", "/customer/revoke"): _revoke,
        ("POST", "/customer/limit"): _set_limit,
    }
    handler = routes.get((request.method, request.path))
    if handler is None:
        known = any(path == request.path for _, path in routes)
        code = "method_not_allowed" if known else "not_found"
        return error_page(ApiError(code, f"Nothing answers {request.method} {request.path} here."))
    forms = FormTokens(site.form_secret, request)
    try:
        if request.method == "POST":
            forms.verify(request)  # before anything else: a forged post changes nothing
        return forms.set_cookie(handler(store, request, forms, site))
    except ApiError as error:
        return error_page(error)


def _favicon(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    # Pages carry their icon inline; this is for browsers that ask anyway.
    headers = [("Content-Type", "image/svg+xml"), ("Cache-Control", "max-age=86400")]
    return Response(200, headers, FAVICON_SVG)


# -- sign-in ---------------------------------------------------------------------------


def _authorize_form(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    sign_in = parse_sign_in(store, request.query_params())
    if not store.customers():
        # So that Allow works with one click on a fresh emulator.
        store.create_customer("Test", "Customer", "test@example.com")
    return _render_authorize(store, sign_in, forms, site, request.cookie(CUSTOMER_COOKIE))


def _authorize_decision(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    form = request.form()
    sign_in = parse_sign_in(store, form)
    merchant = _merchant_label(site, sign_in.merchant.publishable_key)
    decision = form.get("decision")
    if decision == "deny":
        # The shop's callback learns it from error=access_denied (RFC 6749 4.1.2.1).
        site.log(f"sign-in denied for {merchant}: error=access_denied, nothing charged")
        return sign_in.redirect(error="access_denied")
    if decision != "allow":
        raise ApiError("invalid_request", 'decision must be "allow" or "deny".')
    customer_id = form.get("customer_id", "")
    if customer_id == "new" or (not customer_id and form.get("new_email")):
        try:
            customer = _new_customer(store, form)
        except ValueError as error:
            return _render_authorize(store, sign_in, forms, site, None, str(error), form)
    else:
        found = store.customer(customer_id)
        if found is None:
            return _render_authorize(store, sign_in, forms, site, None, "Choose a customer.", form)
        customer = found
    code = store.issue_code(
        sign_in.merchant.publishable_key, customer.id, sign_in.redirect_uri, sign_in.scope
    )
    site.log(f"sign-in allowed for {merchant} by customer {customer.id}")
    response = sign_in.redirect(code=code)
    response.headers.append(
        ("Set-Cookie", f"{CUSTOMER_COOKIE}={quote(customer.id)}; Path=/; HttpOnly; SameSite=Lax")
    )
    return response


def _merchant_label(site: Site, publishable_key: str) -> str:
    name = site.merchant_name(publishable_key)
    return publishable_key if name == publishable_key else f"{name} ({publishable_key})"


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
    site: Site,
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
    merchant = _e(site.merchant_name(sign_in.merchant.publishable_key))
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
<p class="lead"><b>{merchant}</b> asks permission to charge you per request
(scope <code>{_e(sign_in.scope)}</code>), within your spending limit.</p>
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
<p class="muted small">Deny takes you back to {merchant} without signing you in:
nothing is charged.</p>
</form>"""
    return page("Sign in with Small Transfers", body, 400 if error else 200)


# -- customer dashboard ----------------------------------------------------------------


def _dashboard(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    wanted = request.query_params().get("customer_id") or request.cookie(CUSTOMER_COOKIE)
    customer = store.customer(wanted) if wanted else None
    if customer is None:
        body = "<h1>Customer dashboard</h1><p>Choose a customer:</p>" + _customer_list(
            store.customers()
        )
        return page("Customer dashboard", body, 404 if wanted else 200)
    return _render_dashboard(store, customer, forms, site)


def _render_dashboard(
    store: Store,
    customer: Customer,
    forms: FormTokens,
    site: Site,
    error: str | None = None,
    limit_text: str | None = None,
) -> Response:
    spent = store.spent(customer.id)
    share = min(100, spent * 100 // customer.limit_micros) if customer.limit_micros else 100
    grants = store.grants(customer.id)
    grant_rows = [
        [
            _merchant_cell(site, g.merchant),
            _e(g.scope),
            _time(g.granted_at),
            (
                f'<form method="post" action="/customer/revoke">'
                f"{forms.hidden_field('/customer/revoke')}"
                f'<input type="hidden" name="customer_id" value="{_e(customer.id)}">'
                f'<input type="hidden" name="merchant" value="{_e(g.merchant)}">'
                f'<button id="revoke-{_e(g.merchant)}" class="secondary">Revoke</button></form>'
                if g.active_tokens
                else '<span class="badge lapsed">revoked</span>'
            ),
        ]
        for g in grants
    ]
    revoked_note = (
        # The middleware only hears of a revocation when it next calls Small Transfers.
        '<p class="muted small" id="revoke-note">A shop learns that you revoked its access '
        "at its next charge: until then it may still show you as signed in, but it can "
        "no longer charge you.</p>"
        if any(not g.active_tokens for g in grants)
        else ""
    )
    by_merchant: dict[str, list[ChargeRecord]] = {}
    for row in store.ledger(customer.id):
        by_merchant.setdefault(row.merchant, []).append(row)
    charges = "".join(
        f"<h3>{_merchant_cell(site, merchant)}</h3>{_charges_table(rows)}"
        for merchant, rows in by_merchant.items()
    )
    limit_value = _e(limit_text if limit_text is not None else _plain_usd(customer.limit_micros))
    body = f"""
<p class="muted"><a href="/">← all customers</a></p>
<h1>{_e(customer.first_name)} {_e(customer.last_name)}</h1>
<p class="muted">{_e(customer.email)} · <code>{_e(customer.id)}</code>
{' · <span class="badge lapsed">charges blocked</span>' if customer.blocked else ""}</p>
<h2>Spending</h2>
<p id="spending">{usd(spent)} used of {usd(customer.limit_micros)}</p>
<div class="bar"><div style="width:{share}%"></div></div>
{f'<p class="error">{_e(error)}</p>' if error else ""}
<form method="post" action="/customer/limit" class="limit">
{forms.hidden_field("/customer/limit")}
<input type="hidden" name="customer_id" value="{_e(customer.id)}">
<label class="field">Spending limit (USD)<input name="limit_usd" value="{limit_value}"
inputmode="decimal" required></label>
<button id="raise-limit">Change the limit</button>
</form>
<h2>Merchants you signed in to</h2>
{
        _table(["Merchant", "Scope", "Since", ""], grant_rows)
        if grant_rows
        else '<p class="muted">None yet.</p>'
    }
{revoked_note}
<h2>Charges</h2>
{charges or '<p class="muted">No charges yet.</p>'}"""
    return page("Customer dashboard", body, 400 if error else 200, wide=True)


def _merchant_cell(site: Site, publishable_key: str) -> str:
    name = site.merchant_name(publishable_key)
    if name == publishable_key:
        return f"<code>{_e(publishable_key)}</code>"
    return f"{_e(name)} <small><code>{_e(publishable_key)}</code></small>"


def _charges_table(rows: Iterable[ChargeRecord]) -> str:
    cells = [
        [
            _time(r.created_at),
            r.kind,
            f'<span class="badge {r.state}">{r.state}</span>',
            usd(r.authorized_micros),
            usd(r.captured_micros),
            f"<code>{_e(r.idempotency_key or '—')}</code>",
        ]
        for r in rows
    ]
    headings = ["Time", "Kind", "State", "Authorized", "Captured", "Idempotency key"]
    return _table(headings, cells)


def _table(headings: list[str], rows: list[list[str]]) -> str:
    """A table whose rows become labelled blocks on a phone (`data-label`, see the CSS).

    Headings are plain text; cells are HTML already escaped. Each cell's content is one
    span, so that on a phone it stays one flex item beside its label.
    """
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-label="{_e(h)}"><span>{cell}</span></td>'
            for h, cell in zip(headings, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _revoke(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    form = request.form()
    customer_id = form.get("customer_id", "")
    if store.customer(customer_id) is None:
        raise ApiError("invalid_request", "Unknown customer.")
    store.revoke(customer_id, form.get("merchant") or None)
    return _back_to_dashboard(customer_id)


def _set_limit(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    form = request.form()
    customer = store.customer(form.get("customer_id", ""))
    if customer is None:
        raise ApiError("invalid_request", "Unknown customer.")
    text = form.get("limit_usd", "")
    try:
        limit = parse_usd(text)
    except ValueError as error:
        return _render_dashboard(store, customer, forms, site, str(error), text)
    store.update_customer(customer.id, limit_micros=limit)
    site.log(f"spending limit of customer {customer.id} set to {usd(limit)}")
    return _back_to_dashboard(customer.id)


def _back_to_dashboard(customer_id: str) -> Response:
    # 303: a reload shows the dashboard instead of posting the form again.
    location = "/customer/dashboard?" + urlencode({"customer_id": customer_id})
    return Response(303, [("Location", location)])


def _index(store: Store, request: Request, forms: FormTokens, site: Site) -> Response:
    merchants = [
        [
            _e(site.merchant_name(m.publishable_key)),
            f"<code>{_e(m.publishable_key)}</code>",
            ", ".join(f"<code>{_e(u)}</code>" for u in m.redirect_uris) or "any loopback URI",
            "active" if m.active else "inactive",
        ]
        for m in store.merchants()
    ]
    body = f"""
<h1>Small Transfers emulator</h1>
<p>A local stand-in for <code>https://smalltransfers.com</code>: point a middleware's
<code>base_url</code> here. API under <code>/api/v1</code>, sign-in at
<code>/customer/authorize</code>, the <a href="/customer/dashboard">customer dashboard</a>.</p>
<h2>Customers</h2>
{_customer_list(store.customers())}
<h2>Merchants</h2>
{_table(["Name", "Publishable key", "Redirect URIs", "Status"], merchants)}"""
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
box-shadow:0 2px 12px rgba(20,30,60,.08);overflow-wrap:break-word}
main.wide{max-width:960px}
h1{font-size:1.5rem;margin:0 0 12px}h2{font-size:1.15rem;margin:28px 0 8px}
h3{font-size:1rem;margin:18px 0 6px}
.lead{font-size:1.05rem}.muted{color:#5d6880}.small{font-size:.85rem}
.error{color:#a3192b;background:#fdecee;padding:8px 12px;border-radius:6px}
code{background:#eef1f7;border-radius:4px;padding:1px 5px;font-size:.9em;overflow-wrap:anywhere}
fieldset{border:1px solid #dde2ec;border-radius:8px;padding:12px 16px;margin:16px 0;min-width:0}
legend{padding:0 6px;color:#5d6880}
.choice{display:flex;gap:8px;align-items:flex-start;padding:6px 0;cursor:pointer}
.choice input{margin-top:6px}.choice span{min-width:0}
.new{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:8px 12px;
margin:4px 0 0 24px}
.field{display:flex;flex-direction:column;font-size:.85rem;color:#5d6880;min-width:0}
.field input{font:inherit;font-size:1rem;color:#1c2333;padding:6px 8px;
border:1px solid #c9d0de;border-radius:6px;width:100%;min-width:0}
.actions{display:flex;justify-content:flex-end;gap:12px}
.limit{display:flex;flex-wrap:wrap;align-items:flex-end;gap:8px 12px;margin:16px 0 0}
.limit .field{flex:1 1 10rem;max-width:16rem}
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
@media (max-width:640px){
main,main.wide{margin:0;padding:24px 16px;border-radius:0;box-shadow:none}
.new{margin-left:0}
thead{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}
table,tbody,tr,td{display:block}
tr{padding:6px 0;border-bottom:1px solid #e6e9f0}
td{display:flex;justify-content:space-between;gap:12px;padding:2px 0;border:0;
text-align:right}
td::before{content:attr(data-label);flex:none;color:#5d6880;font-weight:600;
text-align:left}
td>span{min-width:0}
}
"""
# Under 640 px a table's rows become blocks of "label: value" lines (the labels come from
# each cell's data-label, the real header row stays for screen readers): six columns of
# times and keys do not fit a phone, and a table wider than the screen scrolls the page.

_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # No scripts, no framing; form-action is left open because Allow redirects off-site.
    # img-src data: lets the inline favicon through.
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
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
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{FAVICON_LINK}'
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
    return f"${micros // 1_000_000:,}.{_decimals(micros)}"


def _plain_usd(micros: int) -> str:
    """Micros as a USD amount `parse_usd` reads back: 10_000 -> "0.01", no "$" nor commas."""
    return f"{micros // 1_000_000}.{_decimals(micros)}"


def _decimals(micros: int) -> str:
    return f"{micros % 1_000_000:06d}".rstrip("0").ljust(2, "0")


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
