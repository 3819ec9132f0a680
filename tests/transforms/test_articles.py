from datetime import datetime, timezone

import pytest

from tests.conftest import SEEDS, seed_document
from transforms.articles import (
    build_article,
    decode_html,
    extract_page,
    looks_like_html,
)
from transforms.errors import ExtractError
from transforms.records import ExtractedPage, FeedEntry

UTC = timezone.utc
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SEED_PAGE = SEEDS / "pages" / "kim-jong-un-travels-to-russia-to-meet-putin.html"


def entry(**kw) -> FeedEntry:
    base = dict(source="world", link="https://news.example.com/a?utm_source=rss", canonical_link="https://news.example.com/a",
                guid="g1", title="Headline", author=None, published_at=datetime(2023, 9, 11, 5, tzinfo=UTC),
                feed_text="Short summary from the feed.", language="en")
    base.update(kw)
    return FeedEntry(**base)


def test_extract_seed_page_gives_the_seed_text_and_metadata():
    page = extract_page(decode_html(SEED_PAGE.read_bytes()), SEED_PAGE.as_uri())
    assert page.declared_url == "https://www.world-desk.example/2023/09/11/kim-jong-un-travels-to-russia-to-meet-putin"
    # htmldate trusts the date in the canonical URL (/2023/09/11/) first, to the day.
    assert page.published_at.date().isoformat() == "2023-09-11"
    assert page.author == "World Desk staff"
    article = build_article(entry(title="Kim Jong-Un travels to Russia to meet Putin"), page, page_problem=None, run_id="r", now=NOW)
    _date, body = seed_document()
    assert article.body.split() == body.split()
    assert article.body_source == "page" and article.body_note is None
    assert article.url == page.declared_url  # a saved page is known by the URL it declares
    assert article.language == "en"


def test_page_date_keeps_its_time_when_the_url_has_none():
    html = (
        "<html><head><meta property='article:published_time' content='2023-09-08T13:30:00+02:00'></head><body><article>"
        + "<p>" + "A sentence of the article body. " * 30 + "</p></article></body></html>"
    )
    page = extract_page(html, "https://news.example.com/economy/rates")
    assert page.published_at == datetime(2023, 9, 8, 11, 30, tzinfo=UTC)


def test_decode_html_charsets():
    text = "Café – “quoted”"
    cp1252 = f'<html><head><meta charset="windows-1252"></head><body>{text}</body></html>'.encode("cp1252")
    assert text in decode_html(cp1252)
    # "latin-1" on a page means windows-1252 (the curly quotes live there).
    latin = f'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>{text}</p>'.encode("cp1252")
    assert text in decode_html(latin)
    # The HTTP header wins over the meta tag.
    assert text in decode_html(f'<meta charset="utf-8"><p>{text}</p>'.encode("cp1252"), "windows-1252")
    assert text in decode_html(b"\xef\xbb\xbf" + f"<p>{text}</p>".encode("utf-8"), None)
    assert text in decode_html(f"<p>{text}</p>".encode("utf-8"), "no-such-charset")


def test_looks_like_html():
    assert looks_like_html(b"<!DOCTYPE html><html>")
    assert looks_like_html(b"\n  <html lang=en>")
    assert not looks_like_html(b"%PDF-1.7\n")
    assert not looks_like_html(b'{"a": 1}')


def test_feed_fallback_when_page_missing():
    article = build_article(entry(feed_text="First paragraph.\nSecond paragraph."), None, page_problem="http_404", run_id="r", now=NOW)
    assert article.body == "First paragraph.\n\nSecond paragraph."
    assert article.body_source == "feed"
    assert article.body_note == "http_404"
    assert article.url == "https://news.example.com/a"
    assert article.extractor == "feed"


def _page(text: str, **kw) -> ExtractedPage:
    base = dict(url="https://news.example.com/a", declared_url=None, title=None, author=None, published_at=None,
                text=text, extractor="trafilatura test")
    base.update(kw)
    return ExtractedPage(**base)


def test_page_much_shorter_than_feed_falls_back():
    long_feed = " ".join(["word"] * 80)
    article = build_article(entry(feed_text=long_feed), _page("Related stories and more links here."), page_problem=None, run_id="r", now=NOW)
    assert article.body_source == "feed" and article.body_note == "boilerplate_only"


def test_empty_extraction_falls_back_and_nothing_at_all_raises():
    article = build_article(entry(), _page(""), page_problem=None, run_id="r", now=NOW)
    assert article.body_source == "feed" and article.body_note == "empty_extraction"
    with pytest.raises(ExtractError) as info:
        build_article(entry(feed_text=""), None, page_problem="timeout", run_id="r", now=NOW)
    assert info.value.reason == "timeout" and info.value.url == "https://news.example.com/a?utm_source=rss"


def test_page_date_used_when_feed_has_none_and_future_rejected():
    page = _page("Body text " * 40, published_at=datetime(2023, 9, 8, 13, 30, tzinfo=UTC))
    article = build_article(entry(published_at=None), page, page_problem=None, run_id="r", now=NOW)
    assert (article.published_at, article.date_source) == (datetime(2023, 9, 8, 13, 30, tzinfo=UTC), "page")
    assert str(article.published_date) == "2023-09-08"
    future = entry(published_at=datetime(2031, 1, 1, tzinfo=UTC))
    article = build_article(future, None, page_problem="timeout", run_id="r", now=NOW)
    assert article.date_source == "first_seen" and article.published_at == NOW
    assert "2031" in article.date_note


@pytest.mark.parametrize("title, text, reason", [
    ("Just a moment...", "Checking if the site connection is secure. Enable JavaScript and cookies to continue.", "bot_wall"),
    ("Attention Required! | Cloudflare", "Please complete the security check to access the site.", "bot_wall"),
    ("Markets rally", "Stocks rose on Monday. Subscribe to continue reading this article.", "paywalled"),
])
def test_challenge_and_paywall_pages_fall_back_with_a_reason(title, text, reason):
    feed_text = "The full summary the feed gives for this story, which is longer than the teaser. " * 3
    article = build_article(entry(feed_text=feed_text), _page(text, title=title), page_problem=None, run_id="r", now=NOW)
    assert article.body_source == "feed" and article.body_note == reason


def test_a_long_article_mentioning_javascript_is_not_a_bot_wall():
    text = "Developers who enable JavaScript modules in the browser gain speed. " * 60
    article = build_article(entry(), _page(text), page_problem=None, run_id="r", now=NOW)
    assert article.body_source == "page"


_UNPRINTABLE = set(map(chr, [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]))
_HOSTILE = "Entity ctrl &#27;[2J&#27;[31mRED &#7; bell"


def test_a_page_with_control_references_is_extracted_without_them():
    # lxml decoded &#27; into text trafilatura then failed on: the page came out empty.
    sentence = "A sentence of the body &#27;[2J with &#0; nul &#x9b; csi &#127; del and \x1b raw. "
    html = (f"<html><head><title>{_HOSTILE}</title><meta name='author' content='Jo &#27;Bloggs&#7;'></head>"
            f"<body><article><p>{sentence * 20}</p></article></body></html>")
    page = extract_page(html, "https://news.example.com/x")
    article = build_article(entry(title=None, author=None), page, page_problem=None, run_id="r", now=NOW)
    assert article.body_source == "page"
    assert article.title == "Entity ctrl [2J[31mRED bell"
    assert article.author == "Jo Bloggs"
    assert article.body.startswith("A sentence of the body [2J with nul › csi del and raw. ")
    assert not set(article.body + article.title + article.author) & _UNPRINTABLE


def test_raw_controls_in_a_page_or_a_stored_entry_are_not_kept():
    """Pages read from a WARC file, entries read back for a retry or a
    re-extraction (an older warehouse's raw title) go through build_article."""
    page = _page("Body \x1b[2J text\x00 \x9b31m with \x7f controls.\r\nNext\tline. " * 20,
                 title="Page \x1b]0;x\x07 title", author="Au\x9bthor")
    stored = entry(title="Stored \x1b[2J title\x07", author="By \x00Someone", feed_text="Feed \x1b[31m text.")
    article = build_article(stored, page, page_problem=None, run_id="r", now=NOW)
    assert (article.title, article.author) == ("Stored [2J title", "By Someone")
    assert article.body.startswith("Body [2J text 31m with controls.\n\nNext line. Body")
    fallback = build_article(stored, None, page_problem="timeout", run_id="r", now=NOW)
    assert fallback.body == "Feed [31m text."
    untitled = build_article(entry(title=None, author=None), page, page_problem=None, run_id="r", now=NOW)
    assert (untitled.title, untitled.author) == ("Page ]0;x title", "Author")
