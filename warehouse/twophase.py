"""How a unit of work reaches a lake whole: keyed state and bulk commit in
two transactions (DuckDB writes one attached database per transaction), and
nothing is lost or doubled if the writer dies between them.

1. One PostgreSQL transaction: the keyed changes (claims on article keys,
   sightings, the outbox, page attempts, band keys) and, beside them, the
   bulk rows of the same unit staged as Arrow IPC in `staged_loads`.
2. One lake transaction: the bulk rows, and a `lake_loads` row with the
   unit's id in the same snapshot.
3. The staged rows are deleted.

A writer killed after 1 left a staged unit whose id is not in `lake_loads`:
`replay_staged` (every lake run starts with it) applies it from the staged
rows, exactly once; killed after 2, it finds the id and only deletes the
stage. Units of a run that is still alive (its PostgreSQL advisory lock is
held, `hold_run`) are left to that run.
"""

from __future__ import annotations

import io
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, Sequence

import duckdb
import psycopg
import pyarrow as pa

from transforms.errors import NewsdeskError
from warehouse.lake import KEYED_SCHEMA
from warehouse.rows import one_row
from warehouse.scopes import registered, transaction

STAGED = f"keys.{KEYED_SCHEMA}.staged_loads"


class WriteConflict(NewsdeskError):
    """Another writer changed what this unit was about to change: the
    caller works the unit out again and retries it."""


# PostgreSQL under DuckDB's REPEATABLE READ, and DuckLake's commit check,
# report a concurrent change with these words. DuckDB's ON CONFLICT on a
# PostgreSQL table is checked against DuckDB's own snapshot, then the rows
# are COPYed: a key another writer committed meanwhile is a unique violation.
_CONFLICT_WORDS = ("could not serialize access", "deadlock detected", "Transaction conflict",
                   "conflict on tuple", "concurrent update", "duplicate key value violates unique constraint")


def retryable(exc: BaseException) -> bool:
    """Whether a failed unit of work lost a race with another writer (and
    will go through when worked out again), rather than failed."""
    if isinstance(exc, WriteConflict):
        return True
    return isinstance(exc, duckdb.Error) and any(word in str(exc) for word in _CONFLICT_WORDS)


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `con` is a lake connection (warehouse.lake.attach)."""
    return bool(one_row(con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = 'keys'"))[0])


def keyed_dsn(con: duckdb.DuckDBPyConnection) -> str:
    dsn: str = one_row(con.execute("SELECT path FROM duckdb_databases() WHERE database_name = 'keys'"))[0]
    return dsn


def _to_ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(bytes(data)).read_all()


# How each part of a unit is applied to the lake. Parts are Arrow tables
# named for what they do; every application is plain SQL over the part
# registered as `_part`.
def _append(table: str) -> Callable[[duckdb.DuckDBPyConnection, pa.Table], None]:
    def apply(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        columns = ", ".join(f'"{n}"' for n in rows.schema.names)
        with registered(con, "_part", rows):
            con.execute(f"INSERT INTO lake.main.{table} ({columns}) SELECT {columns} FROM _part")
    return apply


def _replace_fingerprints(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    with registered(con, "_part", rows):
        con.execute("DELETE FROM lake.main.article_fingerprints WHERE article_id IN (SELECT article_id FROM _part)")
        con.execute("INSERT INTO lake.main.article_fingerprints (article_id, scheme, shingles, signature) "
                    "SELECT article_id, scheme, shingles, signature FROM _part")


def _keep_revisions(con: duckdb.DuckDBPyConnection, reason: str, changed: str) -> None:
    """The stored version of each article in `_part` (as `u`) that is about
    to be replaced, where `changed` (over `a`, the stored, and `u`) holds."""
    from warehouse.article_rows import REVISION_COLUMNS, columns_of  # article_rows imports this module

    con.execute(f"""
        INSERT INTO lake.main.article_revisions (article_id, revised_at, reason, {REVISION_COLUMNS})
        SELECT a.article_id, now(), '{reason}', {columns_of("a", REVISION_COLUMNS)}
        FROM lake.main.articles a JOIN _part u USING (article_id)
        WHERE {changed}""")


def _upgrade(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """The page body replaces a feed-text body (see warehouse.article_rows._upgrade,
    the file's version): the old version is kept as a revision."""
    from warehouse.article_rows import UPGRADE_SET  # article_rows imports this module

    with registered(con, "_part", rows):
        _keep_revisions(con, "upgrade", "a.body_source = 'feed' AND a.content_hash <> u.content_hash")
        con.execute(f"""
            UPDATE lake.main.articles SET {UPGRADE_SET}
            FROM _part AS u
            WHERE articles.article_id = u.article_id AND articles.body_source = 'feed'""")


def _stories(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    with registered(con, "_part", rows):
        con.execute("""
            UPDATE lake.main.articles SET story_id = s.story_id, duplicate_of = s.duplicate_of,
                                          story_similarity = s.similarity
            FROM _part s WHERE articles.article_id = s.article_id AND articles.story_id IS NULL""")


def _reextract(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """What re-extraction decides replaces the stored (see
    warehouse.article_rows.apply_reextraction): a changed body is kept as a revision."""
    from warehouse.article_rows import REEXTRACT_SET  # article_rows imports this module

    with registered(con, "_part", rows):
        _keep_revisions(con, "reextract", "a.content_hash <> u.content_hash")
        con.execute(f"UPDATE lake.main.articles SET {REEXTRACT_SET} FROM _part r "
                    "WHERE articles.article_id = r.article_id")


APPLY: dict[str, Callable[[duckdb.DuckDBPyConnection, pa.Table], None]] = {
    "reextract": _reextract,
    "articles": _append("articles"),
    "failures": _append("failures"),
    "feed_polls": _append("feed_polls"),
    "fingerprints": _replace_fingerprints,
    "upgrades": _upgrade,
    "stories": _stories,
}
# Order matters: an upgrade's revision reads the article before it changes,
# stories update articles appended in the same unit.
_ORDER = ("articles", "upgrades", "reextract", "stories", "fingerprints", "failures", "feed_polls")


def _apply(con: duckdb.DuckDBPyConnection, load_id: str, kind: str, parts: dict[str, pa.Table],
           attempts: int = 5) -> bool:
    """The lake transaction of a unit; False when it was applied before.
    DuckLake retries a conflicting commit itself; past its retries the whole
    transaction is tried again (after checking it did not land)."""
    for attempt in range(attempts):
        try:
            with transaction(con):
                if one_row(con.execute("SELECT count(*) FROM lake.main.lake_loads WHERE load_id = ?", [load_id]))[0]:
                    return False
                for name in _ORDER:
                    if name in parts and parts[name].num_rows:
                        APPLY[name](con, parts[name])
                con.execute('INSERT INTO lake.main.lake_loads (load_id, kind, "at") VALUES (?, ?, ?)',
                            [load_id, kind, datetime.now(timezone.utc)])
            return True
        except duckdb.TransactionException:
            if attempt == attempts - 1:
                raise
    return False


def new_unit() -> str:
    return uuid.uuid4().hex


def commit_unit(con: duckdb.DuckDBPyConnection, *, kind: str, run_id: str,
                keyed: Callable[[], None], parts: Callable[[], dict[str, pa.Table]],
                before_keyed_commit: Callable[[], None] | None = None,
                between_commits: Callable[[], None] | None = None, load_id: str | None = None) -> str:
    """Commit one unit of work to a lake: `keyed` runs inside the PostgreSQL
    transaction (its statements write keys.* only), then `parts()` gives
    the lake's share (it may depend on what `keyed` found). Returns the
    unit's id (`load_id`, from `new_unit`, when `keyed` needs it)."""
    load_id = load_id or new_unit()
    with transaction(con):
        keyed()
        parts_now = {name: rows for name, rows in parts().items() if rows.num_rows}
        if parts_now:
            now = datetime.now(timezone.utc)
            for name, rows in parts_now.items():
                con.execute(f"INSERT INTO {STAGED} (load_id, part, kind, run_id, staged_at, rows) "
                            "VALUES (?, ?, ?, ?, ?, ?)", [load_id, name, kind, run_id, now, _to_ipc(rows)])
        if before_keyed_commit is not None:
            before_keyed_commit()
    if not parts_now:
        return load_id
    if between_commits is not None:
        between_commits()
    _apply(con, load_id, kind, parts_now)
    con.execute(f"DELETE FROM {STAGED} WHERE load_id = ?", [load_id])
    return load_id


@contextmanager
def hold_run(dsn: str, run_id: str) -> Iterator[None]:
    """Hold the run's advisory lock for as long as the block runs: other
    writers see the run as alive. The lock goes with the process (its
    connection), so a killed run's lock is free at once."""
    pg = psycopg.connect(dsn, autocommit=True)
    try:
        pg.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"newsdesk run {run_id}"])
        yield
    finally:
        pg.close()


def alive(dsn: str, run_ids: Sequence[str]) -> set[str]:
    """Which of these runs hold their lock (are running in some process)."""
    live = set()
    with psycopg.connect(dsn, autocommit=True) as pg:
        for run_id in run_ids:
            key = f"newsdesk run {run_id}"
            if one_row(pg.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key]))[0]:
                pg.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
            else:
                live.add(run_id)
    return live


def replay_staged(con: duckdb.DuckDBPyConnection) -> int:
    """Finish the units that dead writers staged and did not apply (or
    applied and did not clear). Returns how many were applied now."""
    staged = con.execute(f"SELECT DISTINCT load_id, kind, run_id FROM {STAGED}").fetchall()
    if not staged:
        return 0
    live = alive(keyed_dsn(con), sorted({run_id for _, _, run_id in staged}))
    applied = 0
    for load_id, kind, run_id in staged:
        if run_id in live:
            continue
        parts = {part: _from_ipc(rows) for part, rows in con.execute(
            f"SELECT part, rows FROM {STAGED} WHERE load_id = ?", [load_id]).fetchall()}
        applied += _apply(con, load_id, kind, parts)
        con.execute(f"DELETE FROM {STAGED} WHERE load_id = ?", [load_id])
    return applied
