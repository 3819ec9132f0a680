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


# -- paths that cannot hold a warehouse or a sources file --------------------

DB_COMMANDS = ["ingest", "sql", "search", "runs", "export", "reextract", "reindex", "serve"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _run_all(commands: dict[str, list[str]], tmp: Path, timeout: float = 120,
             limit_memory: bool = False) -> dict[str, subprocess.CompletedProcess | None]:
    """Run the commands side by side as real processes (an old `serve` would
    serve, an old read of a FIFO would block): None for one that did not
    end within `timeout`; it is killed with everything it started."""
    import signal
    import time

    def child():
        os.setsid()  # its own process group: a timeout kills Prefect's server with it
        if limit_memory:  # a command that reads /dev/zero must not take the machine's memory
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    procs = {}
    for name, args in commands.items():
        with open(tmp / f"{name}.out", "w") as out, open(tmp / f"{name}.err", "w") as errs:
            procs[name] = subprocess.Popen([str(NEWSDESK), *args], env=_env(tmp), stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=errs, preexec_fn=child)
    deadline = time.monotonic() + timeout
    done: dict[str, subprocess.CompletedProcess | None] = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, (tmp / f"{name}.out").read_text(),
                                                     (tmp / f"{name}.err").read_text())
        except subprocess.TimeoutExpired:
            done[name] = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running (nothing, when it ended well)
            except ProcessLookupError:
                pass
            proc.wait()
    return done


def _db_commands(db: Path, tmp: Path) -> dict[str, list[str]]:
    return {**_commands(db, tmp), "ingest": ["ingest", "--db", str(db)], "reindex": ["reindex", "--db", str(db)],
            "serve": ["serve", "--db", str(db)]}


@pytest.mark.parametrize("kind", ["under-a-file", "proc", "fifo"])
def test_a_db_path_that_cannot_hold_a_warehouse_is_exit_2(tmp_path, kind):
    """A path under a regular file, a place where no file can be created,
    a FIFO: every command that takes --db says so in a line, exit 2; ingest
    and serve before Prefect starts, nothing blocks on the FIFO."""
    text = tmp_path / "text.txt"
    text.write_text("hello\n")
    if kind == "under-a-file":
        db = text / "x.duckdb"
    elif kind == "proc":
        db = Path("/proc/x.duckdb")
    else:
        db = tmp_path / "fifo.duckdb"
        os.mkfifo(db)
    commands = _db_commands(db, tmp_path)
    # As processes, what could block or start Prefect; the rest in this process.
    apart = DB_COMMANDS if kind == "fifo" else ["ingest", "serve"]
    results = _run_all({c: commands[c] for c in apart}, tmp_path)
    for command in DB_COMMANDS:
        if command in apart:
            run = results[command]
            assert run is not None, f"{command} did not end"
            code, output = run.returncode, run.stderr
        else:
            result = runner.invoke(app, commands[command])
            code, output = result.exit_code, result.output
        assert code == 2, (command, output[-2000:])
        assert "Traceback" not in output and str(db) in output, (command, output[-2000:])
        assert len(output.strip().splitlines()) <= 2, (command, output)
    assert not (tmp_path / "prefect").exists() or not any((tmp_path / "prefect").rglob("*.db"))  # no Prefect server
    assert not Path(str(db) + ".ingest.lock").exists()


SOURCES_COMMANDS = ["ingest", "reextract", "reindex", "serve"]


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/null", "directory"])
def test_a_sources_file_that_is_not_a_regular_file_is_refused_unread(tmp_path, kind):
    """Refused before it is read: a FIFO would block, /dev/zero fill the
    memory (as processes, with a memory limit, so that neither can hang or
    swamp the test run)."""
    if kind == "fifo":
        sources = tmp_path / "s.toml"
        os.mkfifo(sources)
    elif kind == "directory":
        sources = tmp_path
    else:
        sources = Path(kind)
    commands = {c: [c, "--sources", str(sources), "--db", str(tmp_path / "wh.duckdb")] for c in SOURCES_COMMANDS}
    if kind in ("fifo", "/dev/zero"):
        results = _run_all(commands, tmp_path, limit_memory=True)
    else:
        results = {c: None for c in commands}
    for command, args in commands.items():
        run = results[command]
        if run is None:
            assert kind not in ("fifo", "/dev/zero"), f"{command} did not end"
            result = runner.invoke(app, args)
            code, output = result.exit_code, result.output
        else:
            code, output = run.returncode, run.stderr
        assert code == 2, (command, output[-2000:])
        assert f"{sources}: not a regular file" in output and "Traceback" not in output, (command, output)


def test_a_sources_file_past_the_size_cap_is_refused(tmp_path):
    from flows.settings import MAX_SOURCES_BYTES

    big = tmp_path / "s.toml"
    line = "# " + "x" * 97 + "\n"
    big.write_text(line * (MAX_SOURCES_BYTES // len(line) + 1))
    for command in SOURCES_COMMANDS:
        result = runner.invoke(app, [command, "--sources", str(big), "--db", str(tmp_path / "wh.duckdb")])
        assert result.exit_code == 2, (command, result.output)
        assert f"{big}: larger than" in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("args, says", [
    (["ingest", "--nope"], "No such option: --nope"),
    (["sql"], "Missing argument 'query'"),
    (["runs", "--limit", "many"], "Invalid value for '--limit'"),
    (["export", "-f", "pdf", "-o", "x"], "Invalid value for '--format'"),
    (["nope"], "No such command 'nope'"),
])
def test_usage_errors_are_plain_lines(args, says):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert not set("╭│╰─") & set(result.output), result.output
    assert f"Error: {says}" in result.output and result.output.startswith("Usage: "), result.output


def _foreign(path: Path) -> Path:
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE articles (id INTEGER, headline VARCHAR)")
    con.execute("INSERT INTO articles VALUES (1, 'theirs')")
    con.close()
    return path


def test_a_foreign_duckdb_file_is_refused_unchanged(tmp_path):
    """A DuckDB file of another program, with an `articles` table of its
    own: not a warehouse (exit 2), and not touched: no schema_migrations."""
    foreign = _foreign(tmp_path / "theirs.duckdb")
    before = foreign.read_bytes()
    results = _run_all({c: [c, "--db", str(foreign)] for c in ("ingest", "serve", "reindex")}, tmp_path)
    for command, run in results.items():
        assert run is not None, f"{command} did not end"
        assert run.returncode == 2, (command, run.stderr[-2000:])
        assert "not a newsdesk warehouse" in run.stderr and "Traceback" not in run.stderr, (command, run.stderr)
    for args in (["runs"], ["search", "x"], ["export", "-f", "jsonl", "-o", str(tmp_path / "out")], ["reextract"]):
        result = runner.invoke(app, [*args, "--db", str(foreign)])
        assert result.exit_code == 2 and "not a newsdesk warehouse" in result.output, (args, result.output)
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("theirs")) == ["theirs.duckdb"]


def test_migrate_refuses_a_foreign_duckdb_file_unchanged_with_its_wal(tmp_path):
    """migrate looks at the file read-only before it takes the lock or opens
    it for writing: a writable open would replay another program's pending
    WAL into its file (and leave our lock file beside it)."""
    script = (
        "import duckdb, os, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "con.execute('CREATE TABLE articles (id INTEGER, headline VARCHAR)')\n"
        "con.execute('CHECKPOINT')\n"
        "con.execute(\"SET checkpoint_threshold = '10GB'\")\n"
        "con.execute(\"INSERT INTO articles VALUES (1, 'theirs')\")\n"
        "os._exit(0)  # no checkpoint at close: the insert stays in the WAL\n"
    )
    foreign = tmp_path / "theirs.duckdb"
    subprocess.run([sys.executable, "-c", script, str(foreign)], check=True)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(files) == {"theirs.duckdb", "theirs.duckdb.wal"}
    result = runner.invoke(app, ["migrate", "--to", "ducklake:postgres:dbname=x host=127.0.0.1 port=1",
                                 "--data-path", str(tmp_path / "data"), "--db", str(foreign)])
    assert result.exit_code == 2 and "not a newsdesk warehouse" in result.output, result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
