"""Small self-contained HTML pages shown to browsers (sign in, payment refused, outage).

Pure functions, standard library only. The static parts (CSS, icon) are built once at
import time; each call only escapes the caller's values and joins strings.

Every interpolated value goes through :func:`html.escape` with ``quote=True``, URLs
included, so a value can never break out of its element or attribute.
"""

from __future__ import annotations

from html import escape

__all__ = ["format_micros", "render_page"]

_MICROS_PER_USD = 1_000_000

# Material Icons "CurrencyExchange" (Apache License 2.0), as shipped by
# @mui/icons-material; the page's only image, drawn inline.
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

# Inline SVG in HTML5 needs no xmlns, so the page holds no URL besides the caller's.
_ICON_SVG = (
    '<svg class="st-icon" viewBox="0 0 24 24" width="20" height="20" fill="currentColor"'
    ' aria-hidden="true" focusable="false">'
    f'<path d="{_CURRENCY_EXCHANGE_PATH}"/></svg>'
)

_BUTTON_TEXT = "Sign In with Small Transfers"

# MUI shadows[2], shadows[4], shadows[8] (resting, hover, pressed contained button).
_ELEVATION_2 = (
    "0 3px 1px -2px rgba(0,0,0,.2),0 2px 2px 0 rgba(0,0,0,.14),0 1px 5px 0 rgba(0,0,0,.12)"
)
_ELEVATION_4 = (
    "0 2px 4px -1px rgba(0,0,0,.2),0 4px 5px 0 rgba(0,0,0,.14),0 1px 10px 0 rgba(0,0,0,.12)"
)
_ELEVATION_8 = (
    "0 5px 5px -3px rgba(0,0,0,.2),0 8px 10px 1px rgba(0,0,0,.14),0 3px 14px 2px rgba(0,0,0,.12)"
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
    "h1{margin:0 0 12px;font-size:22px;font-weight:600;line-height:1.3}"
    ".st-msg{margin:0 0 20px;color:var(--muted);overflow-wrap:anywhere}"
    ".st-price{margin:0 0 24px;padding:10px 14px;border:1px solid var(--line);"
    "border-radius:8px;font-size:15px}"
    ".st-price strong{font-weight:600;font-variant-numeric:tabular-nums}"
    ".st-button{display:inline-flex;align-items:center;justify-content:center;min-width:64px;"
    "padding:8px 22px;border-radius:4px;background:#1976d2;color:#fff;text-decoration:none;"
    "font-size:15px;font-weight:500;line-height:1.75;letter-spacing:.02857em;"
    f"box-shadow:{_ELEVATION_2};"
    "transition:background-color 250ms cubic-bezier(.4,0,.2,1),"
    "box-shadow 250ms cubic-bezier(.4,0,.2,1)}"
    f".st-button:hover{{background:#1565c0;box-shadow:{_ELEVATION_4}}}"
    f".st-button:active{{box-shadow:{_ELEVATION_8}}}"
    ".st-button:focus-visible{outline:2px solid #90caf9;outline-offset:2px}"
    ".st-icon{flex:none;width:20px;height:20px;margin:0 8px 0 -4px}"
    ".st-back{margin:20px 0 0;font-size:15px}"
    ".st-back a{color:var(--link);text-decoration:none}"
    ".st-back a:hover{text-decoration:underline}"
    ".st-status{margin:24px 0 0;font-size:12px;color:var(--muted);letter-spacing:.04em}"
    "@media (prefers-reduced-motion:reduce){.st-button{transition:none}}"
)

_HEAD_START = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
    '<meta name="robots" content="noindex"><title>'
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


def render_page(
    *,
    title: str,
    heading: str,
    message: str,
    status: int,
    sign_in_url: str | None = None,
    price_micros: int | None = None,
    back_url: str | None = None,
    back_label: str = "Go back",
) -> bytes:
    """Return a complete, self-contained UTF-8 HTML5 document.

    ``sign_in_url`` adds the "Sign In with Small Transfers" button, ``price_micros``
    the price of one visit, ``back_url`` a plain link labelled ``back_label``. All
    values are HTML-escaped; nothing is rejected.
    """
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
        parts += [
            '<p class="st-price">This page costs <strong>',
            _esc(format_micros(price_micros)),
            "</strong> per visit.</p>",
        ]
    if sign_in_url is not None:
        parts += [
            '<a class="st-button" id="st-sign-in" href="',
            _esc(sign_in_url),
            '">',
            _ICON_SVG,
            _BUTTON_TEXT,
            "</a>",
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
