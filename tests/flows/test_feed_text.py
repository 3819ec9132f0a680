"""Feed text end to end: a feed mixing entities, html and text titles,
localized and 12-hour dates, an unreadable date, items without a link, and a
KOI8-R feed with no declaration, ingested from a real HTTP server on
127.0.0.1; the rows of articles, failures, feed_polls and sources checked."""

from datetime import datetime, timezone

import pytest

from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from transforms.records import RunCounts
from transforms.reports import run_report
from warehouse.connection import connect
from warehouse.run_rows import select_run_feeds

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

UTC = timezone.utc
WORDS = ("The story goes on for a while, with enough plain words in each paragraph for the extractor "
         "to take it as the body of an article and not as a template or a teaser. ")


def _page(title: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            + "".join(f"<p>{title}, part {i}. {WORDS * 3}</p>" for i in range(4)) + "</article></body></html>")


def _mixed_feed(base: str) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Mixed &amp; matched</title><link>{base}/</link>
<item><title><![CDATA[Tom &amp; Jerry studio deal]]></title><link>{base}/pages/tom.html</link>
  <description><![CDATA[Tom &amp; Jerry&#8217;s studio signed a deal on Monday&nbsp;morning.]]></description>
  <pubDate>mer, 16 nov 2022 00:38:15 +0100</pubDate></item>
<item><title>Bonds &amp;amp; stocks &lt;i&gt;rally&lt;/i&gt;</title><link>{base}/pages/bonds.html</link>
  <pubDate>Mi, 16 Nov 2022 09:00:00 +0100</pubDate></item>
<item><title>History of the &lt;blink&gt; tag</title><link>{base}/pages/blink.html</link>
  <pubDate>Sat, Dec 16 2023 02:02:33 PM</pubDate></item>
<item><title>A date nobody reads</title><link>{base}/pages/undated.html</link>
  <pubDate>sometime soon</pubDate></item>
<item><title>Council votes on the new library</title>
  <guid isPermaLink="false">tag:mixed.example,2024:council-library</guid>
  <pubDate>mié, 16 nov 2022 10:00:00 +0100</pubDate>
  <description><![CDATA[<p>The council voted 7&ndash;2 for the new library &amp; archive.</p><p>{WORDS}</p>]]></description></item>
<item><title>A title and nothing else</title><guid isPermaLink="false">just-a-title</guid></item>
</channel></rss>"""


RUSSIAN_TITLE = "Как пережить зиму в Москве"
RUSSIAN_BODY = ("Городские власти объявили, что в этом году зима будет холоднее обычного. Жителям советуют "
                "запастись тёплой одеждой, проверить отопление в своих квартирах и не выходить на улицу без шапки.")


def _koi8_feed(base: str) -> bytes:
    # No XML declaration, no charset in the Content-Type: only the bytes say KOI8-R.
    return (f'<rss version="2.0"><channel><title>Новости</title><language>ru</language>'
            f'<item><title>{RUSSIAN_TITLE}</title><guid isPermaLink="false">tag:ru.example,2024:zima</guid>'
            f'<description>{RUSSIAN_BODY}</description><pubDate>Пн, 14 ноя 2022 10:00:00 +0300</pubDate></item>'
            f'</channel></rss>').encode("koi8-r")


def test_feed_text_encodings_dates_and_linkless_items(server, tmp_path):
    for name, title in (("tom", "Tom and Jerry"), ("bonds", "Bonds"), ("blink", "Blink"), ("undated", "Undated")):
        server.route(f"/pages/{name}.html", _page(title))
    mixed = server.route("/feeds/mixed.rss", _mixed_feed(server.base), content_type="application/rss+xml")
    koi8 = server.route("/feeds/ru.rss", _koi8_feed(server.base), content_type="application/rss+xml")
    sources = write_sources(tmp_path / "sources.toml", [("mixed", mixed), ("ru", koi8)])
    db = tmp_path / "wh.duckdb"

    first = run_ingest(sources, db)
    assert_accounting(first)
    assert first["entries_seen"] == 7 and first["articles_new"] == 6 and first["entries_failed"] == 1

    rows = {r[0]: r[1:] for r in query(db, """
        SELECT title, url, body_source, published_at, date_source, date_note, published_raw
        FROM articles ORDER BY title""")}
    assert sorted(rows) == sorted(["Tom & Jerry studio deal", "Bonds & stocks rally", "History of the <blink> tag",
                                   "A date nobody reads", "Council votes on the new library", RUSSIAN_TITLE])
    # Localized dates, with their offsets; a 12-hour clock keeps its PM.
    assert rows["Tom & Jerry studio deal"][2:5] == (datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC), "feed", None)
    assert rows["Bonds & stocks rally"][2] == datetime(2022, 11, 16, 8, 0, tzinfo=UTC)
    assert rows["History of the <blink> tag"][2] == datetime(2023, 12, 16, 14, 2, 33, tzinfo=UTC)
    assert rows["Council votes on the new library"][2] == datetime(2022, 11, 16, 9, 0, tzinfo=UTC)
    assert rows[RUSSIAN_TITLE][2] == datetime(2022, 11, 14, 7, 0, tzinfo=UTC)
    # A date nothing reads: kept raw, said so, dated when first seen.
    assert rows["A date nobody reads"][3:] == ("first_seen", "feed date 'sometime soon' could not be read",
                                               "sometime soon")

    # Items without a link: articles from the feed text, keyed on their GUID, never fetched.
    council = query(db, "SELECT url, body, body_source, body_note, extractor FROM articles "
                        "WHERE title = 'Council votes on the new library'")[0]
    assert council[0] == "tag:mixed.example,2024:council-library"
    assert council[1].startswith("The council voted 7–2 for the new library & archive.\n\n")
    assert council[2:] == ("feed", None, "feed")
    russian = query(db, "SELECT url, body, language, body_source FROM articles WHERE title = ?", [RUSSIAN_TITLE])[0]
    assert russian == ("tag:ru.example,2024:zima", RUSSIAN_BODY, "ru", "feed")
    assert query(db, "SELECT source, canonical_link, url FROM article_sightings WHERE guid LIKE 'tag:%' ORDER BY 1") == [
        ("mixed", "tag:mixed.example,2024:council-library", "tag:mixed.example,2024:council-library"),
        ("ru", "tag:ru.example,2024:zima", "tag:ru.example,2024:zima")]
    assert sorted(r.path for r in server.hits("/pages/")) == [
        "/pages/blink.html", "/pages/bonds.html", "/pages/tom.html", "/pages/undated.html"]

    # The item with neither link nor text: a failure with no URL (not its title).
    assert query(db, "SELECT stage, reason, url, source, outcome, error FROM failures") == [
        ("parse", "no_link", None, "mixed", "not_loaded",
         "entry has no link and no text (guid 'just-a-title', title 'A title and nothing else')")]

    # The KOI8-R feed: read right, and the guess is on the poll and the feed.
    warning = "encoding: no encoding declared and the bytes are not UTF-8: detected koi8-r"
    assert query(db, "SELECT source, ok, warning FROM feed_polls ORDER BY source") == [
        ("mixed", True, None), ("ru", True, warning)]
    assert query(db, "SELECT name, title, last_error, last_warning FROM sources ORDER BY name") == [
        ("mixed", "Mixed & matched", None, None), ("ru", "Новости", None, warning)]
    # ... and in the run's report (the Prefect artifact).
    with connect(db, read_only=True) as con:
        report = run_report(first["run_id"], first["db"], RunCounts.of_summary(first), select_run_feeds(con, first["run_id"]))
    assert f"- ru: {warning}" in report and "- mixed:" not in report

    # A rerun doubles nothing, link-less items included.
    second = run_ingest(sources, db)
    assert_accounting(second)
    assert second["articles_new"] == 0 and second["entries_known"] == 6 and second["entries_failed"] == 1
    assert query(db, "SELECT count(*), count(DISTINCT article_id) FROM articles") == [(6, 6)]
    assert query(db, "SELECT count(*) FROM article_sightings") == [(6,)]
