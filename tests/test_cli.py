"""The README's main command, run as a user runs it, and the CLI's surface."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import seed_document

NEWSDESK = Path(sys.executable).with_name("newsdesk")


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


@pytest.mark.slow
def test_newsdesk_ingest_on_the_seeds_then_sql(tmp_path):
    """`newsdesk ingest` with no sources argument: the embedded seeds, offline,
    with Prefect starting its own temporary server."""
    env = _env(tmp_path)
    db = tmp_path / "newsdesk.duckdb"
    run = subprocess.run([str(NEWSDESK), "ingest", "--db", str(db)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "articles new: 15" in run.stdout
    assert "duplicates skipped: 1" in run.stdout

    out = subprocess.run([str(NEWSDESK), "sql", "select published_date, title, body from articles order by published_date",
                          "--db", str(db), "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 15
    assert [r["published_date"] for r in rows] == sorted(r["published_date"] for r in rows)
    date, body = seed_document()
    seed = [r for r in rows if r["published_date"] == date]
    assert len(seed) == 1 and seed[0]["body"].split() == body.split()

    # NEWSDESK_DB is honoured, and a rerun adds nothing.
    env["NEWSDESK_DB"] = str(db)
    again = subprocess.run([str(NEWSDESK), "ingest", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == ""
    count = subprocess.run([str(NEWSDESK), "sql", "select count(*) as n from articles", "--format", "csv"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert count.stdout.splitlines() == ["n", "15"]


runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["ingest"], ["sql"], ["search"], ["export"], ["reextract"], ["reindex"], ["serve"], ["runs"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    text = result.output.split("Options")[0]
    assert len(text.strip().splitlines()) >= 3  # a usage line and a description


def test_bad_sources_file_names_the_key(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[fetch]\ntimeout = 3\n\n[[feeds]]\nname = "x"\nurl = "gopher://x"\n')
    result = runner.invoke(app, ["ingest", "--sources", str(bad), "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2
    assert "fetch.timeout: unknown key" in result.output
    assert "feeds[0].url" in result.output


def test_bad_dedupe_settings_are_refused_with_the_key(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[stories]\nbands = 64\nshingles = 3\n\n[[feeds]]\nname = "x"\nurl = "https://x.example/f"\n')
    result = runner.invoke(app, ["ingest", "--sources", str(bad), "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2
    assert "stories.shingles: unknown key" in result.output
    bad.write_text('[dedupe]\nbands = 64\n\n[[feeds]]\nname = "x"\nurl = "https://x.example/f"\n')
    result = runner.invoke(app, ["ingest", "--sources", str(bad), "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2
    assert "dedupe: Value error, bands × rows = 192 exceeds num_perm = 128" in result.output


def test_sql_errors_are_reported(tmp_path):
    result = runner.invoke(app, ["sql", "select 1", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2 and "newsdesk ingest" in result.output
    from warehouse.connection import connect

    with connect(tmp_path / "wh.duckdb"):
        pass
    result = runner.invoke(app, ["sql", "select nope from articles", "--db", str(tmp_path / "wh.duckdb")])
    assert result.exit_code == 2 and "SQL error" in result.output
    result = runner.invoke(app, ["sql", "delete from articles", "--db", str(tmp_path / "wh.duckdb")])
    assert result.exit_code == 2 and "read-only" in result.output.lower()
    result = runner.invoke(app, ["sql", "select count(*) as n from articles", "--db", str(tmp_path / "wh.duckdb"), "-f", "csv"])
    assert result.exit_code == 0 and result.output.splitlines() == ["n", "0"]
