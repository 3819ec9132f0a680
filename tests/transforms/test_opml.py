"""OPML in and out (transforms/opml.py): folders and categories become
tags, what cannot be imported is reported, and an export reads back."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.conftest import DATA
from transforms.errors import ParseError
from transforms.opml import Outline, feed_name, plan_import, read_opml, write_opml
from transforms.records import RegistryFeed

EXPORT = (DATA / "opml" / "reader-export.opml").read_bytes()


def test_folders_and_categories_become_tags_and_non_feeds_are_reported():
    doc = read_opml(EXPORT)
    assert doc.title == "Subscriptions" and doc.folders == 3
    got = [(o.url, o.title, o.tags) for o in doc.outlines]
    assert got == [
        ("https://one.example/feed.xml", "Desk One", ("World",)),
        ("https://two.example/rss", "Desk Two", ("World", "Europe", "Politics", "Daily")),  # xmlurl, any case
        ("https://riverton.example/atom", "Riverton", ("World", "Regional")),
        ("https://one.example/feed.xml", "Desk One again", ("Tech",)),
        ("http://lone.example/index.rss", "Lone", ()),
    ]
    assert doc.outlines[0].html_url == "https://one.example/" and doc.outlines[2].language == "en"
    assert [(p.line, p.message) for p in doc.problems] == [
        (16, "outline 'A bookmark, not a feed' has no xmlUrl: not a feed, skipped")]


def test_a_plan_skips_duplicates_and_registered_urls_and_makes_names_unique():
    doc = read_opml(EXPORT)
    plan = plan_import(doc.outlines, known_urls={"http://lone.example/index.rss": "lone"},
                       known_names={"desk-one", "desk-two"}, extra_tags=("imported",))
    assert [(f.name, f.url, f.tags) for f in plan.new] == [
        ("desk-one-2", "https://one.example/feed.xml", ("World", "imported")),
        ("desk-two-2", "https://two.example/rss", ("World", "Europe", "Politics", "Daily", "imported")),
        ("riverton", "https://riverton.example/atom", ("World", "Regional", "imported")),
    ]
    assert [(o.url, name) for o, name in plan.known] == [("http://lone.example/index.rss", "lone")]
    assert [p.message for p in plan.problems] == [
        "https://one.example/feed.xml is listed again (first at line 8, as 'desk-one-2'): skipped"]


@pytest.mark.parametrize("url, problem", [
    ("file:///etc/passwd", "only http and https feeds are imported"),
    ("javascript:alert(1)", "only http and https feeds are imported"),
    ("https:///feed", "has no host"),
])
def test_urls_that_are_not_web_feeds_are_refused(url, problem):
    plan = plan_import([Outline(3, url, "x", None, None, ())], known_urls={}, known_names=())
    assert not plan.new and problem in plan.problems[0].message and plan.problems[0].line == 3


def test_names_come_from_titles_or_the_url_and_fit_the_sources_file_pattern():
    assert feed_name("Le Monde — À la une", "https://x") == "le-monde-à-la-une"
    assert feed_name(None, "https://www.example.com/news/rss.xml") == "www.example.com-news-rss.xml"
    assert feed_name("!!!", "https://x") == "feed"
    assert len(feed_name("word " * 40, "https://x")) <= 60


@pytest.mark.parametrize("data, reason", [
    (b"<opml><body><outline", "malformed_xml"),
    (b"<rss version='2.0'><channel/></rss>", "not_opml"),
    (b"<opml version='2.0'><head/></opml>", "not_opml"),
    # An external entity is never read (it would put a local file into a feed title).
    (b'<!DOCTYPE o [<!ENTITY e SYSTEM "file:///etc/hostname">]><opml><body>'
     b'<outline text="&e;" xmlUrl="https://x.example/f"/></body></opml>', "malformed_xml"),
])
def test_what_is_not_opml_is_a_parse_error(data, reason):
    with pytest.raises(ParseError) as caught:
        read_opml(data, url="list.opml")
    assert caught.value.reason == reason and caught.value.url == "list.opml"


def test_an_export_reads_back_as_the_same_feeds_and_tags():
    feeds = [
        RegistryFeed("a", "https://a.example/feed", title="A & Co", html_url="https://a.example/", language="de",
                     tags=("World", "Europe", "Daily")),
        RegistryFeed("b", "https://b.example/rss", tags=("World",)),
        RegistryFeed("c", "https://c.example/atom"),
    ]
    data = write_opml(feeds, title="t", now=datetime(2026, 12, 4, tzinfo=timezone.utc))
    doc = read_opml(data)
    assert not doc.problems and doc.folders == 1
    back = plan_import(doc.outlines, known_urls={}, known_names=()).new
    assert sorted((f.url, f.title, f.html_url, f.language, f.tags) for f in back) == [
        ("https://a.example/feed", "A & Co", "https://a.example/", "de", ("World", "Europe", "Daily")),
        ("https://b.example/rss", "b", None, None, ("World",)),
        ("https://c.example/atom", "c", None, None, ()),
    ]


def test_one_feed_under_url_variants_is_one_feed():
    from transforms.opml import feed_key

    same = ["http://bbc.example/rss/", "https://BBC.example/rss#top", "https://bbc.example:443/rss",
            "https://bbc.example./rss"]
    assert len({feed_key(u) for u in same}) == 1
    assert feed_key("https://bücher.example/f") == feed_key("https://xn--bcher-kva.example/f/")
    assert feed_key("https://x.example/feed?cat=1") != feed_key("https://x.example/feed?cat=2")
    outlines = [Outline(i, u, f"t{i}", None, None, ()) for i, u in enumerate(same)]
    plan = plan_import(outlines, known_urls={}, known_names=())
    assert [f.url for f in plan.new] == ["http://bbc.example/rss/"] and len(plan.problems) == 3
    known = plan_import([Outline(9, "https://bbc.example/rss#x", "t", None, None, ("World",))],
                        known_urls={"http://bbc.example/rss/": "bbc"}, known_names={"bbc"}, extra_tags=("", " night "))
    assert known.known[0][1] == "bbc" and known.tags_of_known == (("bbc", ("World", "night")),)


def test_an_import_adds_tags_to_known_feeds_after_their_own():
    from transforms.opml import merged_tags

    assert merged_tags({"a": ("World",), "b": ("x",)}, [("a", ("Europe", "World")), ("b", ("x",)), ("c", ("y",))]) \
        == {"a": ("World", "Europe")}


def test_credentials_and_overlong_urls_are_refused():
    plan = plan_import([Outline(1, "https://user:secret@x.example/rss", "t", None, None, ()),
                        Outline(2, "https://x.example/" + "a" * 3000, "t", None, None, ())],
                       known_urls={}, known_names=())
    assert not plan.new
    assert "user name or password" in plan.problems[0].message and "secret" not in plan.problems[0].message
    assert "longer than 2048" in plan.problems[1].message


def test_gzip_namespaces_upper_case_and_a_blank_line_before_the_declaration():
    import gzip

    doc = read_opml(gzip.compress(b'\n  <?xml version="1.0"?><OPML xmlns="http://opml.org/spec2"><HEAD><TITLE>T'
                                  b'</TITLE></HEAD><BODY><OUTLINE text="a" xmlUrl="https://a.example/f"/></BODY></OPML>'))
    assert doc.title == "T" and [o.url for o in doc.outlines] == ["https://a.example/f"]
    with pytest.raises(ParseError) as caught:
        read_opml(b"<opml><body>" + b"<outline>" * 3000 + b"</outline>" * 3000 + b"</body></opml>")
    assert "too deeply nested" in caught.value.message and "\n" not in caught.value.message
