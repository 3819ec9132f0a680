"""`newsdesk export` when it is killed, when the archive spans years, and when
the warehouse is missing. Warehouses are filled in SQL in tmp_path; kills are
real SIGKILLs of a real `newsdesk export` process, from outside (as soon as
the export has written its first Parquet file) or at a named crash point
(`NEWSDESK_KILL_AT`, flows/crashpoints.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from warehouse.connection import connect

NEWSDESK = Path(sys.executable).with_name("newsdesk")
runner = CliRunner()


def _fill(db: Path, articles: int, days: int, body_words: int) -> None:
    """`articles` articles spread evenly over `days` days from 2019-01-01,
    each body `body_words` distinct-ish words."""
    with connect(db) as con:
        con.execute(f"""
            INSERT INTO articles (article_id, url, source, published_at, published_date, date_source, body,
                                  body_source, word_count, content_hash, first_seen_at, run_id, extractor, story_id)
            SELECT substr(md5(i::VARCHAR), 1, 20), 'https://x.example/' || md5('u' || i), 'feed' || (i % 20), p,
                   p::DATE, 'feed', b, 'page', {body_words}, sha256(b), p + INTERVAL 1 HOUR, 'r', 'x',
                   substr(md5(i::VARCHAR), 1, 20)
            FROM (SELECT i, TIMESTAMPTZ '2019-01-01 00:00:00+00' + (i * {days * 86400} // {articles}) * INTERVAL 1 SECOND AS p,
                         array_to_string(list_transform(range({body_words}), x -> 'w' || hash(i, x) % 5000), ' ') AS b
                  FROM range({articles}) t(i))""")
        con.execute("CHECKPOINT")


def _warehouse_rows(db: Path) -> list[tuple]:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT url, content_hash, published_date FROM articles ORDER BY ALL").fetchall()


def _read_parquet(out: Path) -> list[tuple]:
    """The read docs/operations.md gives for a Parquet export."""
    return duckdb.sql(f"SELECT url, content_hash, published_date FROM read_parquet('{out}/**/*.parquet', "
                      "hive_partitioning = true) ORDER BY ALL").fetchall()


def _read_text(out: Path) -> list[str]:
    """A text export as a reader takes it: every out/YYYY-MM-DD/*.txt."""
    return sorted(p.read_text(encoding="utf-8") for p in out.glob("*/*.txt"))


def _staging_left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".export" in p.name or p.name.endswith(".old"))


def _env(kill_at: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDESK_")}
    return {**env, **({"NEWSDESK_KILL_AT": kill_at} if kill_at else {})}


def _export_cmd(fmt: str, out: Path, db: Path) -> list[str]:
    return [str(NEWSDESK), "export", "--format", fmt, "--out", str(out), "--db", str(db)]


def _kill_at_first_new_file(cmd: list[str], watch: Path, suffix: str, before: set[Path]) -> int:
    """Run `cmd` and SIGKILL it as soon as a `suffix` file that was not in
    `before` appears anywhere under `watch` (wherever the export stages)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            try:
                seen = any(p not in before for p in watch.rglob(f"*{suffix}"))
            except FileNotFoundError:  # a folder renamed or removed while listed
                seen = False
            if seen:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    # ~20 MB of bodies over 120 days: the export takes long enough to be killed mid-way.
    db = tmp_path_factory.mktemp("archive") / "wh.duckdb"
    _fill(db, articles=8_000, days=120, body_words=300)
    return db


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["first staged file", "export_written", "export_swapped:20"])
def test_a_killed_parquet_export_changes_nothing_a_reader_sees(archive, tmp_path, kill):
    out = tmp_path / "out"
    expected = _warehouse_rows(archive)
    first = subprocess.run(_export_cmd("parquet", out, archive), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    assert _read_parquet(out) == expected

    cmd = _export_cmd("parquet", out, archive)
    if kill == "first staged file":
        code = _kill_at_first_new_file(cmd, tmp_path, ".parquet", set(tmp_path.rglob("*.parquet")))
    else:
        code = subprocess.run(cmd, env=_env(kill), capture_output=True, timeout=300).returncode
    assert code == -signal.SIGKILL, "the export finished before it was killed"

    # Every day is the old one or the new one, whole; nothing staged is read.
    assert _read_parquet(out) == expected
    assert all(p.name.startswith("published_date=") for p in out.iterdir()), sorted(p.name for p in out.iterdir())

    # The next export clears what the killed one left.
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _staging_left(tmp_path) == []
    assert _read_parquet(out) == expected


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["export_written", "export_swapped:10"])
def test_a_killed_text_export_changes_nothing_a_reader_sees(archive, tmp_path, kill):
    out = tmp_path / "out"
    first = subprocess.run(_export_cmd("text", out, archive), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    before = _read_text(out)
    assert len(before) == len(_warehouse_rows(archive))

    killed = subprocess.run(_export_cmd("text", out, archive), env=_env(kill), capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert _read_text(out) == before
    assert _staging_left(out) == []

    again = subprocess.run(_export_cmd("text", out, archive), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert _staging_left(tmp_path) == [] and _read_text(out) == before


def test_parquet_export_of_an_archive_over_2000_days(tmp_path):
    """One open Parquet writer per day ran out of the readers' 1 GB at
    ~2,000 days; the export now writes a few days per COPY."""
    db = tmp_path / "wh.duckdb"
    _fill(db, articles=4_000, days=2_000, body_words=20)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "-f", "parquet", "-o", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "exported 4000 articles" in result.output
    assert _read_parquet(out) == _warehouse_rows(db)
    assert len(list(out.iterdir())) == len({row[2] for row in _warehouse_rows(db)})


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two renames"])
def test_a_re_export_of_some_days_replaces_those_days_only(tmp_path, monkeypatch, exchange):
    if not exchange:  # as where renameat2 is missing (not Linux, old glibc)
        import flows.exports

        monkeypatch.setattr(flows.exports, "_renameat2", None)
    db = tmp_path / "wh.duckdb"
    _fill(db, articles=600, days=60, body_words=20)
    out = tmp_path / "out"
    assert runner.invoke(app, ["export", "-f", "parquet", "-o", str(out), "--db", str(db)]).exit_code == 0
    kept = {p.name: sorted(f.name for f in p.iterdir()) for p in out.iterdir()}
    result = runner.invoke(app, ["export", "-f", "parquet", "-o", str(out), "--since", "2019-01-10",
                                 "--until", "2019-02-14", "--db", str(db)])
    assert result.exit_code == 0, result.output
    now = {p.name: sorted(f.name for f in p.iterdir()) for p in out.iterdir()}
    assert now.keys() == kept.keys()
    changed = {name for name in now if now[name] != kept[name]}
    assert changed == {f"published_date={d}" for _, _, d in _warehouse_rows(db)
                       if "2019-01-10" <= d.isoformat() <= "2019-02-14"}
    assert _read_parquet(out) == _warehouse_rows(db)
    assert _staging_left(tmp_path) == []


@pytest.mark.parametrize("fmt", ["parquet", "text", "jsonl"])
def test_export_from_a_missing_warehouse_fails_before_creating_out(tmp_path, fmt):
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "-f", fmt, "-o", str(out), "--db", str(tmp_path / "missing.duckdb")])
    assert result.exit_code == 2, result.output
    assert "no warehouse at" in result.output and "missing.duckdb" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
