from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import examples.demo.app as demo_app
import httpx
import pytest
from examples.demo.app import ESSAY_MAX_MICROS, PRICES, WORD_MICROS, WORDS, make_app

from st_middleware import Price, SmallTransfersWSGI
from st_middleware._pages import (
    FAVICON_LINK,
    FAVICON_SVG,
    SIGN_IN_BUTTON_CSS,
    format_micros,
    render_page,
    sign_in_button,
)
from st_middleware.emulator import Emulator
from st_middleware.testing import TEST_SESSION_SECRET, new_customer, signed_in_client

HOSTILE = '"><script>alert(1)</script>'
BUTTON_TEXT = "Sign In with Small Transfers"


def page(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "title": "Sign in required",
        "heading": "Sign in to continue",
        "message": "This page is paid per visit.",
        "status": 401,
    }
    kwargs.update(overrides)
    body = render_page(**kwargs)  # type: ignore[arg-type]
    assert isinstance(body, bytes)
    return body.decode("utf-8")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(doc: str) -> _Collector:
    collector = _Collector()
    collector.feed(doc)
    collector.close()
    return collector


# --- format_micros -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (0, "0.00 USD"),
        (1, "0.000001 USD"),
        (10, "0.00001 USD"),
        (3000, "0.003 USD"),
        (10_000, "0.01 USD"),
        (100_000, "0.10 USD"),
        (999_999, "0.999999 USD"),
        (1_000_000, "1.00 USD"),
        (1_500_000, "1.50 USD"),
        (2_000_000, "2.00 USD"),
        (1_230_000, "1.23 USD"),
        (1_234_000, "1.234 USD"),
        (123_456_789, "123.456789 USD"),
        (10**15, "1000000000.00 USD"),
    ],
)
def test_format_micros(micros: int, expected: str) -> None:
    assert format_micros(micros) == expected


@pytest.mark.parametrize("micros", [-1, -1_000_000])
def test_format_micros_negative_raises(micros: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_micros(micros)


@pytest.mark.parametrize("value", [True, False, 1.5, "3000", None])
def test_format_micros_non_int_raises(value: object) -> None:
    with pytest.raises(TypeError):
        format_micros(value)  # type: ignore[arg-type]


# --- document shape ---------------------------------------------------------------


def test_complete_self_contained_document() -> None:
    doc = page()
    assert doc.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in doc
    assert '<meta charset="utf-8">' in doc
    assert '<meta name="viewport"' in doc
    assert '<meta name="robots" content="noindex">' in doc
    assert "<title>Sign in required</title>" in doc
    assert "<style>" in doc
    assert "prefers-color-scheme:dark" in doc
    assert doc.rstrip().endswith("</html>")
    tags = [tag for tag, _ in parse(doc).tags]
    assert tags.count("main") == 1
    assert tags.count("h1") == 1
    assert len(doc.encode("utf-8")) < 6 * 1024


def test_status_shown() -> None:
    doc = page(status=503)
    assert "HTTP 503" in doc


def test_text_rendered() -> None:
    text = "".join(parse(page()).text)
    assert "Sign in to continue" in text
    assert "This page is paid per visit." in text


def test_no_external_assets_or_script() -> None:
    doc = page(
        sign_in_url="https://smalltransfers.example/sign-in?next=%2Fa",
        back_url="https://shop.example/",
        price_micros=3000,
    )
    lowered = doc.lower()
    for forbidden in ("<script", "src=", "@import", "url(", "@font-face", "<img"):
        assert forbidden not in lowered
    # The one link is the icon, carried inline: nothing is fetched.
    links = [attrs for tag, attrs in parse(doc).tags if tag == "link"]
    assert links == [
        {"rel": "icon", "type": "image/svg+xml", "href": links[0]["href"]},
    ]
    assert (links[0]["href"] or "").startswith("data:image/svg+xml;base64,")
    assert not re.search(r"\son[a-z]+\s*=", lowered)  # no inline event handlers
    urls = set(re.findall(r"https?://[^\s\"'<>]+", doc))
    assert urls == {
        "https://smalltransfers.example/sign-in?next=%2Fa",
        "https://shop.example/",
    }


def test_no_urls_at_all_without_links() -> None:
    doc = page().replace(FAVICON_LINK, "")
    assert "http://" not in doc
    assert "https://" not in doc
    assert "href=" not in doc


def test_every_page_has_an_inline_icon_and_no_favicon_request() -> None:
    doc = page()
    assert doc.count(FAVICON_LINK) == 1
    assert doc.index(FAVICON_LINK) < doc.index("</head>")
    encoded = FAVICON_LINK.split("base64,")[1].split('"')[0]
    assert base64.b64decode(encoded) == FAVICON_SVG
    assert FAVICON_SVG.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"')
    assert b'fill="#1976d2"' in FAVICON_SVG


def test_utf8_content() -> None:
    doc = page(message="Café — 5 €")
    assert "Café — 5 €" in doc


# --- sign-in button ---------------------------------------------------------------


def test_button_absent_without_sign_in_url() -> None:
    doc = page(price_micros=3000, back_url="/")
    assert BUTTON_TEXT not in doc
    assert "st-sign-in" not in doc
    assert "<svg" not in doc


def test_button_present_with_sign_in_url() -> None:
    doc = page(sign_in_url="/st/sign-in?next=%2Farticle")
    parsed = parse(doc)
    anchors = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert len(anchors) == 1
    (anchor,) = anchors
    assert anchor["id"] == "st-sign-in"
    assert anchor["class"] == "st-button"
    assert anchor["href"] == "/st/sign-in?next=%2Farticle"
    match = re.search(r'<a class="st-button" id="st-sign-in" href="[^"]*">(.*?)</a>', doc)
    assert match is not None
    inner = match.group(1)
    assert inner.startswith("<svg")  # icon comes before the text
    assert re.sub(r"<[^>]+>", "", inner) == BUTTON_TEXT  # exact visible text
    assert doc.count(BUTTON_TEXT) == 1


def test_button_icon_is_inline_svg() -> None:
    doc = page(sign_in_url="/sign-in")
    svgs = [attrs for tag, attrs in parse(doc).tags if tag == "svg"]
    assert len(svgs) == 1
    (svg,) = svgs
    assert svg["viewbox"] == "0 0 24 24"
    assert svg["fill"] == "currentColor"
    assert svg["aria-hidden"] == "true"
    assert svg["width"] == svg["height"] == "22"  # MUI's large start icon
    paths = [attrs for tag, attrs in parse(doc).tags if tag == "path"]
    assert len(paths) == 1
    d = paths[0]["d"]
    assert d is not None
    assert d.startswith("M12.89 11.1")


def test_button_css_matches_mui_contained_large() -> None:
    doc = page(sign_in_url="/sign-in")
    css = doc[doc.index("<style>") : doc.index("</style>")]
    rule = re.search(r"\.st-button\{([^}]*)\}", css)
    assert rule is not None
    decl = rule.group(1)
    for expected in (
        "background-color:#1976d2",
        "color:#fff",
        "border-radius:4px",
        "padding:8px 22px",
        "font-family:Roboto,Helvetica,Arial,sans-serif",
        "font-size:.9375rem",
        "font-weight:500",
        "line-height:1.75",
        "letter-spacing:.02857em",
        "text-transform:uppercase",
        "min-width:64px",
        "box-shadow:0 3px 1px -2px rgba(0,0,0,.2)",
    ):
        assert expected in decl
    # Roboto is named, never downloaded.
    assert "@font-face" not in css
    assert ".st-button:hover{background-color:#1565c0;box-shadow:0 2px 4px -1px" in css
    assert ".st-button:active{box-shadow:0 5px 5px -3px" in css
    assert ".st-button:focus-visible{box-shadow:0 3px 5px -1px" in css
    assert "margin:0 8px 0 -4px" in css  # the start icon


def test_the_shared_button_is_the_pages_button() -> None:
    """An app's pages (the demo shop's) show the very same button as the middleware's."""
    url = "/smalltransfers/sign-in?next=/"
    doc = page(sign_in_url=url)
    assert sign_in_button(url) in doc
    assert SIGN_IN_BUTTON_CSS in doc
    assert sign_in_button(HOSTILE).count("<script") == 0


# --- price and back link ----------------------------------------------------------


def test_price_shown() -> None:
    doc = page(price_micros=3000)
    text = "".join(parse(doc).text)
    assert "This page costs 0.003 USD per visit." in text


def test_an_authorization_is_not_called_a_price_per_visit() -> None:
    doc = page(message="Sign in to read on.", price_micros=7200, price_mode="authorize-capture")
    text = "".join(parse(doc).text)
    assert "This page asks for an authorization of up to 0.0072 USD, charged by use." in text
    assert "per visit" not in text


def test_a_route_describes_its_price_in_its_own_words() -> None:
    doc = page(
        price_micros=7200,
        price_mode="authorize-capture",
        price_description="0.0002 USD per word written, at most 0.0072 USD",
    )
    text = " ".join(parse(doc).text)
    assert "charged by use. 0.0002 USD per word written, at most 0.0072 USD" in text
    assert "0.0002 USD per word" not in page(price_micros=7200)
    assert "&lt;b&gt;" in page(price_micros=1, price_description="<b>")


def test_an_unknown_price_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="price_mode"):
        page(price_micros=1, price_mode="per-word")


def test_the_limit_page_links_to_the_dashboard() -> None:
    doc = page(
        status=402,
        price_micros=7200,
        price_mode="authorize-capture",
        dashboard_url="https://smalltransfers.com/customer/dashboard",
        dashboard_label="Raise your spending limit on Small Transfers",
    )
    assert (
        '<a href="https://smalltransfers.com/customer/dashboard">'
        "Raise your spending limit on Small Transfers</a>"
    ) in doc
    assert "up to <strong>0.0072 USD</strong>" in doc
    assert 'class="st-dashboard"' not in page(status=402)


def test_price_absent_by_default() -> None:
    assert "USD" not in page()


def test_zero_price_shown() -> None:
    assert "0.00 USD" in page(price_micros=0)


def test_negative_price_raises() -> None:
    with pytest.raises(ValueError, match="negative"):
        page(price_micros=-5)


def test_back_link() -> None:
    doc = page(status=402, back_url="/", back_label="Back to the home page")
    assert '<a href="/">Back to the home page</a>' in doc


def test_back_link_default_label() -> None:
    assert '<a href="/articles/1">Go back</a>' in page(back_url="/articles/1")


def test_back_link_absent_by_default() -> None:
    assert "Go back" not in page()


# --- escaping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "title",
        "heading",
        "message",
        "sign_in_url",
        "back_url",
        "back_label",
        "dashboard_url",
        "dashboard_label",
    ],
)
def test_hostile_value_escaped(field: str) -> None:
    overrides: dict[str, object] = {field: HOSTILE}
    if field == "back_label":
        overrides["back_url"] = "/"
    if field == "dashboard_label":
        overrides["dashboard_url"] = "/"
    doc = page(**overrides)
    assert HOSTILE not in doc
    assert "<script" not in doc
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    # The parser sees the original value as text or attribute, never as markup.
    parsed = parse(doc)
    assert "script" not in [tag for tag, _ in parsed.tags]
    if field in ("sign_in_url", "back_url", "dashboard_url"):
        hrefs = [attrs.get("href") for tag, attrs in parsed.tags if tag == "a"]
        assert hrefs == [HOSTILE]
    else:
        assert HOSTILE in parsed.text


def test_single_quotes_and_ampersands_escaped_in_urls() -> None:
    doc = page(sign_in_url="/a?x=1&y='2'", back_url="javascript:alert('x')")
    assert 'href="/a?x=1&amp;y=&#x27;2&#x27;"' in doc
    assert 'href="javascript:alert(&#x27;x&#x27;)"' in doc


def test_render_page_keyword_only() -> None:
    with pytest.raises(TypeError):
        render_page("t", "h", "m", 401)  # type: ignore[call-arg]


# --- the demo shop's pages --------------------------------------------------------


@pytest.fixture
def demo(emu: Emulator) -> Iterator[SmallTransfersWSGI]:
    app = make_app(
        emulator_url=emu.url,
        publishable_key=emu.publishable_key,
        secret_key=emu.secret_key,
        session_secret=TEST_SESSION_SECRET,
    )
    try:
        yield app
    finally:
        app.close()


def title_of(doc: str) -> str:
    match = re.search(r"<title>(.*?)</title>", doc)
    assert match is not None
    return match.group(1)


def test_demo_titles_name_the_shop_once(demo: SmallTransfersWSGI, emu: Emulator) -> None:
    with signed_in_client(demo, emu, new_customer(emu)) as client:
        assert title_of(client.get("/").text) == "Micro Shop"
        assert title_of(client.get("/joke").text) == "A joke · Micro Shop"
        assert title_of(client.get("/nowhere").text) == "Not found · Micro Shop"


def test_demo_pages_carry_the_shared_button_and_icon(demo: SmallTransfersWSGI) -> None:
    transport = httpx.WSGITransport(app=demo)
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        home = client.get("/").text
        icon = client.get("/favicon.ico")
    assert sign_in_button("/smalltransfers/sign-in?next=/") in home
    assert SIGN_IN_BUTTON_CSS in home
    assert FAVICON_LINK in home
    assert (icon.status_code, icon.content) == (200, FAVICON_SVG)


def test_the_essay_authorizes_what_the_longest_essay_costs() -> None:
    assert PRICES["/essay"] == Price(len(WORDS) * WORD_MICROS, mode="authorize-capture")
    assert ESSAY_MAX_MICROS == 7200  # 36 words at 0.0002 USD


def test_after_two_jokes_the_essay_is_served_not_refused(
    demo: SmallTransfersWSGI, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo customer's 0.01 USD: two jokes leave 0.008 USD, enough for any essay."""
    monkeypatch.setattr(demo_app, "WORD_DELAY", 0.0)
    customer = new_customer(emu, limit_micros=10_000)
    with signed_in_client(demo, emu, customer) as client:
        for _ in range(2):
            assert client.get("/joke").status_code == 200
        essay = client.get("/essay")
    assert essay.status_code == 200
    assert "0.0072 USD was authorized up front, the most an essay can cost" in essay.text
    words = int(re.search(r"(\d+) words: you pay", essay.text).group(1))  # type: ignore[union-attr]
    (row,) = [r for r in emu.ledger(customer.id) if r.kind == "charge"]
    assert (row.authorized_micros, row.captured_micros) == (7200, words * WORD_MICROS)
