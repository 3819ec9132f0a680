"""Nothing lost when a run dies: crash injection against a server that
answers conditional GET as news sites do (ETag, 304).

Each case kills `newsdesk ingest` with SIGKILL at a named point
(`NEWSDESK_KILL_AT`, see flows/crashpoints.py), reruns it, and compares the
warehouse with a clean single run's: the same articles (url, content_hash)
and the same sightings. Runs are real CLI processes against one real
`prefect server`; the pages are served from 127.0.0.1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.flows.helpers import query, write_sources
from tests.httpserver import Reply

pytestmark = [pytest.mark.slow, pytest.mark.server]

NEWSDESK = Path(sys.executable).with_name("newsdesk")
FEEDS, ITEMS = 4, 12
WORDS = ("harbour council budget river bridge school market railway festival museum hospital library "
         "election weather orchestra stadium airport factory garden theatre").split()


def _page(feed: int, item: int) -> bytes:
    # Distinct text per page, long enough for the extractor to take it.
    words = [WORDS[(feed * 7 + item * 3 + i * (feed + 2)) % len(WORDS)] for i in range(160)]
    paragraphs = " ".join(f"<p>Report {feed}-{item}: {' '.join(words[j:j + 40])}.</p>" for j in range(0, 160, 40))
    return (f"<html><head><title>Story {feed}-{item}</title></head><body><article><h1>Story {feed}-{item}</h1>"
            f"{paragraphs}</article></body></html>").encode()


def _serve(server) -> list[tuple[str, str]]:
    feeds = []
    for f in range(FEEDS):
        for i in range(ITEMS):
            server.route(f"/p/{f}/{i}.html", _page(f, i))
        items = "".join(f"<item><title>Story {f}-{i}</title><link>{server.url(f'/p/{f}/{i}.html')}</link>"
                        f"<guid>{server.url(f'/p/{f}/{i}.html')}</guid><pubDate>Mon, 11 Sep 2023 0{i % 10}:00:00 GMT"
                        f"</pubDate></item>" for i in range(ITEMS))
        body = f'<rss version="2.0"><channel><title>Feed {f}</title>{items}</channel></rss>'.encode()
        etag = f'"feed-{f}-v1"'

        def feed(req, body=body, etag=etag):
            if req.headers.get("if-none-match") == etag:
                return Reply(304, b"", {"ETag": etag})
            return Reply(200, body, {"Content-Type": "application/rss+xml", "ETag": etag})

        server.route(f"/feeds/{f}.xml", feed)
        feeds.append((f"feed{f}", server.url(f"/feeds/{f}.xml")))
    return feeds


@pytest.fixture
def setup(server, prefect_server, tmp_path):
    sources = write_sources(tmp_path / "s.toml", _serve(server), per_host_concurrency=4)
    with sources.open("a") as f:
        f.write("\n[pipeline]\nbatch_size = 8\nworkers = 1\nhold_db_s = 0\n\n[archive]\nenabled = false\n")
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("NEWSDESK_KILL_AT", None)
    return sources, env


def _ingest(sources: Path, db: Path, env: dict, kill_at: str | None = None) -> subprocess.CompletedProcess:
    run_env = {**env, **({"NEWSDESK_KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run([str(NEWSDESK), "ingest", "--sources", str(sources), "--db", str(db), "--quiet"],
                          env=run_env, capture_output=True, text=True, timeout=600)


def _state(db: Path) -> tuple[set, set]:
    articles = set(query(db, "SELECT url, content_hash FROM articles"))
    sightings = set(query(db, "SELECT source, canonical_link FROM article_sightings"))
    return articles, sightings


@pytest.fixture
def clean(setup, tmp_path):
    sources, env = setup
    db = tmp_path / "clean.duckdb"
    run = _ingest(sources, db, env)
    assert run.returncode == 0, run.stderr[-3000:]
    articles, sightings = _state(db)
    assert len(articles) == FEEDS * ITEMS and len(sightings) == FEEDS * ITEMS
    return articles, sightings


KILL_POINTS = ["feeds_fetched", "feeds_parsed", "polls_recorded", "extracting:2", "loading:2", "indexing"]


# On a lake a batch commits twice (PostgreSQL, then the lake): a kill between.
LAKE_POINTS = ["between_commits:2"]


def test_a_killed_run_loses_nothing_and_the_rerun_doubles_nothing(setup, clean, tmp_path, make_db):
    sources, env = setup
    table = []
    lake = isinstance(make_db(), str)
    for point in KILL_POINTS + (LAKE_POINTS if lake else []):
        db = make_db(f"killed_{point.replace(':', '_')}")
        killed = _ingest(sources, db, env, kill_at=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr[-2000:])
        before = len(_state(db)[0]) if lake or db.exists() else 0
        rerun = _ingest(sources, db, env)
        assert rerun.returncode == 0, (point, rerun.stderr[-3000:])
        articles, sightings = _state(db)
        table.append((point, before, len(articles), len(clean[0])))
        assert articles == clean[0], point
        assert sightings == clean[1], point
        assert query(db, "SELECT count(*) FROM entry_outbox") == [(0,)], point
        # The killed run is marked abandoned by the rerun: no run stays 'running'.
        statuses = [s for (s,) in query(db, "SELECT status FROM runs ORDER BY started_at")]
        assert statuses == ["abandoned", "completed"], (point, statuses)
        # The rerun's counts balance, the entries it resumed included.
        assert query(db, "SELECT bool_and(balanced) FROM run_accounting WHERE status = 'completed'") == [(True,)]
        if lake:  # nothing the killed writer staged is left behind
            assert query(db, "SELECT count(*) FROM staged_loads") == [(0,)], point
        if point == "loading:2":  # a third run finds nothing new and changes nothing
            again = _ingest(sources, db, env)
            assert again.returncode == 0 and _state(db) == (articles, sightings), point
    print(f"\n{'lake' if lake else 'file'}: kill point -> articles after the kill, after the rerun, in a clean run")
    for row in table:
        print("  %-15s %3d %3d %3d" % row)


def test_a_stalled_warehouse_fails_the_run_and_the_rerun_finishes_it(setup, clean, server, tmp_path):
    """Another process takes DuckDB's lock mid-run and keeps it past the
    writer's wait: the run fails; the rerun (feeds now answer 304) ends equal
    to a clean run."""
    sources, env = setup
    db = tmp_path / "stalled.duckdb"
    taken = threading.Event()

    def hold_lock():
        from warehouse.connection import connect

        with connect(db):
            taken.set()
            time.sleep(35)  # longer than the writer waits (30 s), shorter than the failure mark waits after

    original = server.routes["/p/2/0.html"]

    def trigger(req):
        if not taken.is_set() and not any(t.name == "locker" for t in threading.enumerate()):
            threading.Thread(target=hold_lock, name="locker", daemon=True).start()
        return original

    server.routes["/p/2/0.html"] = trigger
    failed = _ingest(sources, db, env)
    assert failed.returncode != 0 and taken.is_set(), failed.stderr[-2000:]
    while any(t.name == "locker" for t in threading.enumerate()):
        time.sleep(0.5)
    partial = len(_state(db)[0])
    assert partial < FEEDS * ITEMS
    assert query(db, "SELECT count(*) > 0 FROM entry_outbox") == [(True,)]
    assert query(db, "SELECT status FROM runs") == [("failed",)]
    rerun = _ingest(sources, db, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all(r.headers.get("if-none-match") for r in server.hits("/feeds/")[-FEEDS:])  # the rerun got 304s
    assert _state(db) == clean
    print(f"\nstalled warehouse: {partial} articles after the failed run, {len(clean[0])} after the rerun")
