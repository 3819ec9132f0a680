"""The lake backend on a real PostgreSQL: the schema derived from the file's,
moving a file warehouse in, reading it (now and as it was), and a reader
held open while a writer commits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime, timezone

import psycopg
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.warehouse.test_warehouse import _batch
from transforms.records import BatchRows, FeedPoll, RunCounts
from warehouse import article_rows, feed_registry, run_rows
from warehouse.connection import connect
from warehouse.lake import KEYED_SCHEMA, KEYED_TABLES, LAKE_TABLES, connect_lake, current_snapshot
from warehouse.target import BadTarget, FileTarget, LakeTarget, parse_target

runner = CliRunner()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_what_db_names():
    assert parse_target("news.duckdb") == FileTarget(parse_target("news.duckdb").path)
    lake = parse_target("ducklake:postgres:dbname=news host=127.0.0.1", "/srv/lake")
    assert isinstance(lake, LakeTarget) and lake.dsn == "dbname=news host=127.0.0.1"
    assert lake.data_path == "/srv/lake/"
    assert parse_target("ducklake:postgres:dbname=n", "s3://bucket/news").data_path == "s3://bucket/news/"
    with pytest.raises(BadTarget, match="PostgreSQL catalog"):
        parse_target("ducklake:sqlite:meta.sqlite")
    with pytest.raises(BadTarget, match="connection string"):
        parse_target("ducklake:postgres:")


def _file_warehouse(path):
    e, art, s, f = _batch()
    with connect(path) as con:
        feed_registry.upsert_sources(con, [{"name": "a", "url": "https://x.example/feed", "tags": ["world"]}])
        run_rows.start_run(con, "run-1", NOW, None)
        article_rows.load_batch(con, BatchRows(articles=[art], sightings=[s], failures=[f]))
        feed_registry.insert_feed_polls(con, [FeedPoll(run_id="run-1", source="a", fetched_at=NOW, status=200, ok=True,
                                              not_modified=False, error=None, entries=1, new_entries=1)])
        run_rows.finish_run(con, "run-1", finished_at=NOW, status="completed", counts=RunCounts(articles_new=1))
    return art


def test_the_lake_has_the_files_columns_and_postgres_has_the_keys(lake):
    db, data = lake
    target = parse_target(db, data)
    with connect_lake(target) as con:
        for table in LAKE_TABLES:
            lake_cols = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_catalog = 'lake' AND table_name = ? ORDER BY ordinal_position",
                                    [table]).fetchall()
            with connect(data.parent / "ref.duckdb") as ref:
                file_cols = ref.execute("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
            assert lake_cols == file_cols, table
    with psycopg.connect(target.dsn) as pg:
        keys = {r[0]: r[1] for r in pg.execute("""
            SELECT c.relname, string_agg(a.attname, ',' ORDER BY a.attnum)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
            WHERE n.nspname = %s AND i.indisprimary GROUP BY c.relname""", [KEYED_SCHEMA]).fetchall()}
    assert keys["article_sightings"] == "source,canonical_link"
    assert keys["entry_outbox"] == "source,canonical_link"
    assert keys["article_keys"] == "kind,key"
    assert set(KEYED_TABLES) - {"story_bands"} <= set(keys)
    # A second writer finds the schema in place and changes nothing.
    with connect_lake(parse_target(db)) as con:
        assert con.execute("SELECT count(*) FROM lake_loads").fetchone()[0] == 0


def test_an_older_lake_gets_the_columns_later_migrations_added(lake):
    db, data = lake
    target = parse_target(db, data)
    with connect_lake(target):
        pass
    # As a lake made before the last columns of sources and feed_polls: the
    # columns gone, its schema version behind this newsdesk's.
    with connect_lake(target) as con:
        con.execute("ALTER TABLE lake.main.feed_polls DROP COLUMN warning")
    with psycopg.connect(target.dsn, autocommit=True) as pg:
        pg.execute(f"ALTER TABLE {KEYED_SCHEMA}.sources DROP COLUMN last_warning")
        pg.execute(f"DELETE FROM {KEYED_SCHEMA}.lake_schema")
    with connect_lake(target) as con:
        assert con.execute("SELECT count(*) FROM sources WHERE last_warning IS NULL").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM feed_polls WHERE warning IS NULL").fetchone() == (0,)
    with psycopg.connect(target.dsn) as pg:
        assert pg.execute(f"SELECT count(*) FROM {KEYED_SCHEMA}.lake_schema").fetchone() == (1,)


def test_a_new_lake_needs_a_data_folder(lake):
    db, _ = lake
    result = runner.invoke(app, ["runs", "--db", db])
    assert result.exit_code == 2 and "no warehouse in the lake" in result.output
    src = lake[1].parent / "w.duckdb"
    _file_warehouse(src)
    result = runner.invoke(app, ["migrate", "--to", db, "--db", str(src)])
    assert result.exit_code == 2 and "--data-path" in result.output


def test_migrate_moves_a_file_warehouse_once(lake, tmp_path):
    db, data = lake
    src = tmp_path / "w.duckdb"
    art = _file_warehouse(src)
    before = src.read_bytes()
    result = runner.invoke(app, ["migrate", "--to", db, "--data-path", str(data), "--db", str(src)])
    assert result.exit_code == 0, result.output
    assert "articles: 1" in result.output and "article_sightings: 1" in result.output
    file_sum, lake_sum = result.output.split("file ")[1].split(", lake ")
    assert file_sum.strip() == lake_sum.strip() and file_sum.startswith("1:")
    assert src.read_bytes() == before  # the file is only read
    # The keyed state answers what the file's indexes answered.
    with connect_lake(parse_target(db)) as con:
        assert con.execute("SELECT kind, key, article_id FROM article_keys ORDER BY kind").fetchall() == [
            ("url", art.url, art.article_id)]  # a feed-text body has no hash key
        assert con.execute("SELECT tags FROM sources").fetchone()[0] == ["world"]
    again = runner.invoke(app, ["migrate", "--to", db, "--db", str(src)])
    assert again.exit_code == 0 and "nothing copied" in again.output
    rows = runner.invoke(app, ["sql", "select count(*) as n from articles", "--db", db, "-f", "csv"])
    assert rows.output.splitlines() == ["n", "1"]
    # Another warehouse is not poured into a lake that holds one.
    other = tmp_path / "other.duckdb"
    _file_warehouse(other)
    with connect(other) as con:
        article_rows.load_batch(con, BatchRows(articles=[replace(art, article_id="another", url="https://x.example/2")]))
    refused = runner.invoke(app, ["migrate", "--to", db, "--db", str(other)])
    assert refused.exit_code == 2 and "another warehouse" in refused.output


def test_a_move_killed_between_its_two_commits_is_finished_by_the_next(lake, tmp_path):
    """The keyed commit happened, the lake's did not (as if killed between
    them): the next migrate replaces the keyed rows and copies once."""
    db, data = lake
    src = tmp_path / "w.duckdb"
    _file_warehouse(src)
    with connect_lake(parse_target(db, data)) as con:
        con.execute(f"INSERT INTO keys.{KEYED_SCHEMA}.article_sightings SELECT * FROM "
                    "(SELECT 'a', 'https://x.example/1', 'stale', 'u', NULL, now(), 'r')")
    result = runner.invoke(app, ["migrate", "--to", db, "--db", str(src)])
    assert result.exit_code == 0, result.output
    with connect_lake(parse_target(db)) as con:
        assert con.execute("SELECT count(*), min(article_id) <> 'stale' FROM article_sightings").fetchone() == (1, True)
        assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 1


def test_sql_as_of_reads_the_lake_as_it_was(lake, tmp_path):
    db, data = lake
    src = tmp_path / "w.duckdb"
    _file_warehouse(src)
    assert runner.invoke(app, ["migrate", "--to", db, "--data-path", str(data), "--db", str(src)]).exit_code == 0
    with connect_lake(parse_target(db)) as con:
        moved = current_snapshot(con)
        con.execute("INSERT INTO runs (run_id, started_at, status) VALUES ('later', now(), 'completed')")
    now = runner.invoke(app, ["sql", "select count(*) as n from runs", "--db", db, "-f", "csv"])
    then = runner.invoke(app, ["sql", "select count(*) as n from runs", "--db", db, "-f", "csv",
                               "--as-of", str(moved)])
    assert now.output.splitlines() == ["n", "2"] and then.output.splitlines() == ["n", "1"], then.output
    at = datetime.now(timezone.utc).isoformat()
    assert runner.invoke(app, ["sql", "select count(*) as n from runs", "--db", db, "-f", "csv",
                               "--as-of", at]).output.splitlines() == ["n", "2"]
    bad = runner.invoke(app, ["sql", "select 1", "--db", db, "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "neither a snapshot id nor a time" in bad.output
    on_file = runner.invoke(app, ["sql", "select 1", "--db", str(src), "--as-of", "1"])
    assert on_file.exit_code == 2 and "needs a lake" in on_file.output
    # A snapshot the lake does not have (not yet made, or expired): the range it keeps, exit 2.
    for gone in [str(moved + 1000), "2001-01-01T00:00"]:
        missing = runner.invoke(app, ["sql", "select 1", "--db", db, "--as-of", gone])
        assert missing.exit_code == 2, missing.output
        assert "the lake has no snapshot" in missing.output and f"to {moved + 1}, from" in missing.output
    before = runner.invoke(app, ["sql", "select 1", "--db", db, "--as-of", "0"])
    assert before.exit_code == 2 and "held no warehouse yet at snapshot 0" in before.output


def test_the_sql_gate_holds_on_a_lake(lake, tmp_path):
    db, data = lake
    src = tmp_path / "w.duckdb"
    _file_warehouse(src)
    assert runner.invoke(app, ["migrate", "--to", db, "--data-path", str(data), "--db", str(src)]).exit_code == 0
    for statement in ("DELETE FROM articles", "EXPLAIN ANALYZE DELETE FROM article_sightings",
                      f"COPY articles TO '{tmp_path}/out.csv'", f"ATTACH '{tmp_path}/x.duckdb' AS x",
                      f"select * from read_csv('{src}')"):
        result = runner.invoke(app, ["sql", statement, "--db", db])
        assert result.exit_code == 2, (statement, result.output)
    assert not (tmp_path / "out.csv").exists()
    count = runner.invoke(app, ["sql", "select count(*) as n from article_sightings", "--db", db, "-f", "csv"])
    assert count.output.splitlines() == ["n", "1"]


def test_a_reader_held_open_does_not_stop_a_writer(lake, tmp_path):
    """What fails on the file (a notebook holding it makes the next ingest
    exit 1): a plain DuckDB client holds the lake open in another process,
    a writer commits, and the reader's next query sees the commit."""
    db, data = lake
    src = tmp_path / "w.duckdb"
    _file_warehouse(src)
    target = parse_target(db, data)
    with connect_lake(target):
        pass  # the schema, before the reader attaches
    script = textwrap.dedent(f"""
        import sys
        import duckdb
        from warehouse.lake import attach
        from warehouse.target import parse_target
        con = duckdb.connect()
        attach(con, parse_target({db!r}), read_only=True)
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
        sys.stdin.readline()  # held open until the writer is done
        print(con.execute("select count(*) from articles").fetchone()[0], flush=True)
    """)
    reader = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "0"
        result = runner.invoke(app, ["migrate", "--to", db, "--db", str(src)])
        assert result.exit_code == 0, result.output
        out, err = reader.communicate("go\n", timeout=60)
        assert out.strip() == "1", err
    finally:
        reader.kill()


def test_writers_started_together_on_a_new_lake_all_get_in(postgres, tmp_path):
    """DuckLake makes its catalog on the first ATTACH: four writers at once on
    a new lake (workers started together) must not collide on its tables."""
    import subprocess
    import sys
    import time
    import uuid

    db = f"ducklake:postgres:{postgres.create_database(f'new_{uuid.uuid4().hex[:8]}')}"
    go = tmp_path / "go"
    script = ("import os, sys, time; from warehouse.lake import connect_lake; from warehouse.target import parse_target\n"
              "while not os.path.exists(sys.argv[3]): time.sleep(0.001)\n"  # all at once, imports done
              "with connect_lake(parse_target(sys.argv[1], sys.argv[2])) as con:\n"
              "    print(con.execute('SELECT count(*) FROM runs').fetchone()[0])\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, db, str(tmp_path / "data"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(3)
    go.touch()
    results = [(p.wait(timeout=120), p.stdout.read().strip(), p.stderr.read()[-2000:]) for p in procs]
    assert [(code, out) for code, out, _ in results] == [(0, "0")] * 4, results


def test_a_change_to_the_lakes_tables_raises_the_lake_version():
    """A lake at LAKE_VERSION is not upgraded again: a migration that changes
    a lake or keyed table without raising LAKE_VERSION would leave every
    existing lake without its columns (the run then fails at its first
    write of one). The digest of the tables is pinned to the version."""
    from warehouse.lake import LAKE_DIGEST, LAKE_VERSION, lake_digest

    assert lake_digest() == LAKE_DIGEST, (
        f"the lake's tables changed: raise LAKE_VERSION in warehouse/lake.py to {LAKE_VERSION + 1} and set "
        f"LAKE_DIGEST = {lake_digest()!r} (a lake at the old version then gets the new columns when opened)")


def test_parse_lake_refuses_a_file():
    from warehouse.target import BadTarget, LakeTarget, parse_lake

    lake = parse_lake("ducklake:postgres:dbname=news host=127.0.0.1")
    assert isinstance(lake, LakeTarget) and lake.dsn == "dbname=news host=127.0.0.1"
    with pytest.raises(BadTarget, match="not a lake"):
        parse_lake("newsdesk.duckdb")
