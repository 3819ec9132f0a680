"""The CLI's one error path, and `newsdesk sql` that writes nothing.

Every command meets a bad --db (a text file, a directory, a truncated
warehouse) and answers with a line and exit 2, never a traceback; error
messages are plain text, never rich markup."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

NEWSDESK = Path(sys.executable).with_name("newsdesk")
runner = CliRunner()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from warehouse.connection import connect

    path = tmp_path_factory.mktemp("wh") / "wh.duckdb"
    with connect(path):
        pass
    return path


@pytest.fixture(scope="module")
def bad_dbs(tmp_path_factory, warehouse):
    root = tmp_path_factory.mktemp("bad")
    text = root / "text.duckdb"
    text.write_text("hello, not a database\n")
    directory = root / "dir.duckdb"
    directory.mkdir()
    truncated = root / "truncated.duckdb"
    truncated.write_bytes(warehouse.read_bytes()[:5000])
    return {"text": text, "directory": directory, "truncated": truncated}


def _commands(db: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "sql": ["sql", "select 1", "--db", str(db)],
        "search": ["search", "anything", "--db", str(db)],
        "runs": ["runs", "--db", str(db)],
        "export": ["export", "-f", "jsonl", "-o", str(tmp / "out"), "--db", str(db)],
        "reextract": ["reextract", "--db", str(db)],
    }


@pytest.mark.parametrize("kind", ["text", "directory", "truncated"])
@pytest.mark.parametrize("command", ["sql", "search", "runs", "export", "reextract"])
def test_a_bad_db_is_one_line_and_exit_2(bad_dbs, tmp_path, kind, command):
    result = runner.invoke(app, _commands(bad_dbs[kind], tmp_path)[command])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(bad_dbs[kind]) in result.output
    assert len(result.output.strip().splitlines()) <= 2, result.output


@pytest.mark.parametrize("kind", ["text", "directory"])
def test_ingest_refuses_a_bad_db_before_starting(bad_dbs, tmp_path, kind):
    result = runner.invoke(app, ["ingest", "--db", str(bad_dbs[kind])])
    assert result.exit_code == 2, result.output
    assert "not a DuckDB warehouse" in result.output and "Traceback" not in result.output


def test_debug_shows_the_traceback(bad_dbs):
    result = runner.invoke(app, ["--debug", "runs", "--db", str(bad_dbs["text"])])
    assert result.exit_code == 2
    assert "Traceback" in result.output


@pytest.mark.parametrize("query", ["", "   ", ";", "/* nothing */"])
def test_empty_sql_is_bad_input(warehouse, query):
    result = runner.invoke(app, ["sql", query, "--db", str(warehouse)])
    assert result.exit_code == 2 and "no SQL statement" in result.output, result.output


def test_markup_in_a_query_or_a_value_is_shown_as_text(warehouse):
    result = runner.invoke(app, ["sql", "select [/x] from articles", "--db", str(warehouse)])
    assert result.exit_code == 2, result.output
    assert "[/x]" in result.output and "MarkupError" not in result.output
    result = runner.invoke(app, ["sql", "select '[fetch:http_404] [red]x[/red]' as \"[b]e[/b]\"", "--db", str(warehouse)])
    assert result.exit_code == 0, result.output
    assert "[fetch:http_404] [red]x[/red]" in result.output and "[b]e[/b]" in result.output


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x80\x81", b"[[feeds]]\nname = \"caf\xe9\"\n"])
def test_binary_sources_file_is_bad_input(tmp_path, content):
    bad = tmp_path / "s.toml"
    bad.write_bytes(content)
    for command in (["ingest"], ["reextract"], ["serve"]):
        result = runner.invoke(app, [*command, "--sources", str(bad), "--db", str(tmp_path / "x.duckdb")])
        assert result.exit_code == 2, (command, result.output)
        assert "not a UTF-8 text file" in result.output and "Traceback" not in result.output


def test_bad_dates_and_arguments_exit_2(warehouse):
    assert runner.invoke(app, ["search", "x", "--since", "yesterday", "--db", str(warehouse)]).exit_code == 2
    assert runner.invoke(app, ["runs", "--limit", "0", "--db", str(warehouse)]).exit_code == 2
    assert runner.invoke(app, ["nope"]).exit_code == 2


@pytest.mark.slow
def test_a_failed_run_is_exit_1_without_traceback(tmp_path):
    """A sources file that is fine but a warehouse that turns out truncated
    inside the run: the run fails, exit 1, one line."""
    from tests.flows.helpers import write_sources

    sources = write_sources(tmp_path / "s.toml", [("f", (tmp_path / "feed.xml").as_uri())])
    db = tmp_path / "wh.duckdb"
    from warehouse.connection import connect

    with connect(db):
        pass
    db.write_bytes(db.read_bytes()[:5000])  # the header survives, the rest does not
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    run = subprocess.run([str(NEWSDESK), "ingest", "--sources", str(sources), "--db", str(db), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "ingest failed" in run.stderr


# -- sql writes nothing ------------------------------------------------------

WRITES = [
    "COPY (select 1) TO '{dir}/out.csv'",
    "COPY articles TO '{dir}/out.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{dir}/exported'",
    "ATTACH '{dir}/other.duckdb' AS o",
    "ATTACH '{dir}/link.duckdb' AS y (READ_WRITE)",
    "INSTALL fts",
    "LOAD fts",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "RESET enable_external_access",
    "CREATE TEMP TABLE t AS SELECT 1",
    "DELETE FROM articles",
    "DROP TABLE articles",
    "CHECKPOINT",
    "select 1; drop table articles",
    "select * from read_csv('{dir}/data.csv')",
    "select * from glob('{dir}/*')",
]


@pytest.fixture
def sandbox(tmp_path):
    from warehouse.connection import connect

    db = tmp_path / "wh.duckdb"
    with connect(db):
        pass
    os.link(db, tmp_path / "link.duckdb")  # the same warehouse under another name
    other = tmp_path / "other.duckdb"
    with connect(other):
        pass
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    return tmp_path, db


@pytest.mark.parametrize("statement", WRITES)
def test_sql_can_write_nothing(sandbox, statement):
    tmp_path, db = sandbox
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    result = runner.invoke(app, ["sql", statement.format(dir=tmp_path), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    count = runner.invoke(app, ["sql", "select count(*) as n from duckdb_tables() where table_name = 'articles'",
                                "--db", str(db), "-f", "csv"])
    assert count.output.splitlines() == ["n", "1"]


def test_sql_reads_files_only_under_allow_read(sandbox):
    tmp_path, db = sandbox
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.csv").write_text("a,b\n1,2\n")
    query = f"select * from read_csv('{inside}/a.csv')"
    assert runner.invoke(app, ["sql", query, "--db", str(db)]).exit_code == 2
    ok = runner.invoke(app, ["sql", query, "--db", str(db), "--allow-read", str(inside), "-f", "csv"])
    assert ok.exit_code == 0 and ok.output.splitlines() == ["a,b", "1,2"], ok.output
    # Reading is all: no writing into the allowed directory, no reading beside it.
    copy = runner.invoke(app, ["sql", f"COPY (select 1) TO '{inside}/x.csv'", "--db", str(db), "--allow-read", str(inside)])
    assert copy.exit_code == 2 and not (inside / "x.csv").exists()
    beside = runner.invoke(app, ["sql", f"select * from read_csv('{tmp_path}/data.csv')", "--db", str(db),
                                 "--allow-read", str(inside)])
    assert beside.exit_code == 2
    up = runner.invoke(app, ["sql", f"select * from read_csv('{inside}/../data.csv')", "--db", str(db),
                             "--allow-read", str(inside)])
    assert up.exit_code == 2 and "Permission" in up.output


def test_sql_still_searches_and_describes(sandbox):
    tmp_path, db = sandbox
    from flows import search_index
    from warehouse.connection import connect

    with connect(db) as con:
        search_index.update(con, db)
    result = runner.invoke(app, ["sql", "select count(*) as n from search_hits", "--search", "anything",
                                 "--db", str(db), "-f", "csv"])
    assert result.exit_code == 0 and result.output.splitlines() == ["n", "0"], result.output
    assert runner.invoke(app, ["sql", "describe articles", "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["sql", "explain select * from articles", "--db", str(db)]).exit_code == 0
