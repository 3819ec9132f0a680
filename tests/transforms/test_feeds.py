import html
import json
import re
from dataclasses import replace
from datetime import datetime, timezone

import feedparser
import pytest

from tests.conftest import FEEDS_CORPUS, SEEDS
from transforms.articles import build_article
from transforms.charsets import codec_name
from transforms.dedupe import global_guid, plan_entries, resolve_duplicates, sighting
from transforms.errors import ParseError
from transforms.feeds import entry_key, feed_text, html_to_text, parse_date_text, parse_feed
from transforms.normalize import article_id_for, normalize_text, normalize_title
from transforms.records import KnownKeys

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


def test_html_to_text_keeps_paragraphs_and_drops_scripts():
    text = html_to_text("<p>One <b>bold</b> line.</p><script>alert(1)</script><p>Two</p><ul><li>a</li><li>b</li></ul>")
    assert [line for line in text.splitlines() if line.strip()] == ["One bold line.", "Two", "a", "b"]
    assert html_to_text("plain words") == "plain words"
    assert html_to_text("") == ""


# -- text as the publisher meant it ------------------------------------------------


def _rss(items: str, head: str = "") -> bytes:
    return f'<rss version="2.0"><channel><title>t</title>{head}{items}</channel></rss>'.encode("utf-8")


def _atom(entries: str) -> bytes:
    return f'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{entries}</feed>'.encode("utf-8")


def test_entities_are_decoded_without_tags_around_them():
    raw = _rss("""<item><title><![CDATA[Tom &amp; Jerry studio deal]]></title><link>https://x.example/a</link>
        <description><![CDATA[Tom &amp; Jerry&#8217;s studio signed a deal on Monday&nbsp;morning.]]></description></item>""")
    entry = parse_feed(raw, source="x", url="https://x.example/feed").entries[0]
    assert entry.title == "Tom & Jerry studio deal"
    assert normalize_text(entry.feed_text) == "Tom & Jerry’s studio signed a deal on Monday morning."
    assert html_to_text("Tom &amp; Jerry&#8217;s") == "Tom & Jerry’s"


def test_html_titles_lose_their_markup_and_text_titles_keep_theirs():
    raw = _atom("""
        <entry><title type="html">Example &lt;b&gt;Atom&lt;/b&gt;</title><link href="https://x.example/1"/></entry>
        <entry><title type="html">Bonds &amp;amp; stocks &lt;i&gt;rally&lt;/i&gt;</title><link href="https://x.example/2"/></entry>
        <entry><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Rates <b>hold</b> &amp; wait</div></title>
               <link href="https://x.example/3"/></entry>
        <entry><title type="text">History of the &lt;blink&gt; tag</title><link href="https://x.example/4"/></entry>
        <entry><title>Tom &amp;amp; Jerry, literally</title><link href="https://x.example/5"/></entry>""")
    titles = [e.title for e in parse_feed(raw, source="x", url="https://x.example/feed").entries]
    assert titles == ["Example Atom", "Bonds & stocks rally", "Rates hold & wait", "History of the <blink> tag",
                      "Tom &amp; Jerry, literally"]  # a text title says "&amp;" in so many characters


def test_feed_text_by_type():
    assert feed_text("A <b>bold</b> &amp; brave", "text/html") == "A bold & brave"
    assert feed_text("X <b>y</b> &amp; z", "application/xhtml+xml") == "X y & z"
    assert feed_text("History of the <blink> tag", "text/plain") == "History of the <blink> tag"
    assert feed_text(" &#8217; ", "text/plain") == "&#8217;"
    assert feed_text(None, "text/html") == ""


def test_plain_text_body_is_literal_and_html_body_is_text():
    raw = _atom("""<entry><title>a</title><link href="https://x.example/1"/>
        <content type="text">Use &lt;p&gt; for paragraphs &amp;amp; more.</content></entry>
        <entry><title>b</title><link href="https://x.example/2"/>
        <content type="html">&lt;p&gt;One&lt;/p&gt;&lt;p&gt;Two &amp;amp; three&lt;/p&gt;</content></entry>""")
    first, second = parse_feed(raw, source="x", url="https://x.example/feed").entries
    assert first.feed_text == "Use <p> for paragraphs &amp; more."
    assert normalize_text(second.feed_text) == "One\n\nTwo & three"


# -- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("mer, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),  # Italian
    ("Mi, 16 Nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),  # German
    ("mié, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),  # Spanish
    ("mer., 16 nov. 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),  # French
    ("Seg, 24 Set 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),  # Portuguese
    ("Sat, Dec 16 2023 02:02:33 PM", datetime(2023, 12, 16, 14, 2, 33, tzinfo=UTC)),
    ("Sat, 16 Dec 2023 02:02:33 PM +0200", datetime(2023, 12, 16, 12, 2, 33, tzinfo=UTC)),
    ("Sat, 16 Dec 2023 11:30 am", datetime(2023, 12, 16, 11, 30, tzinfo=UTC)),
    ("Sat, 16 Dec 2023 12:05:00 AM", datetime(2023, 12, 16, 0, 5, tzinfo=UTC)),
    ("Wed, 16 Nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),  # feedparser's own
])
def test_feed_dates_in_other_languages_and_12_hour_clocks(raw, expected):
    feed = parse_feed(_rss(f"<item><title>a</title><link>https://x.example/a</link><pubDate>{raw}</pubDate></item>"),
                      source="x", url="https://x.example/feed")
    assert feed.entries[0].published_at == expected
    assert feed.entries[0].published_raw is None


def test_the_date_parser_never_reads_relative_dates():
    from dateparser.date import DateDataParser

    from transforms.feeds import _DATE_LANGUAGES, _DATEPARSER_SETTINGS

    parser = DateDataParser(languages=_DATE_LANGUAGES, settings=_DATEPARSER_SETTINGS)
    for text in ["yesterday", "ieri", "gestern", "3 days ago", "hace 2 horas", "today 10:00", "16 nov"]:
        assert parser.get_date_data(text).date_obj is None, text
    assert parser.get_date_data("16 nov 2022").date_obj == datetime(2022, 11, 16, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["yesterday", "ieri", "3 days ago", "hace 2 horas", "16 nov", "soon",
                                 "sometime in 2024", "32 nov 2022"])
def test_relative_incomplete_and_unreadable_dates_are_kept_raw(raw):
    assert parse_date_text(raw) is None
    feed = parse_feed(_rss(f"<item><title>a</title><link>https://x.example/a</link><pubDate>{raw}</pubDate></item>"),
                      source="x", url="https://x.example/feed")
    entry = feed.entries[0]
    assert entry.published_at is None and entry.published_raw == raw
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    article = build_article(replace(entry, feed_text="Some words. " * 20), None, page_problem=None, run_id="r", now=now)
    assert article.published_raw == raw
    assert article.date_source == "first_seen" and article.published_at == now
    assert article.date_note == f"feed date {raw!r} could not be read"


def test_date_handlers_are_registered_once_in_order():
    import feedparser.datetimes

    from transforms import feeds

    handlers = feedparser.datetimes._date_handlers
    assert handlers[0] is feeds._twelve_hour_handler and handlers[-1] is feeds._any_language_handler
    feeds._register_date_handlers()
    assert sum(h.__module__ == "transforms.feeds" for h in handlers) == 2


# -- items without a link -----------------------------------------------------------


def test_items_without_link_but_with_text_are_entries_keyed_on_guid_or_hash():
    raw = _rss("""
        <item><title>Tagged</title><guid isPermaLink="false">tag:news.example,2024:item-7</guid>
              <description>The whole story is here in the feed.</description></item>
        <item><title>Local guid</title><guid isPermaLink="false">7</guid><description>Story two.</description></item>
        <item><title>No guid</title><pubDate>Wed, 16 Nov 2022 00:38:15 +0100</pubDate><description>Story three.</description></item>
        <item><title>Title only</title><guid isPermaLink="false">x-9</guid></item>""")
    feed = parse_feed(raw, source="desk", url="https://news.example/feed")
    tagged, local, unguided = feed.entries
    assert tagged.link is None and not tagged.has_link
    assert tagged.canonical_link == "tag:news.example,2024:item-7"
    assert local.canonical_link == entry_key("desk", "7", "Local guid", None)
    assert local.canonical_link.startswith("urn:newsdesk:entry:")
    assert unguided.canonical_link == entry_key("desk", None, "No guid", "Wed, 16 Nov 2022 00:38:15 +0100")
    # The same item in another feed (plain GUIDs are local to their feed) or with another date is another key.
    assert entry_key("other", "7", "Local guid", None) != local.canonical_link
    assert entry_key("desk", None, "No guid", "Thu, 17 Nov 2022 00:38:15 +0100") != unguided.canonical_link
    # Parsing again gives the same keys: a rerun does not double them.
    again = parse_feed(raw, source="desk", url="https://news.example/feed")
    assert [e.canonical_link for e in again.entries] == [e.canonical_link for e in feed.entries]
    # Nothing to load: no link, no text. Recorded with no URL, never with its title as one.
    assert feed.rejected == ((None, "entry has no link and no text (guid 'x-9', title 'Title only')"),)


def test_an_item_without_link_becomes_a_feed_article():
    raw = _rss("""<item><title>Tagged</title><guid isPermaLink="false">tag:news.example,2024:item-7</guid>
        <description>The whole story is here in the feed, with enough words to stand on its own.</description></item>
        <item><title>Local</title><guid isPermaLink="false">7</guid><description>Another story told in full in the feed.</description></item>""")
    tagged, local = parse_feed(raw, source="desk", url="https://news.example/feed").entries
    now = datetime(2024, 5, 1, tzinfo=UTC)
    article = build_article(tagged, None, page_problem=None, run_id="r", now=now)
    assert article.url == "tag:news.example,2024:item-7"
    assert article.article_id == article_id_for("tag:news.example,2024:item-7")
    assert (article.body_source, article.body_note, article.extractor) == ("feed", None, "feed")
    assert sighting(tagged, article.article_id, run_id="r", now=now).url == "tag:news.example,2024:item-7"
    other = build_article(local, None, page_problem=None, run_id="r", now=now)
    assert other.url == local.canonical_link and other.url.startswith("urn:newsdesk:entry:")
    assert other.article_id == article_id_for(local.canonical_link)
    resolved = resolve_duplicates([((local,), other), ((tagged,), article)], KnownKeys(), run_id="r", now=now)
    assert len(resolved.articles) == 2 and resolved.duplicates == 0
    # The same tag: GUID in another feed is the same item; the same plain GUID is not.
    elsewhere = parse_feed(raw, source="wire", url="https://wire.example/feed").entries
    plan = plan_entries([tagged, local, *elsewhere], KnownKeys())
    assert [[e.source for e in group] for group in plan.to_fetch] == [["desk", "wire"], ["desk"], ["wire"]]


# -- encodings ----------------------------------------------------------------------

LEGACY = {
    # encoding: (language tag, title, body, characters of the script)
    "koi8-r": ("ru", "Как пережить зиму в Москве",
               "Городские власти объявили, что в этом году зима будет холоднее обычного.", r"А-Яа-яЁё"),
    "euc-jp": ("ja", "東京で新しい美術館が開館",
               "東京都内に新しい美術館が開館し、初日には多くの来館者が訪れました。", r"\u3040-\u30ff\u4e00-\u9fff、。"),
    "tis-620": ("th", "กรุงเทพฯ เปิดสวนสาธารณะแห่งใหม่",
                "กรุงเทพมหานครเปิดสวนสาธารณะแห่งใหม่ใจกลางเมือง ประชาชนจำนวนมากเดินทางมาพักผ่อน", r"\u0e00-\u0e7f"),
    "gb2312": ("zh", "北京举行国际科技展览会",
               "北京今天开幕了一年一度的国际科技展览会，来自世界各地的企业展示了最新的人工智能技术。", r"\u4e00-\u9fff，。"),
}


def legacy_feed(encoding: str) -> bytes:
    """An RSS feed in a legacy encoding with no declaration anywhere (no XML
    declaration, no charset): only its bytes say what it is."""
    lang, title, body, _ = LEGACY[encoding]
    xml = (f'<rss version="2.0"><channel><title>{title}</title><language>{lang}</language>'
           f'<item><title>{title}</title><link>https://x.example/{lang}</link><description>{body}</description>'
           f'</item></channel></rss>')
    return xml.encode(encoding)


@pytest.mark.parametrize("encoding", sorted(LEGACY))
def test_undeclared_legacy_encodings_are_detected_and_warned(encoding):
    lang, title, body, script = LEGACY[encoding]
    raw = legacy_feed(encoding)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the case: not UTF-8, and nothing says what it is
    feed = parse_feed(raw, source="x", url="https://x.example/feed", headers={"Content-Type": "application/rss+xml"})
    entry = feed.entries[0]
    assert (entry.title, normalize_text(entry.feed_text)) == (title, body)
    assert feed.title == title
    assert re.fullmatch(rf"[\sA-Za-z0-9.,{script}]+", entry.title + entry.feed_text)  # no mojibake
    assert feed.warning.startswith("encoding: no encoding declared and the bytes are not UTF-8: detected ")
    assert raw.decode(feed.encoding) == raw.decode(encoding)


def test_declared_encoding_is_used_and_clean_feeds_carry_no_warning():
    raw = '<?xml version="1.0" encoding="koi8-r"?>'.encode() + legacy_feed("koi8-r")
    feed = parse_feed(raw, source="x", url="https://x.example/feed")
    assert feed.warning is None and feed.encoding == "koi8-r"
    assert feed.entries[0].title == LEGACY["koi8-r"][1]
    # The HTTP charset comes before the document's declaration.
    feed = parse_feed(legacy_feed("koi8-r"), source="x", url="https://x.example/feed",
                      headers={"Content-Type": "text/xml; charset=KOI8-R"})
    assert feed.warning is None and feed.entries[0].title == LEGACY["koi8-r"][1]


def test_a_declaration_the_bytes_contradict_is_warned():
    raw = '<?xml version="1.0" encoding="utf-8"?>'.encode() + legacy_feed("koi8-r")
    feed = parse_feed(raw, source="x", url="https://x.example/feed")
    assert feed.entries[0].title == LEGACY["koi8-r"][1]
    assert feed.warning == "encoding: declared utf-8 but the bytes are not utf-8: detected koi8-r"


# -- the feed documents of tests/data/feeds --------------------------------------------

REAL_FEEDS = json.loads((FEEDS_CORPUS / "manifest.json").read_text())
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]{1,31});", re.I)
_MARKUP = re.compile(r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>", re.I)
# UTF-8 read as windows-1252 or latin-1: "Ã©" for "é", "â€™" for "’".
_MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|Â[\u0080-\u00bf]|â€")
# Documents whose point is broken text: the rules on text do not apply.
_LINE_NOISE = {"feedparser/encoding/bozo_linenoise.xml"}
# Legacy encodings with no declaration: every non-ASCII character must be of the script.
_SCRIPTS = {
    "feedparser/illformed/chardet/big5.xml": r"\u4e00-\u9fff，。？?",  # its own text has "?" for unmappable characters
    "feedparser/illformed/chardet/euckr.xml": r"\uac00-\ud7a3",
    "feedparser/illformed/chardet/shiftjis.xml": r"\u3000-\u30ff\u4e00-\u9fff…、。",
    "feedparser/illformed/chardet/windows1255.xml": r"\u0590-\u05ff",
    "real/rss-parser/uolNoticias.rss": r"\u00a0-\u00ff\u2018-\u201d\u2026",  # Latin-1, not cp1257 or cp1250
}
# What feedparser's expectations name, and the codec we read the same bytes with.
_SAME_CODEC = {"gb2312": "gb18030", "iso8859-1": "cp1252", "euc_kr": "cp949"}


def _codec(name: str | None) -> str | None:
    name = codec_name(name)
    return _SAME_CODEC.get(name, name)


def _headers(doc) -> dict[str, str] | None:
    if not doc.get("http_headers"):
        return None
    headers = dict(line.split(":", 1) for line in doc["http_headers"])
    headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
    # feedparser's harness serves the files as a web server would: with a type.
    headers.setdefault("content-type", "application/xml")
    return headers


def _literal(fields) -> set[str]:
    """Values feedparser types text/plain: literal, '<' and '&' included."""
    return {normalize_title(d["value"]) for d in fields if d and d.get("type") == "text/plain" and d.get("value")}


@pytest.mark.parametrize("doc", REAL_FEEDS, ids=[d["path"] for d in REAL_FEEDS])
def test_corpus_feed_reads_as_the_publisher_meant(doc):
    """Each document through newsdesk's own transforms, against the manifest's
    expectations and the rules for text. Parsing only: links point at real sites."""
    raw = (FEEDS_CORPUS / doc["path"]).read_bytes()
    headers = _headers(doc)
    observed = doc.get("observed_feedparser_6_0_14") or {}
    try:
        feed = parse_feed(raw, source="corpus", url="https://feeds.example.com/" + doc["path"], headers=headers)
    except ParseError as exc:
        # Only documents in which feedparser finds no entry at all may fail.
        assert exc.reason in {"malformed_feed", "not_a_feed"} and observed.get("entries") == 0
        assert doc.get("bozo_expected") is not False or exc.reason == "not_a_feed"
        return

    if doc.get("bozo_expected") is not None:
        assert (feed.warning is not None) is doc["bozo_expected"], feed.warning
    expected = re.search(r"\bencoding == '([^']+)'", doc.get("expect") or "")
    if expected and not doc.get("http_headers"):
        assert _codec(feed.encoding) == _codec(expected.group(1))
    if observed.get("entries") is not None:
        # Every entry feedparser sees is kept or reported.
        assert len(feed.entries) + len(feed.rejected) == observed["entries"]
    assert all(url is None for url, _ in feed.rejected)  # a URL or None, never a title

    plain = feedparser.parse(raw, response_headers=headers or {})
    literal_titles = _literal(e.get("title_detail") for e in plain.entries)
    literal_bodies = _literal(d for e in plain.entries for d in [e.get("summary_detail"), *(e.get("content") or [])])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for entry in feed.entries:
        assert entry.canonical_link
        assert entry.has_link or entry.guid is None or entry.canonical_link == entry.guid or \
            entry.canonical_link.startswith("urn:newsdesk:entry:")
        article = build_article(entry, None, page_problem=None, run_id="r", now=now) \
            if normalize_text(entry.feed_text, entry.title) else None
        texts = [("title", entry.title or "", entry.title in literal_titles)]
        if article is not None:
            texts.append(("body", article.body, any(normalize_text(b) == article.body for b in literal_bodies)))
        for what, text, is_literal in texts:
            if doc["path"] in _LINE_NOISE:
                continue
            if not is_literal:
                assert not _ENTITY.search(text), f"{what} keeps an entity: {text!r}"
                assert what == "body" or not _MARKUP.search(text), f"{what} keeps markup: {text!r}"
            assert not _MOJIBAKE.search(text), f"{what} is mojibake: {text!r}"
            assert "\ufffd" not in text
            if doc["path"] in _SCRIPTS:
                assert re.fullmatch(rf"[\x00-\x7f{_SCRIPTS[doc['path']]}]*", text), f"{what} is mojibake: {text!r}"
        if article is not None and not entry.has_link:
            assert article.url == entry.canonical_link == (global_guid(entry.guid) or article.url)
            assert article.article_id == article_id_for(entry.canonical_link)


def test_corpus_portuguese_feed_without_declaration():
    """uolNoticias.rss: ISO-8859-1 bytes, no declaration, Portuguese dates
    feedparser cannot read (it dates none of its 15 items)."""
    raw = (FEEDS_CORPUS / "real/rss-parser/uolNoticias.rss").read_bytes()
    feed = parse_feed(raw, source="uol", url="https://feeds.example.com/uol.rss")
    assert feed.encoding == "cp1252"
    assert feed.warning == "encoding: no encoding declared and the bytes are not UTF-8: detected cp1252"
    assert len(feed.entries) == 15
    assert all(e.published_at is not None and e.published_raw is None for e in feed.entries)
    assert feed.title == "UOL Noticias"
    assert any("ç" in (e.title or "") + e.feed_text or "ã" in (e.title or "") + e.feed_text for e in feed.entries)


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


# What no stored single-line field may hold: every C0 control, DEL and C1 but tab and newline.
_UNPRINTABLE = set(map(chr, [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]))
HOSTILE_RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Feed &#27;]0;owned&#7; title</title><link>https://news.example.com/</link>
<item>
 <title>Entity ctrl &#27;[2J&#27;[31mRED &#7; bell</title>
 <link>https://news.example.com/a&#27;[2J?q=&#27;</link>
 <guid isPermaLink="false">g&#27;[31m-1</guid>
 <author>Jo &#0;Bloggs &#x9b;31m &#127;x</author>
 <dc:language>e&#27;n</dc:language>
 <pubDate>Someday &#27;[2J 1999</pubDate>
 <description>First &#27;[2Jline &#0;nul &#x9b;csi &#127;del&#13;&#10;second&#9;line</description>
</item>
<item>
 <title><![CDATA[raw \u009b31m C1 and \u007f DEL]]></title>
 <link>https://news.example.com/b</link>
 <description><![CDATA[raw \u009b31m C1 and \u007f DEL and \x1b[2J ESC]]></description>
</item>
</channel></rss>""".encode()


def test_control_characters_from_a_feed_are_not_stored():
    feed = parse_feed(HOSTILE_RSS, source="s", url="https://news.example.com/feed")
    hostile, raw = feed.entries
    assert hostile.title == "Entity ctrl [2J[31mRED bell"
    assert feed.title == "Feed ]0;owned title"
    assert hostile.author == "Jo Bloggs ›31m x"  # &#x9b; in HTML means windows-1252 "›"
    assert hostile.guid == "g[31m-1"
    assert hostile.published_raw == "Someday [2J 1999"
    assert hostile.language == "en"
    assert hostile.link == "https://news.example.com/a%1B[2J?q=%1B"
    assert hostile.feed_text.splitlines() == ["First [2Jline nul ›csi del", "second\tline"]
    # feedparser reads a raw C1 character as windows-1252, as HTML does: U+009B is "›".
    assert raw.title == "raw ›31m C1 and DEL"
    assert normalize_text(raw.feed_text) == "raw ›31m C1 and DEL and [2J ESC"
    for entry in feed.entries:
        for value in (entry.title, entry.author, entry.guid, entry.published_raw, entry.language, entry.link,
                      entry.canonical_link, entry.feed_text.replace("\n", "").replace("\t", "")):
            assert not set(value or "") & _UNPRINTABLE, value


def test_a_control_reference_in_a_summary_does_not_fail_the_feed():
    # lxml decoded &#27; into text it then refused to hold: the whole feed failed (parser_crash).
    items = ("<item><title>t</title><link>https://news.example.com/a</link>"
             "<description>&lt;p&gt;Before &amp;#27;[2J&amp;#0; after&lt;/p&gt;&lt;p&gt;Next \x1b[31m one&lt;/p&gt;"
             "</description></item>")
    raw = f'<?xml version="1.0"?><rss version="2.0"><channel><title>f</title>{items}</channel></rss>'.encode()
    entry, = parse_feed(raw, source="f", url="https://news.example.com/feed").entries
    assert normalize_text(entry.feed_text) == "Before [2J after\n\nNext [31m one"


FOREIGN_LINKS = ["file:///etc/passwd", "FILE:/etc/passwd", "file://localhost/etc/shadow", "data:text/html,<h1>x</h1>",
                 "javascript:alert(1)", "mailto:desk@example.com", "ftp://example.com/a"]


@pytest.mark.parametrize("feed_url", ["https://good.example/feeds/f.rss", "file:///srv/seeds/feeds/f.rss"])
def test_links_that_are_not_http_fail_their_entry_named_as_written(feed_url):
    """Only http(s) links are followed, from any feed; a local feed's relative
    links (the seeds') resolve to local files beside it."""
    links = FOREIGN_LINKS + ["https://good.example/1", "../pages/a.html"]
    items = "".join(f"<item><title>t{i}</title><link>{html.escape(link)}</link></item>" for i, link in enumerate(links))
    raw = f'<?xml version="1.0"?><rss version="2.0"><channel><title>f</title>{items}</channel></rss>'.encode()
    parsed = parse_feed(raw, source="f", url=feed_url)
    base = feed_url.rsplit("/feeds/", 1)[0]
    assert [e.link for e in parsed.entries] == ["https://good.example/1", f"{base}/pages/a.html"]
    assert [(e.url, e.reason) for e in parsed.failed] == [(link, "scheme_not_allowed") for link in FOREIGN_LINKS]
    for error, link in zip(parsed.failed, FOREIGN_LINKS):
        assert error.stage == "parse" and f"{link.split(':')[0].lower()}:" in error.message, error


def test_a_warning_holds_no_control_character_from_the_response():
    """A feed's warning is stored and logged: the server's Content-Type, which
    feedparser quotes in it, must not carry ESC to a terminal."""
    raw = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>a</title>' \
          b'<link>https://example.org/a</link></item></channel></rss>'
    parsed = parse_feed(raw, source="s", url="https://example.org/feed", headers={"Content-Type": "text/\x1b[32mweird"})
    assert parsed.warning and "weird" in parsed.warning
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", parsed.warning), parsed.warning
