"""A reader held open beside a run, as a notebook or DBeaver holds it: the
issue that brought the lake. On a lake the run goes on and the reader sees
its commit; on the file DuckDB lets no writer in, and newsdesk says so,
naming the holder and the way out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.flows.helpers import assert_accounting, run_ingest, serve_seeds, write_sources

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _reader(script: str) -> subprocess.Popen:
    """A plain DuckDB client in another process: prints a count, waits for
    a line on stdin with the connection open, prints the count again."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_reader_held_open_for_a_whole_lake_run_changes_nothing_for_the_run(server, tmp_path, make_lake):
    db = make_lake("reader")
    sources = write_sources(tmp_path / "sources.toml", serve_seeds(server))
    reader = _reader(f"""
        import sys
        import duckdb
        from warehouse.lake import attach
        from warehouse.target import parse_target
        con = duckdb.connect()
        attach(con, parse_target({db!r}), read_only=True)
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
        sys.stdin.readline()
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
    """)
    try:
        assert reader.stdout.readline().strip() == "0"
        summary = run_ingest(sources, db)
        assert summary["articles_new"] > 0 and summary["feeds_failed"] == 0, summary
        assert_accounting(summary)
        out, err = reader.communicate("go\n", timeout=60)
        assert int(out.strip()) == summary["articles_new"], err
    finally:
        reader.kill()


def test_a_reader_held_open_on_the_file_is_named_and_the_lake_offered(tmp_path):
    from warehouse.connection import WarehouseBusy, connect

    db = tmp_path / "wh.duckdb"
    with connect(db):
        pass
    reader = _reader(f"""
        import sys
        import duckdb
        con = duckdb.connect({str(db)!r}, read_only=True)
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
        sys.stdin.readline()
    """)
    try:
        assert reader.stdout.readline().strip() == "0"
        with pytest.raises(WarehouseBusy) as caught:
            with connect(db, wait_s=0.3):
                pass
        message = str(caught.value)
        assert f"(PID {reader.pid})" in message and "stayed locked for 0.3 s" in message
        assert "notebook" in message and "lake" in message
    finally:
        reader.kill()
    with connect(db):  # the holder gone, the writer gets in at once
        pass
