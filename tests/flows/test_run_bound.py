"""[pipeline] max_run_s: a run among pages that drip a byte at a time stops
starting new batches past its bound, ends cleanly, and leaves the pages it
did not start queued for the next run."""

import pytest

from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from tests.httpserver import Reply

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

PAGES = 6


def _page(n: int) -> bytes:
    text = " ".join(f"Paragraph {n} of a story told slowly, sentence {i}." for i in range(6))
    return f"<html><body><article><h1>Slow story {n}</h1><p>{text}</p></article></body></html>".encode()


def test_a_run_past_max_run_s_starts_nothing_new_and_the_next_run_finishes(server, tmp_path):
    drip = {"on": True}
    for n in range(PAGES):
        # Headers at once, then ~500 bytes at 100 bytes a second: ~5 s a page while dripping.
        server.route(f"/p/{n}.html", lambda req, n=n: Reply(200, _page(n), {"Content-Type": "text/html",
                                                                          **({"X-Drip": "1"} if drip["on"] else {})}))
    items = "".join(f"<item><title>Slow {n}</title><link>{server.url(f'/p/{n}.html')}</link></item>" for n in range(PAGES))
    server.route("/feed.xml", f'<rss version="2.0"><channel><title>slow</title>{items}</channel></rss>',
                 content_type="application/rss+xml")
    sources = write_sources(tmp_path / "s.toml", [("slow", server.url("/feed.xml"))], total_timeout_s=120,
                            per_host_concurrency=1)
    with sources.open("a") as f:
        f.write("\n[pipeline]\nbatch_size = 1\nworkers = 1\nmax_run_s = 1\n")
    db = tmp_path / "wh.duckdb"

    first = run_ingest(sources, db)
    assert_accounting(first)
    # Two batches were under way when the bound passed (one fetched ahead); the rest were never started.
    assert first["deferred_pages"] == PAGES - 2
    assert first["articles_new"] == 2 and first["entries_pending"] == PAGES - 2
    assert len(server.hits("/p/")) == 2
    assert query(db, "SELECT count(*) FROM entry_outbox") == [(PAGES - 2,)]
    assert query(db, "SELECT status FROM runs") == [("completed",)]

    drip["on"] = False
    second = run_ingest(sources, db)
    assert second["articles_new"] == PAGES - 2 and second["deferred_pages"] == 0
    assert query(db, "SELECT count(*) FROM entry_outbox") == [(0,)]
    assert query(db, "SELECT count(*) FROM articles") == [(PAGES,)]
