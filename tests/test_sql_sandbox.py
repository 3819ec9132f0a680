"""`newsdesk sql` under attack: what DuckDB would execute decides, not the
first keyword (EXPLAIN ANALYZE executes what it explains); reading an allowed
directory never grants writing it; no temp directory a statement can write
into; and every statement is bounded in time and result size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()

# Each is a write, an install or a setting hidden under EXPLAIN: all ran
# before (the first overwrote the warehouse with 8 bytes of CSV).
UNDER_EXPLAIN = [
    "EXPLAIN ANALYZE COPY (select 'pwned' as x) TO '{db}' (FORMAT csv)",
    "EXPLAIN ANALYZE COPY (select 'pwned' as x) TO '{dir}/w.csv' (FORMAT csv)",
    "explain analyse copy (select 1) to '{dir}/w.csv'",
    "/* a */ EXPLAIN /* b */ ANALYZE /* c */ COPY (select 1) TO '{dir}/w.csv'",
    "EXPLAIN (ANALYZE, FORMAT json) COPY (select 1) TO '{dir}/w.csv'",
    "EXPLAIN /* ( */ (ANALYZE /* ) */, FORMAT json) COPY (select 1) TO '{dir}/w.csv'",
    "EXPLAIN ANALYZE INSTALL httpfs",
    "EXPLAIN ANALYZE LOAD httpfs",
    "EXPLAIN ANALYZE SET threads = 1",
    "EXPLAIN ANALYZE CALL checkpoint()",
    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    "EXPLAIN ANALYZE DELETE FROM articles",
    "EXPLAIN ANALYZE INSERT INTO runs SELECT * FROM runs",
    "EXPLAIN COPY (select 1) TO '{dir}/w.csv'",
]


@pytest.fixture
def warehouse_dir(tmp_path):
    from warehouse.connection import connect

    db = tmp_path / "w.duckdb"
    with connect(db):
        pass
    (tmp_path / "keep.csv").write_text("a\n1\n")
    return tmp_path, db


def _state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("statement", UNDER_EXPLAIN)
def test_explain_runs_only_queries(warehouse_dir, statement, monkeypatch):
    tmp_path, db = warehouse_dir
    monkeypatch.chdir(tmp_path)
    before = _state(tmp_path)
    # --allow-read names the warehouse's own directory: the case that let a
    # statement overwrite the warehouse.
    result = runner.invoke(app, ["sql", statement.format(db=db, dir=tmp_path), "--db", str(db),
                                 "--allow-read", str(tmp_path)])
    assert result.exit_code == 2, result.output
    # Refused by the gate, before DuckDB runs anything (not by a failure on the way).
    assert "EXPLAIN runs only on a query" in result.output or "changes the connection" in result.output
    assert _state(tmp_path) == before
    count = runner.invoke(app, ["sql", "select count(*) as n from runs", "--db", str(db), "-f", "csv"])
    assert count.exit_code == 0 and count.output.splitlines() == ["n", "0"], count.output


@pytest.mark.parametrize("statement", [
    "EXPLAIN SELECT * FROM articles",
    "EXPLAIN ANALYZE SELECT count(*) FROM articles",
    "explain (format json) select 1",
    "EXPLAIN (ANALYZE, FORMAT json) SELECT 1",
    "/* why */ EXPLAIN ANALYZE /* this */ FROM articles",
    "EXPLAIN ANALYZE select * from read_csv('{dir}/keep.csv')",
])
def test_explain_of_a_query_still_runs(warehouse_dir, statement):
    tmp_path, db = warehouse_dir
    result = runner.invoke(app, ["sql", statement.format(dir=tmp_path), "--db", str(db),
                                 "--allow-read", str(tmp_path), "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("explain_key,explain_value")


def test_no_temp_directory_to_write_into(warehouse_dir, monkeypatch):
    """DuckDB allows its temp directory itself; it was `.tmp` under the
    working directory, which a statement could write and read back."""
    tmp_path, db = warehouse_dir
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "planted.csv").write_text("secret\n")
    write = runner.invoke(app, ["sql", "EXPLAIN ANALYZE COPY (select 1) TO '.tmp/pwn.csv'", "--db", str(db)])
    assert write.exit_code == 2 and not (tmp_path / ".tmp" / "pwn.csv").exists()
    read = runner.invoke(app, ["sql", "select * from read_text('.tmp/planted.csv')", "--db", str(db)])
    assert read.exit_code == 2, read.output
    setting = runner.invoke(app, ["sql", "select current_setting('temp_directory') as t", "--db", str(db), "-f", "csv"])
    spill = setting.output.splitlines()[1]
    assert not spill.startswith(str(tmp_path)) and spill != ".tmp"
    assert not Path(spill).exists()  # removed when the connection closed


def test_install_goes_nowhere_even_with_the_extension_folder_allowed(warehouse_dir, tmp_path_factory):
    tmp_path, db = warehouse_dir
    extensions = tmp_path_factory.mktemp("duckdb-home")
    before = _state(extensions)
    for statement in ("EXPLAIN ANALYZE INSTALL httpfs", "INSTALL httpfs", "FORCE INSTALL httpfs",
                      "EXPLAIN ANALYZE LOAD httpfs"):
        result = runner.invoke(app, ["sql", statement, "--db", str(db), "--allow-read", str(extensions)])
        assert result.exit_code == 2, (statement, result.output)
        # The gate's words, not a failed download: nothing was tried.
        assert "only read-only queries" in result.output or "EXPLAIN runs only on a query" in result.output
    assert _state(extensions) == before


def test_a_query_past_its_time_limit_is_stopped(warehouse_dir):
    tmp_path, db = warehouse_dir
    result = runner.invoke(app, ["sql", "select count(*) from range(10000000000000)", "--db", str(db),
                                 "--timeout", "1"])
    assert result.exit_code == 2
    assert "time limit of 1 s" in result.output and "--timeout" in result.output


def test_a_result_past_its_size_limits_is_refused(warehouse_dir):
    tmp_path, db = warehouse_dir
    rows = runner.invoke(app, ["sql", "select * from range(1001)", "--db", str(db), "--max-rows", "1000"])
    assert rows.exit_code == 2 and "more than 1,000 rows" in rows.output
    fits = runner.invoke(app, ["sql", "select * from range(1000)", "--db", str(db), "--max-rows", "1000", "-f", "csv"])
    assert fits.exit_code == 0 and len(fits.output.splitlines()) == 1001
    wide = runner.invoke(app, ["sql", "select repeat('x', 100000) from range(20)", "--db", str(db), "--max-mb", "1"])
    assert wide.exit_code == 2 and "more than 1 MB" in wide.output


def test_the_warehouse_survives_every_attempt(warehouse_dir):
    """After all of the above on one warehouse, it is still a warehouse."""
    tmp_path, db = warehouse_dir
    for statement in UNDER_EXPLAIN:
        runner.invoke(app, ["sql", statement.format(db=db, dir=tmp_path), "--db", str(db),
                            "--allow-read", str(tmp_path)])
    with db.open("rb") as f:
        assert f.read(12)[8:12] == b"DUCK"
    assert os.path.getsize(db) > 8


@pytest.mark.parametrize("statement", [
    "select * from enable_logging(storage='file', storage_path='{dir}/log.csv')",
    "select * from enable_profiling()",
    "SELECT * FROM Force_Checkpoint()",
])
def test_functions_that_change_the_connection_are_refused(warehouse_dir, statement):
    tmp_path, db = warehouse_dir
    result = runner.invoke(app, ["sql", statement.format(dir=tmp_path), "--db", str(db), "--allow-read", str(tmp_path)])
    assert result.exit_code == 2 and "not allowed here" in result.output, result.output


def test_a_string_naming_such_a_function_is_only_a_string(warehouse_dir):
    tmp_path, db = warehouse_dir
    result = runner.invoke(app, ["sql", "select 'enable_logging' as x", "--db", str(db), "-f", "csv"])
    assert result.exit_code == 0 and result.output.splitlines() == ["x", "enable_logging"]

