"""Nothing lost when a run dies or meets poison: real processes, a real
DuckDB file and a real HTTP server on 127.0.0.1.

Poison entries fail alone, generic feed teasers stay apart, a killed run
leaves no process behind and is marked abandoned by the next, the exit code
says what a run did, an export that fails loses nothing, and a WARC with a
bad record loads what it can."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from tests.httpserver import Reply

NEWSDESK = Path(sys.executable).with_name("newsdesk")
ARTICLE = ("<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>"
           + "{word} is what this sentence of the story is about. " * 40 + "</p></article></body></html>")


def page(title: str, word: str) -> bytes:
    return ARTICLE.format(title=title, word=word).encode()


def rss(items: list[str], title: str = "Test feed") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            + "".join(items) + "</channel></rss>").encode()


def item(link: str, title: str, text: str = "", guid: str | None = None, date: str = "Mon, 02 Mar 2026 10:00:00 GMT") -> str:
    guid_tag = f"<guid isPermaLink=\"false\">{guid}</guid>" if guid else ""
    return (f"<item><title>{title}</title><link>{link}</link>{guid_tag}<pubDate>{date}</pubDate>"
            f"<description>{text}</description></item>")


def cli_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def with_pipeline(sources: Path, **pipeline) -> Path:
    lines = ["", "[pipeline]"] + [f"{k} = {v}" for k, v in pipeline.items()]
    text = sources.read_text()
    # [pipeline] must come before the [[feeds]] array of tables.
    head, sep, feeds = text.partition("\n[[feeds]]")
    sources.write_text(head + "\n".join(lines) + "\n" + sep + feeds)
    return sources


# -- orphans -------------------------------------------------------------------


def _session(sid: int) -> dict[int, str]:
    """pid -> command line of every process in this session."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_process_of_a_killed_run_is_alive_15_s_later_and_the_next_run_marks_it_abandoned(server, tmp_path):
    delay = {"s": 0.3}

    def slow(req):
        time.sleep(delay["s"])
        n = req.path.rsplit("/", 1)[-1].split(".")[0]
        return Reply(200, page(f"Slow {n}", f"Slowness{n}"), {"Content-Type": "text/html"})

    items = []
    for i in range(80):
        server.route(f"/slow/{i}.html", slow)
        items.append(item(server.url(f"/slow/{i}.html"), f"Slow {i}", "teaser", guid=f"s{i}"))
    feed = server.route("/slow.rss", rss(items), content_type="application/rss+xml")
    sources = with_pipeline(write_sources(tmp_path / "sources.toml", [("slow", feed)]), workers=2, batch_size=8)
    log = (tmp_path / "ingest.log").open("w")
    proc = subprocess.Popen([str(NEWSDESK), "ingest", "--sources", str(sources), "--db", str(tmp_path / "w.duckdb")],
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:  # until the forkserver and both extraction workers are up
            running = _session(proc.pid)
            if sum("multiprocessing.forkserver" in c for c in running.values()) >= 3:
                break
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-2000:]
            assert time.monotonic() < deadline, running
            time.sleep(0.2)
        assert any("resource_tracker" in c for c in running.values())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while _session(proc.pid) and time.monotonic() - killed < 15:
            time.sleep(0.5)
        left = _session(proc.pid)
        assert left == {}, f"alive {time.monotonic() - killed:.0f} s after the kill: {left}"

        # The killed run's row says 'running'; the next run (holding the ingest lock) marks it abandoned.
        db = tmp_path / "w.duckdb"
        [(dead, status)] = query(db, "SELECT run_id, status FROM runs")
        assert status == "running"
        delay["s"] = 0
        summary = run_ingest(sources, db)
        runs = dict(query(db, "SELECT run_id, status FROM runs"))
        assert runs == {dead: "abandoned", summary["run_id"]: "completed"}
        [(finished, error, articles_new, loaded, balanced)] = query(db, """
            SELECT r.finished_at, r.error, r.articles_new, a.articles_loaded, a.balanced
            FROM runs r JOIN run_accounting a USING (run_id) WHERE run_id = ?""", [dead])
        assert finished is not None and "abandoned" in error
        assert articles_new == loaded  # what it had loaded, counted from its rows
        assert balanced is None  # its entries were never counted: unknown, not "true"
        assert query(db, "SELECT count(*) FROM articles") == [(80,)]
    finally:
        for pid in _session(proc.pid):  # only what this test started: the killed run's session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


# -- poison entries ------------------------------------------------------------


POISON_LINKS = [
    "http://[::1/a",  # unclosed IPv6 bracket: ValueError in urljoin/urlsplit
    "http://example.com:99999/a",  # port out of range
    "http://example.com:8o8o/a",  # port not a number
    "http://exa mple.com/a",  # space in the host
    "http://a..example/a",  # empty label (IDNA)
    "http://\u2000x.example/a",  # a Unicode space in the host
    "http://" + "a" * 70 + ".example/a",  # a label longer than 63 (IDNA)
    "http://example.com:-1/a",  # negative port
]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_poison_entries_fail_alone_and_the_run_completes(server, tmp_path):
    from transforms.records import RunCounts
    from transforms.reports import EXIT_PARTIAL, run_outcome

    good = {f"/good/{i}.html": page(f"Good {i}", f"Goodword{i}") for i in range(3)}
    for path, body in good.items():
        server.route(path, body)
    # A page whose declared og:url is malformed: loaded under the URL it came from.
    server.route("/good/ogurl.html", page("Odd canonical", "Canonical").replace(
        b"<head>", b'<head><meta property="og:url" content="http://[::1/broken">'))
    good["/good/ogurl.html"] = b""
    # Pages that cannot be read: each is a failure of its own entry.
    server.route("/bad/gzip.html", b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
    server.route("/bad/pdf", b"%PDF-1.7 binary", content_type="application/pdf")
    server.route("/bad/gone.html", b"gone", status=404)
    server.route("/bad/binary.html", bytes(range(256)) * 40, content_type="text/html; charset=x-no-such-charset")
    bad_pages = ["/bad/gzip.html", "/bad/pdf", "/bad/gone.html", "/bad/binary.html"]

    items = [item(server.url(p), f"Good {n}", guid=f"g{n}") for n, p in enumerate(good)]
    items += [item(link.replace("&", "&amp;"), f"Poison {n}", guid=f"p{n}") for n, link in enumerate(POISON_LINKS)]
    items += [item(server.url(p), f"Bad page {n}", guid=f"b{n}") for n, p in enumerate(bad_pages)]
    items.append(item("mailto:desk@example.com", "Mail link", guid="m1"))
    # Malformed dates are not poison: the entry loads, dated by when we saw it.
    server.route("/good/undated.html", page("Undated", "Undated"))
    items.append(item(server.url("/good/undated.html"), "Undated", guid="d1", date="Mon, 99 Foo 99999 99:99:99 XYZ"))
    poisoned = server.route("/poisoned.rss", rss(items), content_type="application/rss+xml")
    # Another feed in the same run, unharmed.
    server.route("/other/1.html", page("Other", "Elsewhere"))
    other = server.route("/other.rss", rss([item(server.url("/other/1.html"), "Other", guid="o1")]),
                         content_type="application/rss+xml")
    sources = write_sources(tmp_path / "s.toml", [("poisoned", poisoned), ("other", other)], retries=0)
    db = tmp_path / "w.duckdb"

    started = time.monotonic()
    summary = run_ingest(sources, db)
    print(f"poison run: {time.monotonic() - started:.1f} s")

    assert_accounting(summary)
    loaded = {r[0] for r in query(db, "SELECT url FROM articles")}
    expected = {server.url(p) for p in good} | {server.url("/good/undated.html"), server.url("/other/1.html")}
    assert expected <= loaded
    assert query(db, "SELECT date_source FROM articles WHERE title = 'Undated'") == [("first_seen",)]
    failures = query(db, "SELECT url, stage, reason, outcome FROM failures")
    failed_urls = [f[0] for f in failures]
    poison = POISON_LINKS + [server.url(p) for p in bad_pages] + ["mailto:desk@example.com"]
    assert len(poison) >= 10
    for link in poison:
        assert failed_urls.count(link) == 1, (link, failures)
    reasons = {f[0]: f[2] for f in failures}
    assert all(reasons[link] == "bad_url" for link in POISON_LINKS)
    assert reasons[server.url("/bad/gzip.html")] == "bad_content_encoding"
    assert reasons[server.url("/bad/pdf")] == "not_html"
    assert reasons[server.url("/bad/gone.html")] == "http_404"
    assert reasons["mailto:desk@example.com"] == "scheme_not_allowed"
    assert not loaded & set(poison)
    assert summary["feeds_failed"] == 0 and summary["entries_failed"] >= 10
    assert query(db, "SELECT status FROM runs") == [("completed",)]
    assert run_outcome(RunCounts.of_summary(summary))[0] == EXIT_PARTIAL


# -- generic teasers -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_identical_feed_teasers_stay_apart_and_each_is_upgraded_with_its_own_page(server, tmp_path):
    down = {"on": True}
    words = ["Aardvark", "Bison", "Chameleon", "Dugong", "Emu"]

    def flaky(word):
        def route(req):
            if down["on"]:
                return Reply(500, b"try later", {"Content-Type": "text/plain"})
            return Reply(200, page(f"The {word} story", word), {"Content-Type": "text/html"})
        return route

    items = []
    for n, word in enumerate(words):
        server.route(f"/t/{n}.html", flaky(word))
        items.append(item(server.url(f"/t/{n}.html"), f"Story {n}", "Read more…", guid=f"t{n}"))
    feed = server.route("/teasers.rss", rss(items), content_type="application/rss+xml")
    sources = write_sources(tmp_path / "s.toml", [("teasers", feed)], retries=0)
    with sources.open("a") as f:
        f.write("\n[retry]\npage_backoff_s = 0\n")
    db = tmp_path / "w.duckdb"

    first = run_ingest(sources, db)
    assert_accounting(first)
    rows = query(db, "SELECT url, body_source, body FROM articles ORDER BY url")
    assert [(u, s, b) for u, s, b in rows] == [(server.url(f"/t/{n}.html"), "feed", "Read more…") for n in range(5)]
    assert first["articles_new"] == 5 and first["duplicates"] == 0

    down["on"] = False
    second = run_ingest(sources, db)
    assert second["retries"] == 5 and second["retries_loaded"] == 5
    rows = query(db, "SELECT url, body_source, body FROM articles ORDER BY url")
    assert len(rows) == 5
    for n, (url, body_source, body) in enumerate(rows):
        assert url == server.url(f"/t/{n}.html") and body_source == "page"
        assert words[n] in body and not any(w in body for w in words if w != words[n])
    # Each row was upgraded once, from its own teaser.
    assert query(db, "SELECT count(*), count(DISTINCT article_id) FROM article_revisions WHERE reason = 'upgrade'") \
        == [(5, 5)]
    assert query(db, "SELECT count(*) FROM page_attempts") == [(0,)]


# -- every run ends in a terminal state --------------------------------------------


def test_a_failure_after_the_loads_marks_the_run_failed_with_its_counts(tmp_path):
    """What `_ingest` does after its loads (index refresh, report) runs
    inside `recorded_run`: an exception there must not leave 'running'."""
    import logging
    from datetime import datetime, timezone

    from flows.runstate import recorded_run
    from flows.summary import RunTally
    from transforms.records import RunCounts
    from warehouse import run_rows
    from warehouse.connection import connect

    db = tmp_path / "w.duckdb"
    with connect(db) as con:
        run_rows.start_run(con, "r1", datetime.now(timezone.utc), None)
    tally = RunTally("r1", str(db))
    tally.add(RunCounts(feeds_total=2, feeds_ok=2, articles_new=7, entries_seen=7))
    with pytest.raises(RuntimeError, match="index refresh"):
        with recorded_run(db, "r1", tally, logging.getLogger("test")):
            raise RuntimeError("index refresh: disk full")
    assert query(db, "SELECT status, articles_new, feeds_ok, error LIKE '%index refresh%', finished_at IS NOT NULL "
                     "FROM runs") == [("failed", 7, 2, True, True)]
    with connect(db) as con:
        run_rows.start_run(con, "r2", datetime.now(timezone.utc), None)
    with recorded_run(db, "r2", RunTally("r2", str(db)), logging.getLogger("test")):
        pass
    assert query(db, "SELECT status FROM runs WHERE run_id = 'r2'") == [("completed",)]


def test_abandoning_keeps_recorded_counts_and_takes_the_rest_from_the_rows(tmp_path):
    from datetime import datetime, timezone

    from transforms.records import FeedPoll, RunCounts
    from warehouse import feed_registry, run_rows
    from warehouse.connection import connect

    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    db = tmp_path / "w.duckdb"
    with connect(db) as con:
        for run in ("dead", "done", "live"):
            run_rows.start_run(con, run, now, None)
        run_rows.finish_run(con, "done", finished_at=now, status="completed", counts=RunCounts(articles_new=3))
        feed_registry.insert_feed_polls(con, [FeedPoll(run_id="dead", source="a", fetched_at=now, status=200, ok=True,
                                              not_modified=False, error=None, entries=4, new_entries=4),
                                     FeedPoll(run_id="dead", source="b", fetched_at=now, status=None, ok=False,
                                              not_modified=False, error="timeout", entries=0, new_entries=0)])
        assert run_rows.abandon_dead_runs(con, "live", now) == ["dead"]
        assert run_rows.abandon_dead_runs(con, "live", now) == []  # once
    assert query(db, "SELECT run_id, status, feeds_total, feeds_ok, feeds_failed, articles_new FROM runs "
                     "ORDER BY run_id") == [
        ("dead", "abandoned", 2, 1, 1, 0), ("done", "completed", 0, 0, 0, 3), ("live", "running", None, None, None, None),
    ]
    assert query(db, "SELECT balanced FROM run_accounting WHERE run_id = 'dead'") == [(None,)]


# -- exit codes ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_exit_codes_say_whether_the_run_did_its_work(server, tmp_path, make_db):
    from typer.testing import CliRunner

    from flows.cli import app

    server.route("/ok/1.html", page("Fine", "Fineness"))
    ok = server.route("/ok.rss", rss([item(server.url("/ok/1.html"), "Fine", guid="f1")]),
                      content_type="application/rss+xml")
    broken = server.route("/broken.rss", b"<html>an error page, not a feed</html>", content_type="text/html")
    gone = server.route("/gone.rss", b"", status=410)
    runner = CliRunner()

    dbs = {}

    def ingest(name, feeds):
        sources = write_sources(tmp_path / f"{name}.toml", feeds, retries=0)
        db = dbs[name] = make_db(name)
        return runner.invoke(app, ["ingest", "--quiet", "--sources", str(sources), "--db", str(db)])

    everything = ingest("ok", [("ok", ok)])
    assert everything.exit_code == 0, everything.output
    partial = ingest("partial", [("ok", ok), ("broken", broken)])
    assert partial.exit_code == 3, partial.output
    assert "run partial: 1 of 2 feeds failed" in partial.output
    nothing = ingest("nothing", [("broken", broken), ("gone", gone)])
    assert nothing.exit_code == 1, nothing.output
    assert "run failed: every feed polled failed (2 of 2)" in nothing.output
    # The runs themselves completed: the code is about what they could do.
    assert query(dbs["nothing"], "SELECT status, feeds_failed FROM runs") == [("completed", 2)]


# -- a malformed WARC ----------------------------------------------------------------

# Records written by hand, as broken crawlers write them. The first has a
# target URI no URL parser accepts; the second has a body announced as chunked
# whose chunks are not, so the record ends early and the rest of its bytes
# ("0" ...) are not a WARC record; the third is not a WARC record at all.
BAD_URL_RECORD = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://[::1/c\r\n"
                  b"Content-Type: application/http; msgtype=response\r\nContent-Length: 61\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>ok</html>\r\n\r\n")
BAD_CHUNKS_RECORD = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://x.example/chunked\r\n"
                     b"Content-Type: application/http; msgtype=response\r\nContent-Length: 80\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/html\r\n\r\n"
                     b"ZZZ\r\nnot a chunk\r\n0\r\n\r\n")
GARBAGE_RECORD = b"this is not a warc record at all\r\n\r\n"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_warc_with_bad_records_loads_the_good_ones_and_records_the_bad(tmp_path):
    import asyncio
    import gzip

    from flows.archive import WarcArchive
    from flows.fetch import Response
    from flows.ingest import ingest

    def good(n):
        body = page(f"Archived {n}", f"Archiveword{n}")
        return Response(f"http://x.example/{n}", f"http://x.example/{n}", 200, {"content-type": "text/html"}, body)

    files = []
    for name, goods, bads in (("first", [0, 1], [BAD_URL_RECORD, GARBAGE_RECORD]), ("second", [2], [BAD_CHUNKS_RECORD])):
        archive = WarcArchive(tmp_path / name, tmp_path)
        for n in goods:
            path, _ = archive.write(good(n))
        path = tmp_path / path
        with path.open("ab") as f:
            for bad in bads:
                f.write(gzip.compress(bad))
        files.append(path)
    db = tmp_path / "w.duckdb"

    summary = asyncio.run(ingest(db=str(db), from_warc=[str(f) for f in files]))

    assert_accounting(summary)
    assert query(db, "SELECT url FROM articles WHERE body_source = 'page' ORDER BY url") == [
        (f"http://x.example/{n}",) for n in range(3)]
    failures = set(query(db, "SELECT url, reason FROM failures"))
    assert ("http://[::1/c", "bad_url") in failures
    assert (files[0].resolve().as_uri(), "bad_warc_record") in failures
    assert (files[1].resolve().as_uri(), "bad_warc_record") in failures
    assert query(db, "SELECT status FROM runs") == [("completed",)]


# -- atomic exports ------------------------------------------------------------------


def _limit_file_size(limit: int):
    def preexec():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_parquet_export_whose_copy_fails_loses_nothing(tmp_path):
    from datetime import datetime, timezone

    from tests.transforms.test_articles import entry
    from transforms.articles import build_article
    from transforms.records import BatchRows
    from warehouse import article_rows
    from warehouse.connection import connect

    db = tmp_path / "w.duckdb"
    articles = []
    for n in range(6):
        e = entry(link=f"https://x.example/{n}", canonical_link=f"https://x.example/{n}", guid=str(n),
                  published_at=datetime(2026, 3, 1 + n % 2, 8, tzinfo=timezone.utc),
                  feed_text=f"Article number {n}. " + "Words of the article. " * 50)
        articles.append(build_article(e, None, page_problem=None, run_id="r", now=datetime(2026, 3, 5, tzinfo=timezone.utc)))
    with connect(db) as con:
        article_rows.load_batch(con, BatchRows(articles=articles))
    out = tmp_path / "out"
    env = cli_env(tmp_path)
    args = [str(NEWSDESK), "export", "--format", "parquet", "--out", str(out), "--db", str(db)]

    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert {p.parent.name for p in before} == {"published_date=2026-03-01", "published_date=2026-03-02"}

    # The same export again, with files limited to 1 kB: COPY fails writing a day.
    failed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                            preexec_fn=_limit_file_size(1024))
    assert failed.returncode != 0
    assert "File too large" in failed.stderr or "EFBIG" in failed.stderr, failed.stderr[-2000:]
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.parquet")}
    assert after == before  # nothing lost, nothing half-written
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left behind

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    replaced = {p.relative_to(out) for p in out.rglob("*.parquet")}
    assert len(replaced) == len(before) and replaced != set(before)  # each day replaced, not added to
