"""Maintenance of a warehouse: on a lake, DuckLake's own functions in the
order its CHECKPOINT runs them, each reported; on a DuckDB file, a
CHECKPOINT.

Every commit to a lake leaves something behind: rows of small inserts
inlined in the catalog's tables, a few small Parquet files, a delete file
for each batch of updates (a run's row when it finishes, an article's
upgrade), and a snapshot. A maintenance

1. flushes the inlined rows to Parquet (`ducklake_flush_inlined_data`),
2. expires the snapshots older than the retention
   (`ducklake_expire_snapshots`); `--as-of` reads any snapshot younger,
3. rewrites the files that have deleted rows (`ducklake_rewrite_data_files`),
   which merging skips: without it a table updated in place (`runs`) keeps
   one more file pair per maintenance,
4. merges small adjacent files (`ducklake_merge_adjacent_files`),
5. deletes the files no snapshot refers to any more
   (`ducklake_cleanup_old_files`) and files no commit ever recorded, left by
   a writer that died (`ducklake_delete_orphaned_files`), both only once
   they have been unreferenced (or written) for the grace period, since a
   query that started before the merge may still be reading them.

Rewriting and merging keep time travel: a snapshot within the retention
reads the same rows afterwards (measured: tests/warehouse/test_maintenance.py).
Two compactions of one table conflict whatever files they touch
(duckdb/ducklake#1452), so one maintenance runs at a time per lake, held by
a PostgreSQL advisory lock (`hold_maintenance`). A step that loses a race
with a writer's commit is run again; the writer's own retry covers the
other side (warehouse/twophase.py).

No Prefect, no files of our own: the lake's data files are DuckLake's.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import duckdb
import psycopg

from warehouse.lake import LAKE_TABLES
from warehouse.twophase import keyed_dsn, retryable

# lake_loads too: it is written by every commit.
TABLES = (*LAKE_TABLES, "lake_loads")
# A file with any deleted row is rewritten (DuckLake's default is 0.95):
# merging skips files that have deletes, and every runs row is updated once.
# The rewrite keeps the deleted rows for snapshots that still see them.
REWRITE_DELETE_THRESHOLD = 0.0
_LOCK = "newsdesk maintain"


class MaintenanceRunning(RuntimeError):
    """Another maintenance holds the lake's lock."""


@dataclass(frozen=True)
class LakeMaintenance:
    """What one maintenance of a lake did."""

    files_before: dict[str, int]                   # per table: Parquet files the current snapshot reads
    files_after: dict[str, int]
    inlined_rows: dict[str, int]                   # per table: rows flushed from the catalog to Parquet
    expired: list[int]                             # snapshot ids
    expired_before: datetime                       # the retention's cut
    kept: int                                      # snapshots left
    oldest_kept: tuple[int, datetime]
    deleted: list[str] = field(default_factory=list)    # files no snapshot needed
    orphans: list[str] = field(default_factory=list)    # files no commit recorded
    waiting: int = 0                               # unreferenced, younger than the grace period


@contextmanager
def hold_maintenance(dsn: str) -> Iterator[None]:
    """Hold the lake's maintenance lock for the block, or raise
    MaintenanceRunning at once. The lock lives in the catalog's PostgreSQL
    session, so it dies with the process that holds it."""
    pg = psycopg.connect(dsn, autocommit=True)
    try:
        if not pg.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [_LOCK]).fetchone()[0]:
            raise MaintenanceRunning("another `newsdesk maintain` is running on this lake (its PostgreSQL "
                                     "advisory lock is held); run this one when it has finished")
        yield
    finally:
        pg.close()


def _files(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Data and delete files each table's current snapshot reads."""
    return {table: con.execute("SELECT count(*) + count(delete_file) FROM ducklake_list_files('lake', ?)",
                               [table]).fetchone()[0] for table in TABLES}


def _step(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None, attempts: int = 5) -> list[tuple]:
    """One DuckLake maintenance function, in its own transaction; run again
    when it lost a race with a writer's commit (it starts over from the
    catalog as it is then)."""
    for attempt in range(attempts):
        try:
            return con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            if attempt == attempts - 1 or not retryable(exc):
                raise
            time.sleep(0.2 * 2 ** attempt)
    return []


def _ago(span: timedelta) -> datetime:
    return datetime.now(timezone.utc) - span


def maintain_lake(con: duckdb.DuckDBPyConnection, *, keep_days: int, grace: timedelta,
                  on_step: Callable[[str], None] | None = None) -> LakeMaintenance:
    """Maintain the lake attached to `con` as `lake` (warehouse.lake.attach),
    holding its maintenance lock. Snapshots older than `keep_days` days are
    expired; files unreferenced (or, for orphans, written) longer than
    `grace` ago are deleted, those this run replaced too when it is 0."""
    say = on_step or (lambda _: None)
    with hold_maintenance(keyed_dsn(con)):
        before = _files(con)
        say("flushing inlined rows")
        inlined = {table: rows for _, table, rows in _step(
            con, "SELECT * FROM ducklake_flush_inlined_data('lake')") if rows}
        cut = _ago(timedelta(days=keep_days))
        say("expiring snapshots")
        expired = [row[0] for row in _step(
            con, "SELECT * FROM ducklake_expire_snapshots('lake', older_than => ?)", [cut])]
        say("rewriting files with deleted rows")
        _step(con, "SELECT * FROM ducklake_rewrite_data_files('lake', delete_threshold => ?)",
              [REWRITE_DELETE_THRESHOLD])
        say("merging small files")
        _step(con, "SELECT * FROM ducklake_merge_adjacent_files('lake')")
        say("deleting unreferenced files")
        deleted = [row[0] for row in _step(
            con, "SELECT * FROM ducklake_cleanup_old_files('lake', older_than => ?)", [_ago(grace)])]
        orphans = [row[0] for row in _step(
            con, "SELECT * FROM ducklake_delete_orphaned_files('lake', older_than => ?)", [_ago(grace)])]
        waiting = len(_step(con, "SELECT * FROM ducklake_cleanup_old_files('lake', dry_run => true, "
                                 "cleanup_all => true)"))
        kept, oldest_id, oldest_at = con.execute(
            "SELECT count(*), min(snapshot_id), min(snapshot_time) FROM lake.snapshots()").fetchone()
        return LakeMaintenance(files_before=before, files_after=_files(con), inlined_rows=inlined,
                               expired=sorted(expired), expired_before=cut, kept=kept,
                               oldest_kept=(oldest_id, oldest_at), deleted=deleted, orphans=orphans,
                               waiting=waiting)


def checkpoint_file(con: duckdb.DuckDBPyConnection) -> None:
    """A DuckDB file keeps no snapshots and writes no small files: its
    maintenance is a CHECKPOINT (the write-ahead log into the file, freed
    blocks reused). Every writer's close does the same."""
    con.execute("CHECKPOINT")
