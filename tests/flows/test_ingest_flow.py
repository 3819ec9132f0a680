"""The ingest flow end to end, under Prefect, against a real HTTP server on
127.0.0.1 serving the seed feeds and pages."""

import pytest

from tests.conftest import seed_document
from tests.flows.helpers import (
    assert_accounting,
    query,
    run_ingest,
    serve_seeds,
    write_sources,
)
from tests.httpserver import Reply

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow
def test_seeds_over_http_then_rerun_adds_nothing(server, tmp_path, make_db):
    sources = write_sources(tmp_path / "sources.toml", serve_seeds(server))
    db = make_db()

    first = run_ingest(sources, db)
    assert first["feeds_ok"] == 3 and first["feeds_failed"] == 0
    assert first["entries_seen"] == 16
    assert first["articles_new"] == 15
    assert first["duplicates"] == 1  # the shipping story, in two feeds under different tracking parameters
    assert first["articles_from_feed"] == 1  # the entry whose page is missing
    assert_accounting(first)
    assert query(db, "SELECT count(*) FROM articles") == [(15,)]
    assert query(db, "SELECT count(*) FROM article_sightings") == [(16,)]

    # The duplicate: one article, two sightings, one page request.
    shipping = query(db, "SELECT article_id FROM articles WHERE title LIKE 'Container shipping%'")
    assert len(shipping) == 1
    assert query(db, "SELECT source FROM article_sightings WHERE article_id = ? ORDER BY source", [shipping[0][0]]) == [
        ("business-brief",), ("world-desk",)]
    assert len(server.hits("/pages/shipping-rates-fall-for-third-month.html")) == 1

    # The missing page: loaded from the feed text, with the reason kept.
    assert query(db, "SELECT body_source, body_note FROM articles WHERE title LIKE 'Ceasefire%'") == [("feed", "http_404")]
    assert query(db, "SELECT stage, reason, outcome FROM failures") == [("fetch", "http_404", "feed_fallback")]

    # The feed without a date: the page's metadata dates it.
    assert query(db, "SELECT date_source, published_date::VARCHAR FROM articles WHERE title LIKE 'Central bank%'") == [
        ("page", "2023-09-08")]

    # The seed record.
    date, body = seed_document()
    rows = query(db, "SELECT published_date::VARCHAR, body, language FROM articles WHERE published_date = ?", [date])
    assert len(rows) == 1
    assert rows[0][1].split() == body.split() and rows[0][2] == "en"

    # Every request carried our User-Agent.
    assert {r.headers["user-agent"] for r in server.requests} == {"newsdesk-tests/1.0 (+https://example.invalid/newsdesk)"}

    page_requests = len(server.hits("/pages/"))
    second = run_ingest(sources, db)
    assert second["articles_new"] == 0 and second["duplicates"] == 0
    assert second["entries_known"] == second["entries_seen"] == 16
    assert len(server.hits("/pages/")) == page_requests  # no page fetched again
    assert query(db, "SELECT count(*) FROM articles") == [(15,)]
    assert query(db, "SELECT count(*) FROM article_sightings") == [(16,)]
    assert query(db, "SELECT status, articles_new FROM runs ORDER BY started_at") == [("completed", 15), ("completed", 0)]
    # Where the time went, per stage: the first run extracted 15 pages, the second none.
    (first_run, second_run) = query(db, "SELECT fetch_s, parse_s, extract_s, dedupe_s, load_s, "
                                        "epoch(finished_at - started_at) FROM runs ORDER BY started_at")
    assert all(0 < s < 60 for s in first_run)
    assert second_run[2] == 0 and second_run[4] == 0 and second_run[0] > 0


@pytest.mark.slow
def test_conditional_get_skips_unchanged_feed(server, tmp_path, make_db):
    feed = (b'<rss version="2.0"><channel><title>t</title><item><title>One</title>'
            b'<link>/pages/one.html</link><description>' + b"Feed text of the one story. " * 10 + b'</description></item></channel></rss>')

    def feed_route(req):
        if req.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"", {"ETag": '"v1"'})
        return Reply(200, feed, {"Content-Type": "application/rss+xml", "ETag": '"v1"'})

    server.route("/feed.xml", feed_route)
    server.route("/pages/one.html", "<html><body><article><p>" + "Body of the story. " * 40 + "</p></article></body></html>")
    sources = write_sources(tmp_path / "s.toml", [("one", server.url("/feed.xml"))])
    db = make_db()
    assert run_ingest(sources, db)["articles_new"] == 1
    second = run_ingest(sources, db)
    assert second["feeds_not_modified"] == 1 and second["entries_seen"] == 0
    assert server.hits("/feed.xml")[-1].headers["if-none-match"] == '"v1"'
    assert query(db, "SELECT etag, last_status FROM sources") == [('"v1"', 304)]


@pytest.mark.slow
def test_bad_inputs_are_recorded_and_the_run_goes_on(server, tmp_path, make_db):
    good_page = "<html><body><article><p>" + "A complete article body sentence. " * 40 + "</p></article></body></html>"
    calls = {"flaky": 0}
    down = {"busy": True}

    def flaky(req):
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            return Reply(500, b"oops", {"Content-Type": "text/plain"})
        return Reply(200, good_page.replace("complete", "recovered").encode(), {"Content-Type": "text/html"})

    def busy(word):
        def route(req):
            if down["busy"]:
                return Reply(503, b"busy", {"Content-Type": "text/plain"})
            return Reply(200, good_page.replace("complete", word).encode(), {"Content-Type": "text/html"})
        return route

    server.route("/flaky.html", flaky)
    server.route("/busy.html", busy("upgraded"))
    server.route("/busy2.html", busy("late"))
    server.route("/good.html", good_page)
    server.route("/doc.pdf", b"%PDF-1.7\n...", content_type="application/pdf")
    server.route("/broken.xml", b"<rss><channel><title>broken", content_type="application/rss+xml")
    server.route("/feed.xml", f"""<rss version="2.0"><channel><title>mixed</title>
      <item><title>Good</title><link>{server.url('/good.html')}</link></item>
      <item><title>Flaky</title><link>{server.url('/flaky.html')}</link></item>
      <item><title>Gone</title><link>{server.url('/gone.html')}</link></item>
      <item><title>A PDF</title><link>{server.url('/doc.pdf')}</link><description>The PDF's summary in the feed.</description></item>
      <item><title>Private</title><link>http://10.0.0.1/secret</link></item>
      <item><title>Busy</title><link>{server.url('/busy.html')}</link><description>Busy page, feed text.</description></item>
      <item><title>Busy two</title><link>{server.url('/busy2.html')}</link></item>
    </channel></rss>""", content_type="application/rss+xml")
    sources = write_sources(tmp_path / "s.toml", [("mixed", server.url("/feed.xml")), ("broken", server.url("/broken.xml")),
                                                  ("dead", server.url("/no-such-feed.xml"))], retries=1)
    with sources.open("a") as f:
        f.write("\n[retry]\npage_backoff_s = 0\n")
    db = make_db()
    summary = run_ingest(sources, db)
    assert_accounting(summary)
    assert summary["feeds_failed"] == 2 and summary["feeds_ok"] == 1
    # good, flaky (retried within the run), the PDF and Busy from their feed text
    assert summary["articles_new"] == 4 and summary["articles_from_feed"] == 2
    assert summary["entries_failed"] == 2  # gone (404, no feed text) and the private address: for good
    assert summary["entries_pending"] == 1  # Busy two: no text anywhere yet, retried next run
    reasons = dict(query(db, "SELECT url, reason FROM failures"))
    assert reasons[server.url("/no-such-feed.xml")] == "http_404"
    assert reasons[server.url("/broken.xml")] == "malformed_feed"
    assert reasons[server.url("/gone.html")] == "http_404"
    assert reasons[server.url("/doc.pdf")] == "not_html"
    assert reasons["http://10.0.0.1/secret"] == "blocked_address"
    assert reasons[server.url("/busy.html")] == "http_503"
    assert query(db, "SELECT body_source FROM articles WHERE title = 'Flaky'") == [("page",)]
    assert query(db, "SELECT consecutive_failures, next_attempt_at > now() FROM sources WHERE name = 'dead'") == [(1, True)]
    assert sorted(query(db, "SELECT last_reason, status FROM page_attempts")) == [
        ("blocked_address", "failed"), ("http_404", "failed"), ("http_503", "pending"), ("http_503", "pending")]
    busy_id = query(db, "SELECT article_id FROM articles WHERE title = 'Busy'")[0][0]
    assert query(db, "SELECT balanced FROM run_accounting") == [(True,)]

    # The server recovers: the rerun retries the transient pages only, upgrades
    # Busy in place, loads Busy two, and leaves the permanent failures alone.
    down["busy"] = False
    before = {p: len(server.hits(p)) for p in ("/good.html", "/flaky.html", "/doc.pdf", "/gone.html")}
    again = run_ingest(sources, db)
    assert_accounting(again)
    assert again["feeds_skipped"] == 2  # broken and dead are backing off
    assert again["retries"] == 2 and again["retries_loaded"] == 2
    assert again["articles_new"] == 0 and again["entries_seen"] == 7 and again["entries_known"] == 7
    assert {p: len(server.hits(p)) for p in before} == before
    assert query(db, "SELECT article_id, body_source, body LIKE '%upgraded%' FROM articles WHERE title = 'Busy'") == [
        (busy_id, "page", True)]
    assert query(db, "SELECT body_source FROM articles WHERE title = 'Busy two'") == [("page",)]
    assert query(db, "SELECT count(*) FROM articles") == [(5,)]
    assert query(db, "SELECT count(*) FROM page_attempts WHERE status = 'pending'") == [(0,)]
    assert query(db, "SELECT bool_and(balanced) FROM run_accounting") == [(True,)]
