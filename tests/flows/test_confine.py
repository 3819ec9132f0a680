"""Run parameters under `newsdesk serve`: the paths a run started through the
Prefect API may use. The rule as plain calls first, then through a real
Prefect server's create_flow_run, as the UI's Custom run sends it."""

import os
import subprocess
import time

import pytest

from flows.confine import CONFINE_ENV, ParameterNotAllowed, check_run_paths, confine_runs
from tests.flows.helpers import query, serve_seeds, write_sources


@pytest.fixture
def rule(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFINE_ENV, raising=False)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    confine_runs(str(tmp_path / "s.toml"), str(tmp_path / "wh.duckdb"), [str(allowed)])
    yield tmp_path, allowed
    os.environ.pop(CONFINE_ENV, None)


def test_served_paths_and_allowed_directories_pass(rule):
    tmp_path, allowed = rule
    assert check_run_paths(None, None, None) == (str(tmp_path / "s.toml"), str(tmp_path / "wh.duckdb"))
    assert check_run_paths(str(tmp_path / "s.toml"), str(allowed / "new" / "x.duckdb"), [str(allowed / "a.warc.gz")]) \
        == (str(tmp_path / "s.toml"), str(allowed / "new" / "x.duckdb"))


@pytest.mark.parametrize("sources, db, warc, named", [
    ("/etc/passwd", None, None, "'sources'"),
    (None, "/any/new/dir/x.duckdb", None, "'db'"),
    (None, None, ["/etc/hosts"], "'from_warc'"),
    ("{allowed}/../s2.toml", None, None, "'sources'"),  # .. out of the allowed directory
])
def test_other_paths_fail_naming_the_parameter(rule, sources, db, warc, named):
    tmp_path, allowed = rule
    fill = (lambda v: v.format(allowed=allowed) if isinstance(v, str) else v)
    with pytest.raises(ParameterNotAllowed) as info:
        check_run_paths(fill(sources), fill(db), warc)
    assert named in str(info.value) and "--allow-dir" in str(info.value)


@pytest.mark.parametrize("sources, db, warc", [
    (None, "{allowed}", None),  # the allowed directory itself: its lock file would land beside it
    (None, "{allowed}/", None),
    (None, "{allowed}/.", None),
    (None, "{allowed}/sub", None),  # an existing directory inside
    ("{allowed}", None, None),
    (None, None, ["{allowed}"]),
])
def test_a_directory_is_never_a_file_path_inside(rule, sources, db, warc):
    tmp_path, allowed = rule
    (allowed / "sub").mkdir()
    fill = (lambda v: v.format(allowed=allowed) if isinstance(v, str) else v)
    with pytest.raises(ParameterNotAllowed) as info:
        check_run_paths(fill(sources), fill(db), [fill(w) for w in warc] if warc else None)
    named = "'db'" if db else "'sources'" if sources else "'from_warc'"
    assert named in str(info.value), str(info.value)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_refused_db_creates_nothing(rule):
    """The ingest flow as a UI run calls it: refused before the ingest lock
    (<db>.ingest.lock, beside the db) or anything else is created."""
    import asyncio

    from flows.ingest import ingest

    tmp_path, allowed = rule
    write_sources(tmp_path / "s.toml", [("f", (tmp_path / "feed.xml").as_uri())])  # fine: only the db is at stake
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ParameterNotAllowed):
        asyncio.run(ingest(db=str(allowed)))
    assert not (tmp_path / "allowed.ingest.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(allowed.iterdir()) == []


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_foreign_duckdb_file_inside_an_allowed_directory_is_left_unchanged(rule):
    """A UI run whose db is another program's DuckDB file (with a pending
    WAL) inside an allowed directory: refused before the lock, and the file
    is not opened for writing (which would replay the WAL into it)."""
    import asyncio
    import subprocess
    import sys

    from flows.ingest import ingest
    from warehouse.schema import NotAWarehouse

    tmp_path, allowed = rule
    write_sources(tmp_path / "s.toml", [("f", (tmp_path / "feed.xml").as_uri())])
    theirs = allowed / "theirs.duckdb"
    subprocess.run([sys.executable, "-c", (
        "import duckdb, os, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "con.execute('CREATE TABLE articles (id INTEGER)')\n"
        "con.execute('CHECKPOINT')\n"
        "con.execute(\"SET checkpoint_threshold = '10GB'\")\n"
        "con.execute('INSERT INTO articles VALUES (1)')\n"
        "os._exit(0)\n"), str(theirs)], check=True)
    files = {p.name: p.read_bytes() for p in allowed.iterdir()}
    assert set(files) == {"theirs.duckdb", "theirs.duckdb.wal"}
    with pytest.raises(NotAWarehouse):
        asyncio.run(ingest(db=str(theirs)))
    assert {p.name: p.read_bytes() for p in allowed.iterdir()} == files


def test_a_symlink_out_of_an_allowed_directory_is_judged_by_its_target(rule):
    tmp_path, allowed = rule
    (allowed / "passwd.toml").symlink_to("/etc/passwd")
    with pytest.raises(ParameterNotAllowed):
        check_run_paths(str(allowed / "passwd.toml"), None, None)


def test_outside_serve_nothing_is_confined(monkeypatch):
    monkeypatch.delenv(CONFINE_ENV, raising=False)
    assert check_run_paths("/etc/passwd", "/x/y.duckdb", ["/z"]) == ("/etc/passwd", "/x/y.duckdb")


@pytest.mark.slow
@pytest.mark.server
def test_api_runs_are_confined_to_the_served_paths(prefect_server, server, tmp_path):
    from tests.flows.test_deployment import NEWSDESK, TEST_CRON, PatientClient, trigger, wait

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    sources = write_sources(tmp_path / "s.toml", serve_seeds(server))
    sources.write_text(sources.read_text() + f'\n[schedule]\ncron = "{TEST_CRON}"\n')
    db = tmp_path / "wh.duckdb"
    (allowed / "passwd.toml").symlink_to("/etc/passwd")
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(NEWSDESK), "serve", "--sources", str(sources), "--db", str(db),
                             "--allow-dir", str(allowed)],
                            env=prefect_server.client_env, stdout=log, stderr=subprocess.STDOUT)
    api = PatientClient(base_url=prefect_server.api, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            resp = api.get("/deployments/name/ingest/newsdesk")
            if resp.status_code == 200 and resp.json()["parameters"].get("db") == str(db.resolve()):
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("the deployment never appeared: " + (tmp_path / "serve.log").read_text()[-3000:])
        deployment = resp.json()
        assert deployment["parameters"]["sources"] == str(sources.resolve())

        # Each refusal is one flow run (~15 s): the rule itself is tested as plain
        # calls above; through the API, one refusal per way a path can escape.
        refused = {
            "db": {"db": str(tmp_path / "elsewhere" / "new" / "x.duckdb"), "from_warc": None},
            "db-is-the-allowed-dir": {"db": str(allowed)},
        }
        ids = {name: trigger(api, deployment["id"], params) for name, params in refused.items()}
        ids["symlink"] = trigger(api, deployment["id"], {"sources": str(allowed / "passwd.toml")})
        good = trigger(api, deployment["id"], {"db": str(allowed / "sub" / "x.duckdb"), "feeds": ["world-desk"]})
        for name, run_id in ids.items():
            run = wait(api, run_id)
            assert run["state"]["type"] == "FAILED", (name, run["state"])
            named = {"symlink": "sources", "db-is-the-allowed-dir": "db"}.get(name, name)
            assert f"parameter '{named}'" in run["state"]["message"], run["state"]["message"]
        assert wait(api, good)["state"]["type"] == "COMPLETED"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        api.close()
    assert not (tmp_path / "elsewhere").exists()  # refused before anything was created
    assert not (tmp_path / "allowed.ingest.lock").exists()  # not even the lock beside the allowed directory
    assert not db.exists()  # no run touched the served warehouse either
    assert query(allowed / "sub" / "x.duckdb", "SELECT DISTINCT source FROM articles") == [("world-desk",)]


def test_a_served_lake_is_the_only_lake_a_run_may_use(tmp_path, monkeypatch):
    """A lake's name reaches a PostgreSQL server: a run may not name another."""
    monkeypatch.setenv(CONFINE_ENV, "")  # restored (removed) after the test: confine_runs sets it
    served = "ducklake:postgres:dbname=news host=127.0.0.1 user=newsdesk"
    (tmp_path / "allowed").mkdir()
    sources = tmp_path / "s.toml"
    sources.write_text("")
    confine_runs(str(sources), served, [tmp_path / "allowed"])
    assert check_run_paths(None, None, None) == (str(sources.resolve()), served)
    assert check_run_paths(None, served, None)[1] == served
    for other in ("ducklake:postgres:dbname=news host=10.0.0.1 user=newsdesk",
                  "ducklake:postgres:dbname=other host=127.0.0.1 user=newsdesk"):
        with pytest.raises(ParameterNotAllowed, match="lake"):
            check_run_paths(None, other, None)
    # A file inside an allowed directory is still a file the operator allowed.
    inside = tmp_path / "allowed" / "w.duckdb"
    assert check_run_paths(None, str(inside), None)[1] == str(inside.resolve())
