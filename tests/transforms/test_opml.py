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
