"""Small self-contained HTML pages shown to browsers (sign in, payment refused, outage).

Pure functions, standard library only. The static parts (CSS, icons) are built once at
import time; each call only escapes the caller's values and joins strings.

Every interpolated value goes through :func:`html.escape` with ``quote=True``, URLs
included, so a value can never break out of its element or attribute.

:func:`sign_in_button` and :data:`SIGN_IN_BUTTON_CSS` are the sign-in button on its
own, for an app's pages (the demo shop's), so that it is one component everywhere;
:data:`FAVICON_LINK` is the inline icon every page carries.
"""

from __future__ import annotations

from base64 import b64encode
from html import escape

from ._charge import CHARGE_MODES, ChargeMode

__all__ = [
    "FAVICON_LINK",
    "FAVICON_SVG",
    "SIGN_IN_BUTTON_CSS",
    "format_micros",
    "render_page",
    "sign_in_button",
]

_MICROS_PER_USD = 1_000_000

# Material Icons "CurrencyExchange" (Apache License 2.0), as shipped by
# @mui/icons-material: the button's start icon and the favicon.
_CURRENCY_EXCHANGE_PATH = (
    "M12.89 11.1c-1.78-.59-2.64-.96-2.64-1.9 0-1.02 1.11-1.39 1.81-1.39 1.31 0 1.79.99 "
    "1.9 1.34l1.58-.67c-.15-.45-.82-1.92-2.54-2.24V5h-2v1.26c-2.48.56-2.49 2.86-2.49 "
    "2.96 0 2.27 2.25 2.91 3.35 3.31 1.58.56 2.28 1.07 2.28 2.03 0 1.13-1.05 1.61-1.98 "
    "1.61-1.82 0-2.34-1.87-2.4-2.09l-1.66.67c.63 2.19 2.28 2.78 2.9 2.96V19h2v-1.24c.4-.09 "
    "2.9-.59 2.9-3.22 0-1.39-.61-2.61-3.01-3.44zM3 21H1v-6h6v2H4.52c1.61 2.41 4.36 4 7.48 "
    "4 4.97 0 9-4.03 9-9h2c0 6.08-4.92 11-11 11-3.72 0-7.01-1.85-9-4.67V21zm-2-9C1 5.92 "
    "5.92 1 12 1c3.72 0 7.01 1.85 9 4.67V3h2v6h-6V7h2.48C17.87 4.59 15.12 3 12 3c-4.97 "
    "0-9 4.03-9 9H1z"
)

#: The icon as a standalone SVG file (what an app may serve at ``/favicon.ico``).
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    f'<path fill="#1976d2" d="{_CURRENCY_EXCHANGE_PATH}"/></svg>'
).encode("ascii")

#: A ``<link rel="icon">`` holding the icon itself: browsers then never ask for
#: ``/favicon.ico`` (a 404 in every app's log). Base64, so the page's text names no URL.
FAVICON_LINK = (
    '<link rel="icon" type="image/svg+xml" href="data:image/svg+xml;base64,'
    f'{b64encode(FAVICON_SVG).decode("ascii")}">'
)

# Inline SVG in HTML5 needs no xmlns. MUI's large start icon: 22 px (font-size 22px, 1em).
_ICON_SVG = (
    '<svg class="st-icon" viewBox="0 0 24 24" width="22" height="22" fill="currentColor"'
    ' aria-hidden="true" focusable="false">'
    f'<path d="{_CURRENCY_EXCHANGE_PATH}"/></svg>'
)

_BUTTON_TEXT = "Sign In with Small Transfers"

# MUI v5 shadows[2], [4], [6], [8]: resting, hover, keyboard focus, pressed.
_ELEVATION_2 = (
    "0 3px 1px -2px rgba(0,0,0,.2),0 2px 2px 0 rgba(0,0,0,.14),0 1px 5px 0 rgba(0,0,0,.12)"
)
_ELEVATION_4 = (
    "0 2px 4px -1px rgba(0,0,0,.2),0 4px 5px 0 rgba(0,0,0,.14),0 1px 10px 0 rgba(0,0,0,.12)"
)
_ELEVATION_6 = (
    "0 3px 5px -1px rgba(0,0,0,.2),0 6px 10px 0 rgba(0,0,0,.14),0 1px 18px 0 rgba(0,0,0,.12)"
)
_ELEVATION_8 = (
    "0 5px 5px -3px rgba(0,0,0,.2),0 8px 10px 1px rgba(0,0,0,.14),0 3px 14px 2px rgba(0,0,0,.12)"
)
_EASE = "250ms cubic-bezier(.4,0,.2,1) 0ms"

#: MUI v5 ``<Button variant="contained" size="large" startIcon={...}>`` with the default
#: theme (ButtonBase, typography.button, the large and contained variants, the start
#: icon). Roboto is named first but never downloaded: where it is not installed, the
#: next font of MUI's own stack is used.
SIGN_IN_BUTTON_CSS = (
    ".st-button{display:inline-flex;align-items:center;justify-content:center;"
    "position:relative;box-sizing:border-box;min-width:64px;margin:0;padding:8px 22px;"
    "border:0;border-radius:4px;outline:0;vertical-align:middle;cursor:pointer;"
    "user-select:none;-webkit-tap-highlight-color:transparent;text-decoration:none;"
    "background-color:#1976d2;color:#fff;"
    "font-family:Roboto,Helvetica,Arial,sans-serif;font-weight:500;font-size:.9375rem;"
    "line-height:1.75;letter-spacing:.02857em;text-transform:uppercase;"
    f"box-shadow:{_ELEVATION_2};"
    f"transition:background-color {_EASE},box-shadow {_EASE},border-color {_EASE},"
    f"color {_EASE}}}"
    f".st-button:hover{{background-color:#1565c0;box-shadow:{_ELEVATION_4}}}"
    # Touch screens keep :hover after a tap; MUI resets it there.
    f"@media (hover:none){{.st-button:hover{{background-color:#1976d2;box-shadow:{_ELEVATION_2}}}}}"
    f".st-button:active{{box-shadow:{_ELEVATION_8}}}"
    # MUI marks keyboard focus with shadows[6] plus a pulsating ripple drawn by
    # JavaScript; without scripts, an outline stands in for the ripple.
    f".st-button:focus-visible{{box-shadow:{_ELEVATION_6};outline:2px solid #90caf9;"
    "outline-offset:2px}"
    ".st-button .st-icon{display:inline-block;flex-shrink:0;width:22px;height:22px;"
    "margin:0 8px 0 -4px;fill:currentColor}"
    "@media (prefers-reduced-motion:reduce){.st-button{transition:none}}"
)

_CSS = (
    ":root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--fg:#1f2328;--muted:#5f6b7a;"
    "--line:#e3e7ec;--link:#1976d2}"
    "@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#1a1f26;--fg:#e6e9ed;"
    "--muted:#9aa5b1;--line:#2b323c;--link:#90caf9}}"
    "*{box-sizing:border-box}"
    "html,body{margin:0;height:100%}"
    "body{display:flex;align-items:center;justify-content:center;padding:24px;"
    "background:var(--bg);color:var(--fg);"
    'font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;'
    "-webkit-font-smoothing:antialiased}"
    ".st-card{width:100%;max-width:440px;padding:36px 32px 28px;text-align:center;"
    "background:var(--card);border:1px solid var(--line);border-radius:12px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.06),0 8px 24px rgba(0,0,0,.06)}"
    # A phone gets the whole width: the button's label stays on one line at 390 px.
    "@media (max-width:480px){body{padding:0;align-items:stretch}"
    ".st-card{max-width:none;padding:40px 16px 24px;border:0;border-radius:0;box-shadow:none}}"
    "h1{margin:0 0 12px;font-size:22px;font-weight:600;line-height:1.3}"
    ".st-msg{margin:0 0 20px;color:var(--muted);overflow-wrap:anywhere}"
    ".st-price{margin:0 0 24px;padding:10px 14px;border:1px solid var(--line);"
    "border-radius:8px;font-size:15px;overflow-wrap:anywhere}"
    ".st-price strong{font-weight:600;font-variant-numeric:tabular-nums}"
    ".st-price-note{display:block;margin-top:4px;color:var(--muted)}"
    ".st-dashboard{margin:0 0 8px}"
    ".st-dashboard a{display:inline-block;padding:7px 21px;border:1px solid rgba(25,118,210,.5);"
    "border-radius:4px;color:var(--link);font-weight:500;text-decoration:none}"
    ".st-dashboard a:hover{border-color:var(--link)}"
    ".st-back{margin:20px 0 0;font-size:15px}"
    ".st-back a{color:var(--link);text-decoration:none}"
    ".st-back a:hover{text-decoration:underline}"
    ".st-status{margin:24px 0 0;font-size:12px;color:var(--muted);letter-spacing:.04em}"
    + SIGN_IN_BUTTON_CSS
)

_HEAD_START = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
    f'<meta name="robots" content="noindex">{FAVICON_LINK}<title>'
)
_HEAD_END = f'</title><style>{_CSS}</style></head><body><main class="st-card">'
_TAIL = "</main></body></html>\n"


def _esc(value: str) -> str:
    return escape(value, quote=True)


def format_micros(micros: int) -> str:
    """Format an amount in micros (1 USD = 1,000,000) as an exact USD string.

    At least two decimals, trailing zeros beyond that stripped, no floats:
    ``3000 -> "0.003 USD"``, ``1 -> "0.000001 USD"``, ``1_500_000 -> "1.50 USD"``.

    Raises ``TypeError`` for anything but an ``int`` (``bool`` included) and
    ``ValueError`` for a negative amount.
    """
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise TypeError(f"micros must be an int, not {type(micros).__name__}")
    if micros < 0:
        raise ValueError(f"micros must not be negative, got {micros}")
    whole, frac = divmod(micros, _MICROS_PER_USD)
    decimals = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{decimals} USD"


def sign_in_button(url: str) -> str:
    """The "Sign In with Small Transfers" link, drawn as MUI's contained large button.

    The page must also carry :data:`SIGN_IN_BUTTON_CSS` (:func:`render_page`'s do).
    """
    return f'<a class="st-button" id="st-sign-in" href="{_esc(url)}">{_ICON_SVG}{_BUTTON_TEXT}</a>'


def _price_text(micros: int, mode: ChargeMode) -> str:
    amount = f"<strong>{_esc(format_micros(micros))}</strong>"
    if mode == "authorize-capture":
        # Only what is used is captured: the amount is a ceiling, not the price.
        return f"This page asks for an authorization of up to {amount}, charged by use."
    return f"This page costs {amount} per visit."


def render_page(
    *,
    title: str,
    heading: str,
    message: str,
    status: int,
    sign_in_url: str | None = None,
    price_micros: int | None = None,
    price_mode: ChargeMode = "transaction",
    price_description: str | None = None,
    dashboard_url: str | None = None,
    dashboard_label: str = "Open your Small Transfers dashboard",
    back_url: str | None = None,
    back_label: str = "Go back",
) -> bytes:
    """Return a complete, self-contained UTF-8 HTML5 document.

    ``sign_in_url`` adds the "Sign In with Small Transfers" button. ``price_micros``
    adds the price, worded after ``price_mode``: the cost of one visit
    (``"transaction"``) or the most an authorization holds (``"authorize-capture"``);
    ``price_description`` is the route's own words under it (e.g. "0.0002 USD per
    word"). ``dashboard_url`` links to the visitor's Small Transfers dashboard (where a
    spending limit is raised), ``back_url`` is a plain link labelled ``back_label``.
    All values are HTML-escaped; an unknown ``price_mode`` is a ``ValueError``.
    """
    if price_mode not in CHARGE_MODES:
        raise ValueError(f"price_mode must be one of {CHARGE_MODES}, got {price_mode!r}")
    parts = [
        _HEAD_START,
        _esc(title),
        _HEAD_END,
        "<h1>",
        _esc(heading),
        '</h1><p class="st-msg">',
        _esc(message),
        "</p>",
    ]
    if price_micros is not None:
        parts += ['<p class="st-price">', _price_text(price_micros, price_mode)]
        if price_description:
            parts += ['<span class="st-price-note">', _esc(price_description), "</span>"]
        parts.append("</p>")
    if sign_in_url is not None:
        parts.append(sign_in_button(sign_in_url))
    if dashboard_url is not None:
        parts += [
            '<p class="st-dashboard"><a href="',
            _esc(dashboard_url),
            '">',
            _esc(dashboard_label),
            "</a></p>",
        ]
    if back_url is not None:
        parts += [
            '<p class="st-back"><a href="',
            _esc(back_url),
            '">',
            _esc(back_label),
            "</a></p>",
        ]
    parts += ['<p class="st-status">HTTP ', _esc(str(int(status))), "</p>", _TAIL]
    return "".join(parts).encode("utf-8")


# -- the device flow's pages (a customer approving a program) ------------------------------

_FORM_CSS = (
    "<style>.st-form{margin:0 0 8px}.st-code{display:block;width:100%;max-width:260px;"
    "margin:0 auto 16px;padding:10px 12px;border:1px solid var(--line);border-radius:8px;"
    "background:transparent;color:inherit;font:600 22px/1.3 ui-monospace,SFMono-Regular,Menlo,"
    "monospace;letter-spacing:.12em;text-align:center;text-transform:uppercase}"
    ".st-actions{display:flex;flex-wrap:wrap;gap:12px;justify-content:center}"
    ".st-secondary{padding:7px 21px;border:1px solid rgba(25,118,210,.5);border-radius:4px;"
    "background:transparent;color:var(--link);font:500 15px/1.75 inherit;cursor:pointer;"
    "text-transform:uppercase;letter-spacing:.02857em}"
    "button.st-button{border:0;cursor:pointer;font-family:inherit}</style>"
)


def render_device_page(
    *,
    title: str,
    heading: str,
    message: str,
    status: int = 200,
    action: str | None = None,
    hidden: dict[str, str] | None = None,
    code: str | None = None,
    buttons: tuple[tuple[str, str, str, str], ...] = (),
    done: bool = False,
    back_url: str | None = None,
) -> bytes:
    """A page of the device flow: a form (the code to confirm, Allow/Deny) or its outcome.

    ``buttons`` are ``(element id, name, value, label)``; the first is the
    primary (contained) one. ``code`` adds the code field (``#st-device-code``);
    ``done`` marks the outcome message ``#st-device-done``. Values are escaped.
    """
    parts = [
        _HEAD_START,
        _esc(title),
        _HEAD_END.replace("<body>", _FORM_CSS + "<body>"),
        "<h1>",
        _esc(heading),
        "</h1>",
        '<p class="st-msg" id="st-device-done">' if done else '<p class="st-msg">',
        _esc(message),
        "</p>",
    ]
    if action is not None:
        parts += ['<form class="st-form" method="post" action="', _esc(action), '">']
        for name, value in (hidden or {}).items():
            parts += ['<input type="hidden" name="', _esc(name), '" value="', _esc(value), '">']
        if code is not None:
            parts += [
                '<label for="st-device-code" class="st-msg">Code shown by the program</label>',
                '<input class="st-code" id="st-device-code" name="user_code" value="',
                _esc(code),
                '" autocomplete="off" autocapitalize="characters" spellcheck="false" '
                'maxlength="16" required>',
            ]
        parts.append('<div class="st-actions">')
        for position, (element, name, value, label) in enumerate(buttons):
            kind = "st-button" if position == 0 else "st-secondary"
            parts += [
                f'<button type="submit" class="{kind}" id="',
                _esc(element),
                '" name="',
                _esc(name),
                '" value="',
                _esc(value),
                '">',
                _esc(label),
                "</button>",
            ]
        parts.append("</div></form>")
    if back_url is not None:
        parts += ['<p class="st-back"><a href="', _esc(back_url), '">Back to the site</a></p>']
    parts += ['<p class="st-status">HTTP ', _esc(str(int(status))), "</p>", _TAIL]
    return "".join(parts).encode("utf-8")
