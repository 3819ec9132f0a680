import json
from datetime import datetime, timezone

import pytest

from tests.conftest import FEEDS_CORPUS, SEEDS
from transforms.errors import ParseError
from transforms.feeds import html_to_text, parse_feed

UTC = timezone.utc


def _seed(name: str) -> bytes:
    return (SEEDS / "feeds" / name).read_bytes()


@pytest.mark.parametrize("name, entries", [
    ("world-desk.rss", 6),
    ("riverton-chronicle.atom", 5),
    ("business-brief.rdf", 5),
])
def test_seed_feeds_parse_in_all_three_formats(name, entries):
    url = (SEEDS / "feeds" / name).as_uri()
    feed = parse_feed(_seed(name), source="s", url=url)
    assert len(feed.entries) == entries
    assert feed.warning is None
    for entry in feed.entries:
        # Relative links are resolved against the feed's own URL.
        assert entry.link.startswith((SEEDS / "pages").as_uri())
        assert entry.title and entry.feed_text


def test_rss_entry_fields():
    feed = parse_feed(_seed("world-desk.rss"), source="world", url="https://news.example.com/feeds/world.rss")
    kim = next(e for e in feed.entries if "Kim" in e.title)
    assert kim.published_at == datetime(2023, 9, 11, 5, 10, tzinfo=UTC)
    assert kim.guid == "world-desk-kim-jong-un-travels-to-russia-to-meet-putin"
    assert kim.link == "https://news.example.com/pages/kim-jong-un-travels-to-russia-to-meet-putin.html"
    assert kim.author == "World Desk staff"
    assert kim.language == "en"
    shipping = next(e for e in feed.entries if "shipping" in e.link)
    assert "utm_source" in shipping.link and "utm_source" not in shipping.canonical_link
    # content:encoded wins over the shorter description, paragraphs kept.
    ceasefire = next(e for e in feed.entries if "Ceasefire" in e.title)
    assert ceasefire.feed_text.count("\n") >= 2 and "Geneva" in ceasefire.feed_text


def test_atom_dates_are_utc():
    feed = parse_feed(_seed("riverton-chronicle.atom"), source="r", url="https://r.example/feed")
    bikes = next(e for e in feed.entries if "bike" in e.title)
    assert bikes.published_at == datetime(2023, 9, 6, 1, 30, tzinfo=UTC)  # 20:30 at -05:00


def test_rdf_entry_without_date():
    feed = parse_feed(_seed("business-brief.rdf"), source="b", url="https://b.example/rdf")
    undated = [e for e in feed.entries if e.published_at is None]
    assert [e.title for e in undated] == ["Central bank holds interest rates and signals a long pause"]


def test_garbage_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        parse_feed(b"<html><body>not a feed</body>", source="x", url="https://x.example/feed")
    assert info.value.url == "https://x.example/feed"
    assert info.value.stage == "parse"
    with pytest.raises(ParseError):
        parse_feed(b"", source="x", url="https://x.example/feed")


def test_entry_without_link_is_reported_not_dropped():
    raw = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>no link here</title><guid isPermaLink="false">abc</guid></item>
    <item><title>ok</title><link>https://x.example/a</link></item></channel></rss>"""
    feed = parse_feed(raw, source="x", url="https://x.example/feed")
    assert [e.link for e in feed.entries] == ["https://x.example/a"]
    assert feed.rejected == (("abc", "entry has no link"),)


def test_html_to_text_keeps_paragraphs_and_drops_scripts():
    text = html_to_text("<p>One <b>bold</b> line.</p><script>alert(1)</script><p>Two</p><ul><li>a</li><li>b</li></ul>")
    assert [line for line in text.splitlines() if line.strip()] == ["One bold line.", "Two", "a", "b"]
    assert html_to_text("plain words") == "plain words"
    assert html_to_text("") == ""


REAL_FEEDS = json.loads((FEEDS_CORPUS / "manifest.json").read_text())


@pytest.mark.parametrize("doc", REAL_FEEDS, ids=[d["path"] for d in REAL_FEEDS])
def test_corpus_feeds_give_entries_or_a_parse_error(doc):
    """Parsing stage only: the links in these feeds point at real sites."""
    raw = (FEEDS_CORPUS / doc["path"]).read_bytes()
    url = "https://feeds.example.com/" + doc["path"]
    try:
        feed = parse_feed(raw, source="corpus", url=url)
    except ParseError as exc:
        assert exc.reason in {"malformed_feed", "not_a_feed"}
        return
    assert all(e.link and e.canonical_link for e in feed.entries)
    observed = doc.get("observed_feedparser_6_0_14") or {}
    if observed.get("entries") and not doc.get("http_headers"):
        # Every entry feedparser sees is either kept or reported.
        assert len(feed.entries) + len(feed.rejected) == observed["entries"]


def test_malformed_links_fail_their_entry_not_the_feed():
    links = ["http://[::1/a", "http://example.com:99999/a", "http://exa mple.com/x", "https://good.example/1",
             "http://a..example/", "https://good.example/2"]
    items = "".join(f"<item><title>t{i}</title><link>{link}</link><description>d{i}</description></item>"
                    for i, link in enumerate(links))
    raw = f'<?xml version="1.0"?><rss version="2.0"><channel><title>f</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(raw, source="f", url="https://good.example/feed")
    assert [e.link for e in parsed.entries] == ["https://good.example/1", "https://good.example/2"]
    assert [(e.url, e.reason) for e in parsed.failed] == [
        ("http://[::1/a", "bad_url"), ("http://example.com:99999/a", "bad_url"), ("http://exa mple.com/x", "bad_url"),
        ("http://a..example/", "bad_url"),
    ]
    assert all(isinstance(e, ParseError) for e in parsed.failed)
