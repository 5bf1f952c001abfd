from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from st_middleware._pages import format_micros, render_page

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
    for forbidden in ("<link", "<script", "src=", "@import", "url(", "@font-face", "<img"):
        assert forbidden not in lowered
    assert not re.search(r"\son[a-z]+\s*=", lowered)  # no inline event handlers
    urls = set(re.findall(r"https?://[^\s\"'<>]+", doc))
    assert urls == {
        "https://smalltransfers.example/sign-in?next=%2Fa",
        "https://shop.example/",
    }


def test_no_urls_at_all_without_links() -> None:
    doc = page()
    assert "http://" not in doc
    assert "https://" not in doc
    assert "href=" not in doc


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
    assert svg["width"] == svg["height"] == "20"
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
        "background:#1976d2",
        "color:#fff",
        "border-radius:4px",
        "padding:8px 22px",
        "font-size:15px",
        "font-weight:500",
        "letter-spacing:.02857em",
        "box-shadow:0 3px 1px -2px rgba(0,0,0,.2)",
    ):
        assert expected in decl


# --- price and back link ----------------------------------------------------------


def test_price_shown() -> None:
    doc = page(price_micros=3000)
    text = "".join(parse(doc).text)
    assert "This page costs 0.003 USD per visit." in text


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
    "field", ["title", "heading", "message", "sign_in_url", "back_url", "back_label"]
)
def test_hostile_value_escaped(field: str) -> None:
    overrides: dict[str, object] = {field: HOSTILE}
    if field == "back_label":
        overrides["back_url"] = "/"
    doc = page(**overrides)
    assert HOSTILE not in doc
    assert "<script" not in doc
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    # The parser sees the original value as text or attribute, never as markup.
    parsed = parse(doc)
    assert "script" not in [tag for tag, _ in parsed.tags]
    if field in ("sign_in_url", "back_url"):
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
