"""`newsdesk maintain` on a real lake (PostgreSQL from tests/postgres.py):
100 small runs through the real load path leave a bounded number of files
per table, every table reads the same rows before and after, snapshots
within the retention stay readable with --as-of, older ones are expired,
and only one maintenance runs at a time. On a DuckDB file: a CHECKPOINT."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.transforms.test_articles import entry
from transforms.articles import build_article
from transforms.dedupe import sighting
from transforms.records import BatchRows, Failure, FeedPoll, PollRows, RunCounts
from warehouse import article_rows, feed_registry, run_rows
from warehouse.connection import connect
from warehouse.lake import connect_lake, current_snapshot
from warehouse.maintenance import TABLES, MaintenanceRunning, hold_maintenance, maintain_lake, writing
from warehouse.target import parse_target

runner = CliRunner()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
# Files a table may keep after a maintenance, whatever the number of runs
# before it: one merged data file, and one left over while a rewrite of it
# is pending (measured: 1 for every table).
BOUND = 2


def _small_run(con, i: int, first: int) -> int:
    """One run as an ingest makes it, through the warehouse loads: the run's row
    (inserted, then updated when it finishes), a feed poll, a few articles
    with their sightings (12 every third run: Parquet; 2 otherwise: inlined
    in the catalog), a failure; every fifth run upgrades an earlier article
    to its page body (an UPDATE: a delete file). Returns the next article
    number."""
    run, at = f"run-{i}", NOW + timedelta(minutes=30 * i)
    run_rows.start_run(con, run, at, None)
    articles, sightings = [], []
    for n in range(first, first + (12 if i % 3 == 0 else 2)):
        e = entry(source="a", link=f"https://x.example/{n}", canonical_link=f"https://x.example/{n}",
                  guid=f"g{n}", title=f"Story {n}")
        article = build_article(e, None, page_problem="http_404", run_id=run, now=at)
        articles.append(article)
        sightings.append(sighting(e, article.article_id, run_id=run, now=at))
    upgrades = []
    if i % 5 == 4:
        e = entry(source="a", link=f"https://x.example/{first - 1}", canonical_link=f"https://x.example/{first - 1}",
                  guid=f"g{first - 1}", title=f"Story {first - 1}",
                  feed_text="The page body, fetched at last, is longer than the feed's summary. " * 5)
        upgrades.append(build_article(e, None, page_problem=None, run_id=run, now=at))
    failure = Failure(run_id=run, stage="fetch", url=f"https://x.example/gone/{i}", source="a", reason="http_404",
                      error="Not Found", at=at, transient=False, outcome="feed_fallback")
    feed_registry.record_polls(con, PollRows(polls=[
        FeedPoll(run_id=run, source="a", fetched_at=at, status=200, ok=True, not_modified=False, error=None,
                 entries=len(articles), new_entries=len(articles))]), run_id=run, at=at)
    article_rows.load_batch(con, BatchRows(articles=articles, sightings=sightings, failures=[failure], upgrades=upgrades), run_id=run)
    run_rows.finish_run(con, run, finished_at=at, status="completed", counts=RunCounts(articles_new=len(articles)))
    return first + len(articles)


def _contents(con, snapshot: int | None = None) -> dict[str, tuple[int, str]]:
    """Every lake table as (rows, checksum of its sorted rows)."""
    out = {}
    for table in TABLES:
        at = f" AT (VERSION => {snapshot})" if snapshot is not None else ""
        rows = sorted(map(repr, con.execute(f"SELECT * FROM lake.main.{table}{at}").fetchall()))
        out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16])
    return out


def _files_on_disk(data: Path) -> dict[str, int]:
    return {table: len(list((data / "main" / table).glob("*.parquet"))) for table in TABLES}


@pytest.mark.slow
def test_100_small_runs_leave_a_bounded_number_of_files_and_the_same_rows(lake):
    db, data = lake
    target = parse_target(db, data)
    n = 0
    with connect_lake(target) as con:
        for i in range(100):
            n = _small_run(con, i, n)
            if i == 9:
                early = current_snapshot(con)
                early_rows = _contents(con, early)
            if i % 25 != 24:
                continue
            before = _contents(con)
            files_before = _files_on_disk(data)
            done = maintain_lake(con, keep_days=30, grace=timedelta(0))
            assert _contents(con) == before  # the last snapshot reads the same rows
            assert before["articles"][0] == n and before["runs"][0] == i + 1
            assert max(done.files_after.values()) <= BOUND, done.files_after
            assert done.deleted and not done.expired  # every snapshot is younger than 30 days
        # Without maintenance the files grow with the runs: the bound is not met by itself.
        assert files_before["articles"] > 3 * BOUND
        # A snapshot within the retention reads what it read before the maintenances.
        assert _contents(con, early) == early_rows
    runs_then = runner.invoke(app, ["sql", "select count(*) as n, count(distinct status) as s from runs", "--db", db,
                                    "--as-of", str(early), "-f", "csv"])
    assert runs_then.exit_code == 0, runs_then.output
    assert runs_then.output.splitlines() == ["n,s", "10,1"]
    # On disk, the files older snapshots still read stay until those expire;
    # then the data folder holds what the last snapshot reads, and no more.
    with connect_lake(target) as con:
        last = _contents(con)
        done = maintain_lake(con, keep_days=0, grace=timedelta(0))
        assert done.expired and done.kept == 1
        assert _contents(con) == last
    assert max(_files_on_disk(data).values()) <= BOUND, _files_on_disk(data)
    assert sum(_files_on_disk(data).values()) == sum(done.files_after.values())


def _lake_with_runs(db, data, runs: int) -> list[int]:
    """A lake after `runs` small runs; the snapshot after each."""
    snapshots, n = [], 0
    with connect_lake(parse_target(db, data)) as con:
        for i in range(runs):
            n = _small_run(con, i, n)
            snapshots.append(current_snapshot(con))
    return snapshots


def _age(db: str, snapshots: int, days: int) -> None:
    """Make the first `snapshots` snapshots `days` older in the catalog:
    time passing, without waiting for it."""
    with psycopg.connect(parse_target(db).dsn, autocommit=True) as pg:
        pg.execute("UPDATE ducklake_snapshot SET snapshot_time = snapshot_time - make_interval(days => %s) "
                   "WHERE snapshot_id <= %s", [days, snapshots])


@pytest.mark.slow
def test_maintain_expires_snapshots_past_the_retention_and_prints_what_it_did(lake):
    db, data = lake
    snapshots = _lake_with_runs(db, data, 6)
    _age(db, snapshots[2], 40)  # the first three runs' snapshots are 40 days old
    with connect_lake(parse_target(db)) as con:
        now_rows = _contents(con)
        kept_rows = _contents(con, snapshots[3])
    result = runner.invoke(app, ["maintain", "--db", db, "--keep-days", "30"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"maintained {db}:\n")
    assert "    runs: 0 -> 1 (12 inlined rows flushed)" in out  # 6 inserts + 6 updated versions
    assert f" expired: {snapshots[2] + 1} (ids 0-{snapshots[2]}); kept: " in out
    assert "files deleted: 0 no longer referenced, 0 orphaned; " in out  # the 24 h grace: left for later
    with connect_lake(parse_target(db)) as con:
        assert _contents(con) == now_rows
        assert con.execute("SELECT min(snapshot_id) FROM lake.snapshots()").fetchone()[0] == snapshots[2] + 1
        assert con.execute("SELECT count(*) FROM ducklake_cleanup_old_files('lake', dry_run => true, "
                           "cleanup_all => true)").fetchone()[0] > 0
    # Within the retention: readable as before; past it: gone.
    with connect_lake(parse_target(db), as_of=snapshots[3]) as con:
        assert _contents(con) == {t: kept_rows[t] for t in TABLES}
    gone = runner.invoke(app, ["sql", "select count(*) from runs", "--db", db, "--as-of", str(snapshots[1])])
    assert gone.exit_code == 2, gone.output
    assert f"the lake has no snapshot {snapshots[1]}: it keeps snapshots {snapshots[2] + 1} to " in gone.output
    # With no grace, the files the first maintenance replaced go.
    again = runner.invoke(app, ["maintain", "--db", db, "--grace-hours", "0"])
    assert again.exit_code == 0, again.output
    assert "files deleted: 0 no longer" not in again.output and "; 0 unreferenced for less than 0 h" in again.output


def test_keep_days_comes_from_the_sources_file(lake, tmp_path):
    db, data = lake
    snapshots = _lake_with_runs(db, data, 2)
    _age(db, snapshots[0], 3)
    sources = tmp_path / "s.toml"
    sources.write_text('[[feeds]]\nname = "a"\nurl = "https://x.example/feed"\n\n[maintenance]\nkeep_days = 2\n')
    result = runner.invoke(app, ["maintain", "--db", db, "--sources", str(sources)])
    assert result.exit_code == 0, result.output
    assert f" expired: {snapshots[0] + 1} (ids 0-{snapshots[0]}); " in result.output
    sources.write_text('[[feeds]]\nname = "a"\nurl = "https://x.example/feed"\n\n[maintenance]\nkeep_days = -1\n')
    bad = runner.invoke(app, ["maintain", "--db", db, "--sources", str(sources)])
    assert bad.exit_code == 2 and "maintenance.keep_days" in bad.output


def test_a_second_maintenance_of_a_lake_exits_at_once(lake):
    db, data = lake
    _lake_with_runs(db, data, 1)
    with hold_maintenance(parse_target(db).dsn):  # as a maintenance in another process holds it
        busy = runner.invoke(app, ["maintain", "--db", db])
    assert busy.exit_code == 1
    assert "another `newsdesk maintain` is running on this lake" in busy.output
    assert runner.invoke(app, ["maintain", "--db", db]).exit_code == 0  # the lock went with its holder


def test_maintain_on_a_file_checkpoints_it(tmp_path):
    db = tmp_path / "wh.duckdb"
    missing = runner.invoke(app, ["maintain", "--db", str(db)])
    assert missing.exit_code == 2 and "no warehouse at" in missing.output
    with connect(db) as con:
        run_rows.start_run(con, "r", NOW, None)
    result = runner.invoke(app, ["maintain", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"checkpointed {db}: a DuckDB file keeps no snapshots")
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


@pytest.mark.slow
def test_maintenance_beside_a_writer_loses_nothing(lake):
    """Runs commit while maintenances run: each waits for the other (the
    `writing` lock), and every row is there once. Without that lock an
    upgrade committed during a flush came back twice (old and new version of
    the article); without the grace period the writer read a file a
    maintenance had just deleted ("Cannot open file ... No such file or
    directory")."""
    import threading

    db, data = lake
    _lake_with_runs(db, data, 3)
    errors: list[BaseException] = []
    written = {}

    def writer() -> None:
        try:
            with connect_lake(parse_target(db)) as con:
                n = 1000
                for i in range(3, 30):
                    with writing(parse_target(db).dsn):  # as an ingest run holds it
                        n = _small_run(con, i, n)
                written["articles"] = n - 1000
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    maintained = 0
    with connect_lake(parse_target(db)) as con:
        while thread.is_alive() or not maintained:
            maintain_lake(con, keep_days=30, grace=timedelta(hours=24))
            maintained += 1
    thread.join()
    assert errors == []
    with connect_lake(parse_target(db)) as con:
        doubled = con.execute("SELECT article_id, count(*) FROM articles GROUP BY ALL HAVING count(*) > 1").fetchall()
        assert doubled == [], (doubled, con.execute(
            "SELECT load_id, count(*) FROM lake_loads GROUP BY ALL HAVING count(*) > 1").fetchall(),
            con.execute("SELECT run_id, count(*) FROM runs GROUP BY ALL HAVING count(*) > 1").fetchall(),
            con.execute("SELECT run_id, count(*) FROM feed_polls GROUP BY ALL HAVING count(*) > 1").fetchall(),
            con.execute("SELECT run_id, article_id FROM articles WHERE article_id = ?", [doubled[0][0]]).fetchall())
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0] == 30
        assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 12 + 2 * 2 + written["articles"]
        done = maintain_lake(con, keep_days=30, grace=timedelta(hours=24))
    assert maintained >= 2 and max(done.files_after.values()) <= BOUND


def test_a_maintenance_waits_for_a_running_writer(lake):
    db, data = lake
    _lake_with_runs(db, data, 1)
    with writing(parse_target(db).dsn):
        with pytest.raises(MaintenanceRunning, match="ingest runs kept writing to this lake for 0.5 s"):
            with hold_maintenance(parse_target(db).dsn, wait_s=0.5):
                pass
    with hold_maintenance(parse_target(db).dsn, wait_s=0.5):
        pass
