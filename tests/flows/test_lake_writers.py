"""Several `newsdesk ingest` processes write one lake at once, on feeds that
overlap (by mistake, as happens): one article per canonical URL and per page
hash, one sighting per (feed, link), every entry accounted for, nothing
left staged. PostgreSQL sits behind a 10 ms proxy, because commit races do
not show on loopback; a plain DuckDB reader holds the lake open throughout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.flows.helpers import query, write_sources
from tests.latency_proxy import LatencyProxy

pytestmark = [pytest.mark.slow, pytest.mark.server]

NEWSDESK = Path(sys.executable).with_name("newsdesk")
FEEDS, ITEMS = 6, 8
WRITERS = [(0, 1, 2, 3), (2, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 3, 4, 5)]
WORDS = ("harbour council budget river bridge school market railway festival museum hospital library "
         "election weather orchestra stadium airport factory garden theatre").split()


def _page(story: int) -> bytes:
    words = [WORDS[(story * 7 + i * 3 + i * i) % len(WORDS)] for i in range(160)]
    paragraphs = " ".join(f"<p>Report {story}: {' '.join(words[j:j + 40])}.</p>" for j in range(0, 160, 40))
    return (f"<html><head><title>Story {story}</title></head><body><article><h1>Story {story}</h1>"
            f"{paragraphs}</article></body></html>").encode()


def _serve(server) -> list[tuple[str, str]]:
    """Feed f carries stories f*4 .. f*4+7: each story is in two feeds (under
    a tracking parameter of its feed). Stories 100+ are one body served
    under two URLs: duplicates by content hash."""
    for story in range(FEEDS * 4 + 8):
        server.route(f"/s/{story}.html", _page(story))
    for copy in ("a", "b"):
        server.route(f"/copy-{copy}.html", _page(100))
    feeds = []
    for f in range(FEEDS):
        items = "".join(f"<item><title>Story {s}</title><link>{server.url(f'/s/{s}.html')}?utm_source=f{f}</link>"
                        f"<pubDate>Mon, 11 Sep 2023 0{s % 10}:00:00 GMT</pubDate></item>"
                        for s in range(f * 4, f * 4 + ITEMS))
        items += f"<item><title>Copy</title><link>{server.url('/copy-' + 'ab'[f % 2] + '.html')}</link></item>"
        body = f'<rss version="2.0"><channel><title>Feed {f}</title>{items}</channel></rss>'.encode()
        feeds.append((f"feed{f}", server.route(f"/feeds/{f}.xml", body, content_type="application/rss+xml")))
    return feeds


def _sources(path: Path, feeds) -> Path:
    sources = write_sources(path, feeds, per_host_concurrency=2)
    with sources.open("a") as f:
        f.write("\n[pipeline]\nbatch_size = 4\nworkers = 1\n\n[archive]\nenabled = false\n")
    return sources


def _state(db) -> tuple[set, set]:
    return (set(query(db, "SELECT url, content_hash FROM articles")),
            set(query(db, "SELECT source, canonical_link FROM article_sightings")))


def test_four_writers_on_overlapping_feeds_double_nothing_and_lose_nothing(server, prefect_server, postgres,
                                                                              tmp_path, make_lake):
    feeds = _serve(server)
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}

    # What one writer of all feeds stores, in a file warehouse.
    clean_db = tmp_path / "clean.duckdb"
    clean = subprocess.run([str(NEWSDESK), "ingest", "--sources", str(_sources(tmp_path / "all.toml", feeds)),
                            "--db", str(clean_db), "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    expected = _state(clean_db)

    lake = make_lake("shared")
    proxy = LatencyProxy(postgres.port, delay_s=0.010)
    slow_lake = lake.replace(f"port={postgres.port}", f"port={proxy.port}")
    reader_script = textwrap.dedent(f"""
        import sys, duckdb
        from warehouse.lake import attach
        from warehouse.target import parse_target
        con = duckdb.connect()
        attach(con, parse_target({lake!r}), read_only=True)
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
        sys.stdin.readline()
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
    """)
    reader = subprocess.Popen([sys.executable, "-c", reader_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "0"
        writers = [subprocess.Popen(
            [str(NEWSDESK), "ingest", "--sources", str(_sources(tmp_path / f"w{i}.toml", [feeds[f] for f in group])),
             "--db", slow_lake, "--quiet"],
            # Each writer as on its own machine, with its own search index: writers
            # on one machine building one lake's index at once collide (an open limit).
            env={**env, "NEWSDESK_SEARCH_DIR": str(tmp_path / f"search-{i}")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, group in enumerate(WRITERS)]
        results = [(w.wait(timeout=900), w.stderr.read()) for w in writers]
        for code, err in results:
            assert code == 0, err[-3000:]
        out, err = reader.communicate("go\n", timeout=60)
    finally:
        reader.kill()
        proxy.stop()

    articles, sightings = _state(lake)
    assert articles == expected[0] and sightings == expected[1]
    assert query(lake, "SELECT count(*) = count(DISTINCT url) FROM articles") == [(True,)]
    assert query(lake, "SELECT count(*) = count(DISTINCT content_hash) FROM articles WHERE body_source = 'page'") == [
        (True,)]
    assert query(lake, "SELECT count(*) = count(DISTINCT (source, canonical_link)) FROM article_sightings") == [(True,)]
    # Each writer's entries are accounted for, in its own run.
    runs = query(lake, "SELECT status, balanced FROM run_accounting")
    assert runs == [("completed", True)] * len(WRITERS), runs
    assert query(lake, "SELECT count(*) FROM entry_outbox") == [(0,)]
    assert query(lake, "SELECT count(*) FROM staged_loads") == [(0,)]
    assert int(out.strip()) == len(expected[0]), err  # the reader, held open throughout, sees every article
    print(f"\n{len(WRITERS)} writers, {len(expected[0])} articles, {len(expected[1])} sightings; per run "
          "(entries seen, new, duplicates):",
          query(lake, "SELECT entries_seen, articles_new, duplicates FROM runs ORDER BY started_at"))
