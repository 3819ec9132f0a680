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
    assert run_outcome(summary)[0] == EXIT_PARTIAL


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
