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
a PostgreSQL advisory lock (`hold_maintenance`); and it does not overlap
ingest runs either, which hold a shared lock for their life (`writing`):
beside a writer, a flush lost an upgrade's delete. A step whose commit
still fails is rolled back and run again.

No Prefect, no files of our own: the lake's data files are DuckLake's.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import duckdb
import psycopg

from transforms.errors import NewsdeskError
from warehouse.lake import LAKE_TABLES
from warehouse.rows import one_row
from warehouse.twophase import keyed_dsn, retryable

# lake_loads too: it is written by every commit.
TABLES = (*LAKE_TABLES, "lake_loads")
# A file with any deleted row is rewritten (DuckLake's default is 0.95):
# merging skips files that have deletes, and every runs row is updated once.
# The rewrite keeps the deleted rows for snapshots that still see them.
REWRITE_DELETE_THRESHOLD = 0.0
_LOCK = "newsdesk maintain"
_WRITERS = "newsdesk lake writers"


class MaintenanceRunning(NewsdeskError):
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
def hold_maintenance(dsn: str, wait_s: float = 7200.0) -> Iterator[None]:
    """Hold the lake's maintenance lock for the block, or raise
    MaintenanceRunning at once; then wait (up to `wait_s`) for the lake's
    writers to finish their runs, and keep new ones waiting (`writing`)
    until the block ends. Both locks live in a PostgreSQL session, so they
    go with the process that holds them."""
    pg = psycopg.connect(dsn, autocommit=True)
    try:
        if not one_row(pg.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [_LOCK]))[0]:
            raise MaintenanceRunning("another `newsdesk maintain` is running on this lake (its PostgreSQL "
                                     "advisory lock is held); run this one when it has finished")
        pg.execute(f"SET lock_timeout = '{int(wait_s * 1000)}ms'")
        try:
            pg.execute("SELECT pg_advisory_lock(hashtext(%s))", [_WRITERS])
        except psycopg.errors.LockNotAvailable:
            raise MaintenanceRunning(f"ingest runs kept writing to this lake for {wait_s:g} s: "
                                     "maintenance waits for them and gave up") from None
        yield
        # Released here rather than left to the session's end, which
        # PostgreSQL processes after close() returns: the next holder would
        # find it still held.
        pg.execute("SELECT pg_advisory_unlock_all()")
    finally:
        pg.close()


@contextmanager
def writing(dsn: str) -> Iterator[None]:
    """Held by a lake writer for its run, shared with other writers: a
    maintenance waits for it, and it waits for a maintenance. DuckLake lost
    an UPDATE's delete when a flush or rewrite of the same rows committed
    meanwhile (the old and new article both read back, measured in
    tests/warehouse/test_maintenance.py), which its conflict check let by."""
    pg = psycopg.connect(dsn, autocommit=True)
    try:
        pg.execute("SELECT pg_advisory_lock_shared(hashtext(%s))", [_WRITERS])
        yield
        pg.execute("SELECT pg_advisory_unlock_all()")
    finally:
        pg.close()


def _files(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Data and delete files each table's current snapshot reads."""
    return {table: one_row(con.execute("SELECT count(*) + count(delete_file) FROM ducklake_list_files('lake', ?)",
                                       [table]))[0] for table in TABLES}


def _lost_race(exc: duckdb.Error) -> bool:
    return (isinstance(exc, duckdb.TransactionException) or retryable(exc)
            or "TransactionContext Error" in str(exc))


def _step(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None,
          attempts: int = 10) -> list[tuple[Any, ...]]:
    """One DuckLake maintenance function, in its own transaction; run again
    when its commit failed, which is a race lost to a writer: it starts over
    from the catalog as it is then, nothing of the failed try was kept.
    Beside a writer committing every ~100 ms (tests/warehouse/
    test_maintenance.py) these came up: "Transaction conflict - attempting
    to delete from table ... but another transaction has inserted into it"
    (a flush), "Failed to delete flushed inlined data ... Current transaction
    is aborted", and that transaction still open on the connection (hence
    the ROLLBACK). The waits grow to 2 s, with jitter, so that a flush finds
    a gap between a writer's commits."""
    for attempt in range(attempts):
        try:
            return con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # nothing was open
            if attempt == attempts - 1 or not _lost_race(exc):
                raise
            time.sleep(min(2.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.5))
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
        kept, oldest_id, oldest_at = one_row(con.execute(
            "SELECT count(*), min(snapshot_id), min(snapshot_time) FROM lake.snapshots()"))
        return LakeMaintenance(files_before=before, files_after=_files(con), inlined_rows=inlined,
                               expired=sorted(expired), expired_before=cut, kept=kept,
                               oldest_kept=(oldest_id, oldest_at), deleted=deleted, orphans=orphans,
                               waiting=waiting)


def checkpoint_file(con: duckdb.DuckDBPyConnection) -> None:
    """A DuckDB file keeps no snapshots and writes no small files: its
    maintenance is a CHECKPOINT (the write-ahead log into the file, freed
    blocks reused). Every writer's close does the same."""
    con.execute("CHECKPOINT")
