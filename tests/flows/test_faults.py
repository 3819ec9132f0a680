"""Fault injection: a misbehaving web on 127.0.0.1, through the real flow.

Each scripted fault must end as a recorded failure with the right reason (or
a loaded row), the run must complete, and nothing may be loaded twice."""

import asyncio
import gzip
import json
import time

import pytest

from flows.fetch import Fetcher
from flows.settings import load_settings
from tests.conftest import FEEDS_CORPUS
from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from tests.httpserver import Reply
from transforms.errors import ParseError
from transforms.feeds import parse_feed
from transforms.records import ParsedFeed

ARTICLE = "<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>" + "{word} is in this sentence of the story. " * 40 + "</p></article></body></html>"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>laughs &lol9;</title>
<item><title>Laugh &lol9;</title><link>LINK</link><description>&lol9;</description></item></channel></rss>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd"><!ENTITY net SYSTEM "http://10.0.0.1/steal">]>
<rss version="2.0"><channel><title>xxe</title>
<item><title>XXE &xxe;</title><link>LINK</link><description>before &xxe; &net; after</description></item></channel></rss>"""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_fault_server_run_accounts_for_everything(server, tmp_path, capsys):
    down = {"on": True}

    def page(title, word="Alpha"):
        return ARTICLE.format(title=title, word=word).encode()

    def then_ok(title):
        calls = []

        def route(req):
            calls.append(req)
            if down["on"]:
                return Reply(500, b"error", {"Content-Type": "text/plain"})
            return Reply(200, page(title, "Recovered"), {"Content-Type": "text/html"})
        return route

    def retry_after(req):
        return Reply(429, b"", {"Retry-After": "0"}) if down["on"] else Reply(200, page("Rate", "Limited"), {"Content-Type": "text/html"})

    def stall(req):
        if down["on"]:
            time.sleep(1.5)
        return Reply(200, page("Stall", "Stalled"), {"Content-Type": "text/html"})

    def drip(req):
        # Headers at once, then the body a byte at a time: the total timeout cuts it.
        headers = {"Content-Type": "text/html", **({"X-Drip": "1"} if down["on"] else {})}
        return Reply(200, page("Drip", "Dripped"), headers)

    def reset(req):
        if down["on"]:
            raise ConnectionResetError("scripted reset")
        return Reply(200, page("Reset", "Reconnected"), {"Content-Type": "text/html"})

    server.route("/p/ok.html", page("Fine"))
    server.route("/p/500-then-200.html", then_ok("Flaky"))
    server.route("/p/429.html", retry_after)
    server.route("/p/stall.html", stall)
    server.route("/p/reset.html", reset)
    server.route("/p/drip.html", drip)
    server.route("/p/loop-a.html", b"", status=302, headers={"Location": "/p/loop-b.html"})
    server.route("/p/loop-b.html", b"", status=302, headers={"Location": "/p/loop-a.html"})
    server.route("/p/to-private.html", b"", status=302, headers={"Location": "http://10.0.0.1/admin"})
    server.route("/p/to-metadata.html", b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    server.route("/p/huge.html", b"<html><body>" + b"x" * (50 * 1024 * 1024) + b"</body></html>")
    server.route("/p/bomb.html", gzip.compress(b"<html>" + b" " * (200 * 1024 * 1024)), headers={"Content-Encoding": "gzip"})
    server.route("/p/doc.pdf", b"%PDF-1.7\n" + b"0" * 2000, content_type="application/pdf")
    cp1252 = ("<html><head><meta http-equiv='Content-Type' content='text/html; charset=windows-1252'><title>Caf\u00e9</title></head>"
              "<body><article><p>" + "The caf\u00e9\u2019s \u201cna\u00efve\u201d owner served cr\u00e8me br\u00fbl\u00e9e. " * 30
              + "</p></article></body></html>").encode("cp1252")
    server.route("/p/cp1252.html", cp1252, content_type="text/html")
    server.route("/p/challenge.html", "<html><head><title>Just a moment...</title></head><body><p>Checking if the site "
                 "connection is secure. Enable JavaScript and cookies to continue.</p></body></html>")

    items = {
        "ok": "Fine", "500-then-200": "Flaky", "429": "Rate", "stall": "Stall", "reset": "Reset",
        "loop-a": "Loop", "to-private": "Private", "to-metadata": "Metadata", "huge": "Huge", "bomb": "Bomb",
        "cp1252": "Cafe", "challenge": "Challenge", "drip": "Drip",
    }
    rss = "".join(f"<item><title>{t}</title><link>{server.url(f'/p/{k}.html')}</link></item>" for k, t in items.items())
    rss += f"<item><title>PDF</title><link>{server.url('/p/doc.pdf')}</link><description>Summary of the PDF report.</description></item>"
    rss += (f"<item><title>Walled</title><link>{server.url('/p/challenge.html')}?x=1</link>"
            "<description>" + "The feed's own text of the walled story. " * 5 + "</description></item>")
    server.route("/feeds/main.xml", f'<rss version="2.0"><channel><title>main</title>{rss}</channel></rss>', content_type="application/rss+xml")
    utf16 = ('<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><title>UTF-16 feed</title>'
             f'<item><title>Zo\u00eb\u2019s \u00e9t\u00e9</title><link>{server.url("/p/ok.html")}?utm_source=u16</link></item>'
             '</channel></rss>').encode("utf-16")
    server.route("/feeds/utf16.xml", utf16, content_type="application/rss+xml")
    server.route("/feeds/recoverable.xml", f'<rss version="2.0"><channel><title>bad & broken</title><item><title>Recovered entry'
                 f'</title><link>{server.url("/p/cp1252.html")}</link></item><item><title>cut off', content_type="application/rss+xml")
    server.route("/feeds/laughs.xml", BILLION_LAUGHS.replace(b"LINK", server.url("/p/ok.html").encode()), content_type="application/rss+xml")
    server.route("/feeds/xxe.xml", XXE.replace(b"LINK", server.url("/p/ok.html?from=xxe").encode()), content_type="application/rss+xml")

    feeds = [(name, server.url(f"/feeds/{name}.xml")) for name in ("main", "utf16", "recoverable", "laughs", "xxe")]
    sources = write_sources(tmp_path / "s.toml", feeds, retries=1, timeout_s=0.5, total_timeout_s=3, per_host_concurrency=4)
    with sources.open("a") as f:
        f.write("\n[retry]\npage_backoff_s = 0\n")
    db = tmp_path / "wh.duckdb"

    first = run_ingest(sources, db)
    assert_accounting(first)
    assert first["feeds_failed"] == 0
    reasons = dict(query(db, "SELECT regexp_replace(url, '^.*/', ''), reason FROM failures"))
    assert reasons["500-then-200.html"] == "http_500"
    assert reasons["429.html"] == "http_429"
    assert reasons["stall.html"] == "timeout"
    assert reasons["reset.html"] == "connection_error"
    assert reasons["drip.html"] == "timeout"  # a slow drip is cut by total_timeout_s
    assert reasons["loop-a.html"] == "redirect_loop"
    assert reasons["to-private.html"] == "blocked_address"
    assert reasons["to-metadata.html"] == "blocked_address"
    assert reasons["huge.html"] == "too_large"
    assert reasons["bomb.html"] == "too_large"
    assert reasons["doc.pdf"] == "not_html"
    assert reasons["challenge.html"] == "bot_wall"
    assert reasons["challenge.html?x=1"] == "bot_wall"
    # Nothing was sent to the private addresses: the guard refused before connecting.
    assert all(r.path.startswith(("/p/", "/feeds/", "/robots.txt")) for r in server.requests)

    # Charsets: windows-1252 declared only in a meta tag; a UTF-16 feed with a BOM.
    cafe = query(db, "SELECT body FROM articles WHERE title = 'Cafe'")[0][0]
    assert "caf\u00e9\u2019s \u201cna\u00efve\u201d owner served cr\u00e8me br\u00fbl\u00e9e" in cafe
    assert query(db, "SELECT title FROM article_sightings JOIN articles USING (article_id) WHERE article_sightings.source = 'utf16'") == [("Fine",)]
    # The recoverable feed gave its good entry; laughs and XXE were neither expanded nor resolved.
    assert query(db, "SELECT count(*) FROM article_sightings WHERE source = 'recoverable'") == [(1,)]
    titles = [t for (t,) in query(db, "SELECT title FROM articles")]
    assert not any("lollol" in (t or "") or "root:" in (t or "") for t in titles)
    assert not any("root:" in b for (b,) in query(db, "SELECT body FROM articles"))
    # The entities stay unexpanded text; the XXE entry's page is the same as "Fine": one article.
    assert query(db, "SELECT count(*) FROM articles WHERE title LIKE 'XXE%'") == [(0,)]
    assert query(db, "SELECT a.title FROM article_sightings s JOIN articles a USING (article_id) WHERE s.source = 'xxe'") == [("Fine",)]
    # The walled story fell back to its feed text, with the reason.
    assert query(db, "SELECT body_source, body_note FROM articles WHERE title = 'Walled'") == [("feed", "bot_wall")]

    pending = dict(query(db, "SELECT regexp_replace(link, '^.*/', ''), status FROM page_attempts"))
    for name in ("500-then-200.html", "429.html", "stall.html", "reset.html", "drip.html"):
        assert pending[name] == "pending"
    for name in ("loop-a.html", "to-private.html", "huge.html", "bomb.html"):
        assert pending[name] == "failed"

    # The server recovers: the transient pages load, once, and nothing else is refetched.
    down["on"] = False
    articles_before = query(db, "SELECT count(*) FROM articles")[0][0]
    second = run_ingest(sources, db)
    assert_accounting(second)
    assert second["retries"] == 5 and second["retries_loaded"] == 5
    assert query(db, "SELECT count(*) FROM articles")[0][0] == articles_before + 5
    assert query(db, "SELECT count(*) FROM articles GROUP BY content_hash HAVING count(*) > 1") == []
    assert query(db, "SELECT count(*) FROM article_sightings GROUP BY source, canonical_link HAVING count(*) > 1") == []
    assert query(db, "SELECT bool_and(balanced) FROM run_accounting") == [(True,)]
    third = run_ingest(sources, db)
    assert third["retries"] == 0 and third["articles_new"] == 0 and third["pages_fetched"] == 0

    by_reason = query(db, "SELECT status, last_reason, count(*) FROM page_attempts GROUP BY ALL ORDER BY ALL")
    with capsys.disabled():
        print(f"\nfault run 1: {json.dumps({k: first[k] for k in ('entries_seen', 'articles_new', 'articles_from_feed', 'duplicates', 'entries_pending', 'entries_failed')})}"
              f"\n  failures by reason: {first['failure_reasons']}"
              f"\nfault run 2 (server recovered): retries {second['retries']}, loaded {second['retries_loaded']}"
              f"\n  page_attempts left: {by_reason}")


FOREIGN_LINKS = ["file:///etc/passwd", "FILE:/etc/passwd", "data:text/html,&lt;h1&gt;owned&lt;/h1&gt;",
                 "javascript:alert(document.cookie)"]
FOREIGN_REDIRECTS = {"to-data.html": "data:text/html,<h1>owned</h1>", "to-file.html": "file:///etc/passwd",
                     "to-js.html": "javascript:alert(1)"}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_links_and_redirects_to_other_schemes_are_refused_failures(server, tmp_path):
    """Links and redirects to data:, file:, javascript: end as failure rows
    naming them as written, from a remote feed and from a local one, and
    nothing is read from them; the local feed's relative link is still read."""
    def item(link, title):
        return f"<item><title>{title}</title><link>{link}</link><guid>{title}</guid></item>"

    def rss(items):
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{"".join(items)}</channel></rss>'

    server.route("/p/ok.html", ARTICLE.format(title="Remote fine", word="Remote"))
    for name, location in FOREIGN_REDIRECTS.items():
        server.route(f"/p/{name}", b"", status=302, headers={"Location": location})
    items = [item(server.url("/p/ok.html"), "Remote fine")] + [item(server.url(f"/p/{n}"), n) for n in FOREIGN_REDIRECTS]
    items += [item(link, f"remote {n}") for n, link in enumerate(FOREIGN_LINKS)]
    remote = server.route("/feeds/remote.xml", rss(items), content_type="application/rss+xml")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "local.html").write_text(ARTICLE.format(title="Local fine", word="Local"))
    (tmp_path / "feeds").mkdir()
    local = tmp_path / "feeds" / "local.rss"
    local.write_text(rss([item("../pages/local.html", "Local fine"), item("file:///etc/passwd", "local passwd")]))
    db = tmp_path / "w.duckdb"

    summary = run_ingest(write_sources(tmp_path / "s.toml", [("remote", remote), ("local", local.as_uri())]), db)

    assert_accounting(summary)
    assert summary["feeds_failed"] == 0
    assert sorted(t for (t,) in query(db, "SELECT title FROM articles")) == ["Local fine", "Remote fine"]
    failures = query(db, "SELECT source, url, stage, reason, error FROM failures ORDER BY source, url")
    expected = [("local", "file:///etc/passwd", "parse", "scheme_not_allowed")]
    expected += [("remote", link.replace("&lt;", "<").replace("&gt;", ">"), "parse", "scheme_not_allowed")
                 for link in FOREIGN_LINKS]
    expected += [("remote", server.url(f"/p/{n}"), "fetch", "redirect_not_allowed") for n in FOREIGN_REDIRECTS]
    assert sorted(f[:4] for f in failures) == sorted(expected)
    for source, url, stage, _, error in failures:
        if stage == "fetch":  # the message names the scheme and the Location
            location = FOREIGN_REDIRECTS[url.rsplit("/", 1)[1]]
            assert f"{location.split(':')[0]}:" in error and location in error, error
    assert not any("root:" in b or "owned" in b for (b,) in query(db, "SELECT body FROM articles"))
    # Each redirect was asked for once (a permanent failure: not retried) and led nowhere else.
    assert sorted(r.path for r in server.requests if r.path.startswith("/p/to-")) == sorted(f"/p/{n}" for n in FOREIGN_REDIRECTS)
    assert all(r.path.startswith(("/p/", "/feeds/", "/robots.txt")) for r in server.requests)


MANIFEST = json.loads((FEEDS_CORPUS / "manifest.json").read_text())
WITH_HEADERS = [d for d in MANIFEST if d.get("http_headers")]


def test_corpus_feeds_with_headers_through_the_feed_stage(server, tmp_path):
    """The corpus documents whose meaning depends on HTTP headers, served with
    those headers, through the real fetch and parse stages only: their links
    point at real sites, so no page is fetched. The headers must arrive
    intact, parse as the file does with them, and be ill-formed exactly when
    the manifest says feedparser finds them so (a text/plain feed is)."""

    sent = {}
    for doc in WITH_HEADERS:
        headers = {}
        for line in doc["http_headers"]:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        # The manifest writes "Content-type": a default under another spelling
        # would be a second header that overrides it.
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/xml"
        sent[doc["path"]] = headers
        server.routes["/" + doc["path"]] = Reply(200, (FEEDS_CORPUS / doc["path"]).read_bytes(), headers)
    settings = load_settings(write_sources(tmp_path / "s.toml", [("x", server.url("/x"))]))

    async def fetch_all():
        async with Fetcher(settings.fetch) as f:
            return [await f.get(server.url("/" + d["path"])) for d in WITH_HEADERS]

    def outcome(body, url, headers):
        try:
            return parse_feed(body, source="x", url=url, headers=headers)
        except ParseError as exc:
            return exc.reason

    responses = asyncio.run(fetch_all())
    assert len(responses) == len(WITH_HEADERS) >= 10
    judged = 0
    for doc, resp in zip(WITH_HEADERS, responses):
        path, headers = doc["path"], sent[doc["path"]]
        assert resp.status == 200, path
        for name, value in headers.items():
            assert resp.headers.get(name.lower()) == value, (path, name)
        over_http = outcome(resp.body, resp.final_url, resp.headers)
        assert over_http == outcome((FEEDS_CORPUS / path).read_bytes(), resp.final_url, headers), path
        if doc["bozo_expected"] is not None:
            ill_formed = over_http == "malformed_feed" if isinstance(over_http, str) else over_http.warning is not None
            assert ill_formed == doc["bozo_expected"], path
            judged += 1
    assert judged >= 10
    # Headers the parse depends on: a text/plain Content-Type makes the feed
    # ill-formed, Content-Language gives entries their language.
    by_path = {d["path"]: r for d, r in zip(WITH_HEADERS, responses)}
    plain = by_path["feedparser/encoding/bozo_http_text_plain_charset.xml"]
    assert outcome(plain.body, plain.final_url, plain.headers) != outcome(plain.body, plain.final_url, {})
    assert isinstance(outcome(plain.body, plain.final_url, {}), ParsedFeed)
    english = by_path["feedparser/wellformed/lang/http_content_language_entry_title_inherit_2.xml"]
    assert [e.language for e in outcome(english.body, english.final_url, english.headers).entries] == ["en"]
    assert [e.language for e in outcome(english.body, english.final_url, {}).entries] == [None]
