from datetime import date, datetime, timedelta, timezone

import pytest

from transforms.normalize import (
    article_id_for,
    canonical_url,
    choose_article_url,
    choose_published_at,
    content_hash,
    detect_language,
    normalize_text,
    to_utc,
    word_count,
)

UTC = timezone.utc


@pytest.mark.parametrize("raw, expected", [
    ("HTTPS://WWW.Example.COM:443/a/b?utm_source=x&b=2&a=1&fbclid=zz&gclid=1#frag", "https://www.example.com/a/b?a=1&b=2"),
    ("http://example.com/story?id=5&utm_medium=rss", "http://example.com/story?id=5"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com/a#comments", "https://example.com/a"),
    ("http://Example.com:8080/x", "http://example.com:8080/x"),
    ("file:///srv/pages/a.html?utm_source=feed", "file:///srv/pages/a.html"),
])
def test_canonical_url(raw, expected):
    assert canonical_url(raw) == expected


def test_canonical_url_is_idempotent():
    once = canonical_url("https://News.example.com/x/?utm_campaign=a&q=1#top")
    assert canonical_url(once) == once


def test_page_canonical_preferred_only_on_same_site():
    fetched = "https://www.example.com/story?id=1&utm_source=rss"
    assert choose_article_url(fetched, "https://example.com/news/story-1") == "https://example.com/news/story-1"
    # Another site cannot claim the page.
    assert choose_article_url(fetched, "https://other.test/story") == "https://www.example.com/story?id=1"
    assert choose_article_url(fetched, None) == "https://www.example.com/story?id=1"
    # A saved copy on disk is identified by the URL it declares.
    assert choose_article_url("file:///x/a.html", "https://example.com/a") == "https://example.com/a"
    assert choose_article_url("file:///x/a.html", "javascript:void(0)") == "file:///x/a.html"


def test_normalize_text_nfc_whitespace_paragraphs():
    raw = "  Cafe\u0301  au   lait\u00a0bar \r\nSecond\tline\n\n\n third  "
    assert normalize_text(raw) == "Café au lait bar\n\nSecond line\n\nthird"


def test_normalize_text_drops_repeated_headline():
    assert normalize_text("Big  News\nBody text.", "Big News") == "Body text."
    assert normalize_text("Page Head\nBody text.", None, "Page  Head") == "Body text."
    assert normalize_text("Other first line\nBody.", "Big News") == "Other first line\n\nBody."


def test_hash_and_counts_are_deterministic():
    assert content_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # Pinned: ids are stored, so a change of scheme would orphan every
    # warehouse's rows. sha256("https://example.com/a"), first 20 hex digits.
    assert article_id_for("https://example.com/a") == "2dce0a4c50441bfccfa9"
    assert article_id_for("https://example.com/b") == "d7fe568b31ae0fb9ee8a"
    assert word_count("It's 2 o'clock — déjà vu.") == 7


def test_to_utc():
    assert to_utc(date(2023, 9, 11)) == datetime(2023, 9, 11, tzinfo=UTC)
    assert to_utc(datetime(2023, 9, 11, 8, 0, tzinfo=timezone(timedelta(hours=2)))) == datetime(2023, 9, 11, 6, 0, tzinfo=UTC)
    assert to_utc(datetime(2023, 9, 11, 8, 0)) == datetime(2023, 9, 11, 8, 0, tzinfo=UTC)
    assert to_utc(None) is None


NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
FEED = datetime(2023, 9, 11, 5, 0, tzinfo=UTC)
PAGE = datetime(2023, 9, 10, 5, 0, tzinfo=UTC)
SEEN = datetime(2023, 12, 31, tzinfo=UTC)


def test_published_at_prefers_feed_then_page_then_first_seen():
    assert choose_published_at(FEED, PAGE, SEEN, NOW) == (FEED, "feed", None)
    assert choose_published_at(None, PAGE, SEEN, NOW) == (PAGE, "page", None)
    assert choose_published_at(None, None, SEEN, NOW) == (SEEN, "first_seen", None)


def test_future_dates_are_rejected_and_noted():
    future = NOW + timedelta(days=3)
    when, source, note = choose_published_at(future, PAGE, SEEN, NOW)
    assert (when, source) == (PAGE, "page")
    assert "feed date" in note and "after the run started" in note
    when, source, note = choose_published_at(future, future, SEEN, NOW)
    assert (when, source) == (SEEN, "first_seen")
    assert "page date" in note


def test_detect_language():
    english = "The council voted on Tuesday to build protected bike lanes along a mile of Main Street, ending a long debate."
    spanish = "Miles de aficionados llenaron este jueves las calles del centro de Valencia para recibir la etapa de la Vuelta."
    assert detect_language(english) == "en"
    assert detect_language(spanish) == "es"
    # Too short to tell: the feed's declared language, reduced to its code.
    assert detect_language("Breaking news", fallback="de-AT") == "de"
    assert detect_language("Breaking news") is None


@pytest.mark.parametrize("bad", [
    "http://[::1/a",  # unclosed IPv6 bracket
    "http://example.com:99999/a",  # port out of range
    "http://example.com:http/a",  # port not a number
    "http://exa mple.com/a",  # space in the host
    "http://\u2000.example/a",  # a Unicode space
    "http://a..example/a",  # empty label
    "http://" + "a" * 70 + ".example/a",  # label longer than 63
    "https:///nohost",
])
def test_canonical_url_raises_a_typed_error_for_what_is_no_url(bad):
    from transforms.errors import ParseError

    with pytest.raises(ParseError) as caught:
        canonical_url(bad)
    assert caught.value.reason == "bad_url" and caught.value.url == bad


@pytest.mark.parametrize("raw, expected", [
    ("file:///etc/passwd", "file:///etc/passwd"),
    ("FILE:/etc/passwd", "file:///etc/passwd"),
    ("file://localhost/etc/passwd", "file:///etc/passwd"),
])
def test_canonical_url_keeps_a_file_urls_whole_path(raw, expected):
    assert canonical_url(raw) == expected


@pytest.mark.parametrize("bad, says", [
    ("file://etc/passwd", "host 'etc'"),  # what feedparser makes of file:///etc/passwd
    ("file:etc/passwd", "not absolute"),  # courlan would make it /etc/passwd
])
def test_canonical_url_refuses_a_file_url_it_would_have_to_move(bad, says):
    from transforms.errors import ParseError

    with pytest.raises(ParseError) as caught:
        canonical_url(bad)
    assert caught.value.reason == "bad_url" and caught.value.url == bad
    assert says in caught.value.message


@pytest.mark.parametrize("bad, scheme", [
    ("data:text/html,<script>alert(1)</script>", "data"),
    ("DATA:text/plain;base64,aGk=", "data"),
    ("javascript:alert(document.cookie)", "javascript"),
    ("mailto:desk@example.com", "mailto"),
    ("ftp://example.com/x", "ftp"),
    ("/no/scheme", ""),
])
def test_canonical_url_refuses_schemes_that_are_not_fetched(bad, scheme):
    from transforms.errors import ParseError

    with pytest.raises(ParseError) as caught:
        canonical_url(bad)
    assert caught.value.reason == "scheme_not_allowed" and caught.value.url == bad
    assert f"{scheme}:" in caught.value.message if scheme else "no scheme" in caught.value.message


@pytest.mark.parametrize("good", ["http://[::1]:8080/a", "https://bücher.example/x", "http://xn--bcher-kva.example/",
                                  "file:///tmp/a b.html", "http://127.0.0.1:65535/"])
def test_canonical_url_accepts_unusual_but_valid_urls(good):
    assert canonical_url(good)


def test_a_malformed_declared_url_is_no_identity():
    assert choose_article_url("https://x.example/a", "https://x.example:99999/b") == "https://x.example/a"
