"""Search on a lake: each machine's index keeps the lake snapshot it indexed
and adds what the change feed says changed since (O(new) per run); an index
that is missing, on another machine, or older than the lake keeps is built
from the whole lake."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows import search_index
from tests.flows.helpers import run_ingest, serve_seeds, write_sources
from tests.warehouse.test_warehouse import _batch
from transforms.records import BatchRows
from warehouse import article_rows
from warehouse.connection import connect
from warehouse.lake import current_snapshot

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow
def test_a_lake_run_indexes_what_changed_and_another_machine_builds_its_own(server, tmp_path, make_lake,
                                                                            monkeypatch):
    db = make_lake()
    sources = write_sources(tmp_path / "s.toml", serve_seeds(server))
    run_ingest(sources, db)
    path = search_index.index_dir(db)
    with connect(db, read_only=True) as con:
        # The run's own last commit (its runs row) comes after the index's.
        assert search_index._watermark(path) <= current_snapshot(con)
        assert search_index.update(con, db).articles == 0
        assert search_index._watermark(path) == current_snapshot(con)
        found = search_index.search(con, db, "Kim Jong-Un Putin Vladivostok")
    assert found and found[0]["title"] == "Kim Jong-Un travels to Russia to meet Putin"
    assert sorted(search_index.indexed_ids(db)) == sorted(r[0] for r in _ids(db))

    # Another article lands (another writer, say): the next update takes it
    # alone from the change feed.
    _, art, _, _ = _batch()
    art = replace(art, title="Harbour festival draws record crowds", body="Harbour festival " * 40)
    with connect(db) as con:
        article_rows.load_batch(con, BatchRows(articles=[art]), run_id="other-writer")
        done = search_index.update(con, db)
    assert (done.articles, done.rebuilt) == (1, False)
    assert sorted(search_index.indexed_ids(db)) == sorted(r[0] for r in _ids(db))
    with connect(db) as con:
        assert search_index.update(con, db).articles == 0  # nothing changed since
        assert search_index.search(con, db, "harbour festival")[0]["article_id"] == art.article_id

    # Another machine: its own index folder, built from the whole lake.
    monkeypatch.setenv("NEWSDESK_SEARCH_DIR", str(tmp_path / "machine-2"))
    assert search_index.index_dir(db) != path
    with connect(db, read_only=True) as con:
        built = search_index.update(con, db)
    assert built.rebuilt and built.articles == 16
    assert sorted(search_index.indexed_ids(db)) == sorted(r[0] for r in _ids(db))


def _ids(db):
    with connect(db, read_only=True) as con:
        return con.execute("SELECT article_id FROM articles").fetchall()


_UPDATE = """
import os, sys, time
from flows import search_index
from warehouse.connection import connect
with connect(sys.argv[1], read_only=True) as con:
    open(sys.argv[2] + "." + str(os.getpid()), "w").close()
    while not os.path.exists(sys.argv[2]):  # both connected: go at once
        time.sleep(0.01)
    done = search_index.update(con, sys.argv[1])
print(done.articles, done.rebuilt)
"""


def test_two_writers_on_one_machine_share_its_index_of_a_lake(tmp_path, make_lake):
    """Both find the index missing at once: the first builds it, the second
    waits for it and then has nothing left to add (before the index lock,
    the second's build killed the first's tantivy writer)."""
    import subprocess
    import sys
    import time

    db = make_lake()
    with connect(db) as con:
        for n in range(30):
            _, art, _, _ = _batch()
            article_rows.load_batch(con, BatchRows(articles=[replace(art, article_id=f"a{n}", url=f"https://x.example/{n}",
                                                        content_hash=f"h{n}", title=f"Story {n}")]), run_id=f"w{n}")
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _UPDATE, db, str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in results]
    outcomes = sorted(out.split()[-2:] for out, _ in results)
    assert outcomes == [["0", "False"], ["30", "True"]]
    assert sorted(search_index.indexed_ids(db)) == sorted(r[0] for r in _ids(db))
