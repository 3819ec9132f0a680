"""The lake backend: a DuckLake whose catalog is a PostgreSQL database, and
the keyed state beside it in the same PostgreSQL.

One DuckDB connection attaches both:
- `lake`, the DuckLake: the bulk that readers query (articles, revisions,
  fingerprints, feed polls, failures, runs). Snapshots give every reader a
  consistent view while writers commit; there are no keys or indexes.
- `keys`, the PostgreSQL database itself (schema `newsdesk`): the state that
  needs unique keys and point lookups (the feed registry and its state,
  sightings, the entry outbox, page attempts, article keys by canonical URL
  and content hash, story band keys and roots).
The search path puts both under their plain names, so a query reads
`articles` and `article_sightings` as in the file.

The schema is not written twice: the columns, keys and indexes of every
table come from the file warehouse's migrations (`warehouse.schema`),
applied to an in-memory database, and are translated here (DuckLake takes no
keys; PostgreSQL takes its own type names). Tables only the lake has are
written out below.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Iterator

import duckdb
import duckdb_extension_ducklake
import duckdb_extension_postgres_scanner
import psycopg

from transforms.errors import InputError, NewsdeskError, NoWarehouse
from warehouse.rows import one_row
from warehouse.schema import built_schema
from warehouse.target import LakeTarget

# Where the tables live. Everything a reader analyses is in the lake;
# everything a writer must look up by key, or change in place, is keyed.
LAKE_TABLES = ("articles", "article_revisions", "article_fingerprints", "feed_polls", "failures", "runs")
KEYED_TABLES = ("sources", "article_sightings", "entry_outbox", "page_attempts", "story_bands")
# The file's views, made per connection (they read both sides).
VIEWS = ("feed_health", "run_accounting", "stories")

KEYED_SCHEMA = "newsdesk"
# Raise it with every file migration that changes a lake or keyed table: a
# lake at an older version gets the columns added (keyed_upgrades,
# lake_upgrades) the next time a writer opens it; one at this version is
# not looked at again. LAKE_DIGEST is `lake_digest()` at this version:
# tests/warehouse/test_lake.py fails when the tables changed and it did not.
LAKE_VERSION = 3
LAKE_DIGEST = "716141b1abc0e7e7"

# Tables only the lake needs: in the file, the articles table is its own
# index of URLs, hashes and story roots; in the lake, these are.
_KEYED_EXTRA = f"""
-- One row per key an article is known by: its canonical URL ('url') and,
-- for a page body, its content hash ('hash'). The first writer to insert a
-- key owns it (claimed_by: its unit of work; article ids are the same in
-- every writer, being hashes of the URL): the primary key makes the article
-- unique across writers, which DuckLake alone cannot.
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.article_keys (
    kind        text NOT NULL,
    key         text NOT NULL,
    article_id  text NOT NULL,
    body_source text NOT NULL,
    claimed_by  text NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS article_keys_article ON {KEYED_SCHEMA}.article_keys (article_id);

-- Story roots' fingerprints, looked up by the band keys of new articles.
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.story_roots (
    story_id      text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL,
    scheme        text NOT NULL,
    shingles      integer NOT NULL,
    signature     bytea NOT NULL
);

-- A unit of work's lake rows, staged in its PostgreSQL transaction until
-- the lake has them (warehouse/twophase.py).
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.staged_loads (
    load_id   text NOT NULL,
    part      text NOT NULL,
    kind      text NOT NULL,
    run_id    text NOT NULL,
    staged_at timestamptz NOT NULL,
    rows      bytea NOT NULL,
    PRIMARY KEY (load_id, part)
);

-- The WARC files of a backfill (`ingest --from-warc`), leased to workers
-- one at a time (warehouse/leases.py); done once all its records are loaded.
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.warc_files (
    path        text PRIMARY KEY,
    bytes       bigint NOT NULL,
    lease_owner text,
    lease_until timestamptz,
    done_at     timestamptz,
    run_id      text,
    records     integer
);

-- Politeness shared by the workers of a lake (warehouse/host_turns.py):
-- the earliest start of the next request to a host, and its slots
-- (per_host_concurrency of them), each held by one request in flight.
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.host_turns (
    host       text PRIMARY KEY,
    next_start    timestamptz NOT NULL,  -- booked: the next request's earliest start
    last_start    timestamptz,           -- when the last request was sent
    pending_by    text,                  -- the request being sent now (its worker's token)
    pending_until timestamptz
);
CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.host_slots (
    host       text NOT NULL,
    slot       integer NOT NULL,
    holder     text,
    held_until timestamptz,
    PRIMARY KEY (host, slot)
);

CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.lake_schema (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL
);
"""

_PG_TYPES = {
    "VARCHAR": "text", "TIMESTAMP WITH TIME ZONE": "timestamptz", "INTEGER": "integer", "BIGINT": "bigint",
    "DOUBLE": "double precision", "BOOLEAN": "boolean", "BLOB": "bytea", "DATE": "date", "VARCHAR[]": "text[]",
}


class LakeError(NewsdeskError):
    """The lake could not be opened or set up (catalog unreachable)."""


class SnapshotNotKept(InputError):
    """`--as-of` names a snapshot the lake does not have (not yet made, or
    expired by maintenance)."""


class NewLakeNeedsDataPath(InputError):
    """A lake is created on first use, and needs a folder for its data files."""


# Every commit newsdesk makes to the lake writes one row here in the same
# snapshot, so that whether a unit of work reached the lake can be asked
# after a crash (the keyed side commits separately).
_LAKE_EXTRA = """
CREATE TABLE IF NOT EXISTS lake.main.lake_loads (
    load_id VARCHAR NOT NULL,
    kind    VARCHAR NOT NULL,      -- 'migrate' | 'batch' | ...
    "at"    TIMESTAMP WITH TIME ZONE NOT NULL,
    detail  VARCHAR
)
"""


def lake_ddl() -> list[str]:
    """CREATE TABLE for each lake table: the file's columns, no keys."""
    schema = built_schema()
    out = [_LAKE_EXTRA]
    for table in LAKE_TABLES:
        cols = ", ".join(f'"{n}" {kind}{"" if nullable else " NOT NULL"}'
                         for n, kind, nullable, _ in schema.columns[table])
        out.append(f"CREATE TABLE IF NOT EXISTS lake.main.{table} ({cols})")
    return out


def _added_column(name: str, kind: str, default: str | None) -> str:
    # Added columns stay nullable: rows written before them have no value.
    col = f'"{name}" {kind}'
    return col + (f" DEFAULT {default}" if default is not None and not default.startswith("nextval") else "")


def lake_digest() -> str:
    """A digest of what a lake is made of (the keyed tables' DDL, the lake
    tables' columns): it changes exactly when LAKE_VERSION must be raised."""
    schema = built_schema()
    # Sorted lines: the DDL says the same whatever order DuckDB lists indexes in.
    made_of = sorted([*keyed_ddl().splitlines(), *(repr((table, schema.columns[table])) for table in LAKE_TABLES),
                      *_LAKE_EXTRA.splitlines()])
    return hashlib.sha256("\n".join(made_of).encode()).hexdigest()[:16]


def keyed_upgrades() -> list[str]:
    """ALTER TABLE ... ADD COLUMN IF NOT EXISTS for every column of the keyed
    tables: no-ops on a lake made by this version, the new columns on an
    older one."""
    schema = built_schema()
    return [f"ALTER TABLE {KEYED_SCHEMA}.{table} ADD COLUMN IF NOT EXISTS "
            + _added_column(name, _PG_TYPES[kind], default)
            for table in KEYED_TABLES for name, kind, _, default in schema.columns[table]]


def lake_upgrades() -> list[str]:
    """The same for the lake tables, in DuckDB's dialect."""
    schema = built_schema()
    return [f"ALTER TABLE lake.main.{table} ADD COLUMN IF NOT EXISTS " + _added_column(name, kind, None)
            for table in LAKE_TABLES for name, kind, _, _ in schema.columns[table]]


def keyed_ddl() -> str:
    """PostgreSQL DDL for the keyed tables: the file's columns, keys and
    indexes in PostgreSQL's types, then the lake's own tables."""
    schema = built_schema()
    parts = [f"CREATE SCHEMA IF NOT EXISTS {KEYED_SCHEMA};"]
    for table in KEYED_TABLES:
        cols = []
        for name, kind, nullable, default in schema.columns[table]:
            col = f'"{name}" {_PG_TYPES[kind]}'
            if default is not None and not default.startswith("nextval"):
                col += f" DEFAULT {default}"
            cols.append(col + ("" if nullable else " NOT NULL"))
        if table in schema.keys:
            cols.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in schema.keys[table]) + ")")
        parts.append(f"CREATE TABLE IF NOT EXISTS {KEYED_SCHEMA}.{table} ({', '.join(cols)});")
    for name, table, expressions, _ in schema.indexes:
        if table in KEYED_TABLES:
            # DuckDB lists them as one string, '[col, col]'
            exprs = ", ".join(f'"{e.strip()}"' for e in expressions.strip("[]").split(","))
            parts.append(f"CREATE INDEX IF NOT EXISTS {name} ON {KEYED_SCHEMA}.{table} ({exprs});")
    # Lookups the lake makes that the file answers from other tables.
    parts.append(f"CREATE INDEX IF NOT EXISTS story_bands_key ON {KEYED_SCHEMA}.story_bands (band_key);")
    parts.append(f"CREATE INDEX IF NOT EXISTS sightings_run ON {KEYED_SCHEMA}.article_sightings (run_id);")
    parts.append(_KEYED_EXTRA)
    return "\n".join(parts)


def _extension(module: ModuleType, name: str) -> str:
    if module.__file__ is None:  # a namespace package: no folder to look in
        raise LakeError(f"the {name} extension for DuckDB {duckdb.__version__} is not installed "
                        f"({module.__name__} has no files)")
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise LakeError(f"the {name} extension for DuckDB {duckdb.__version__} is not installed ({path})")
    return str(path)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ensure_schema(con: duckdb.DuckDBPyConnection, dsn: str) -> None:
    """Create the keyed tables and the lake tables once, whichever writer
    comes first: a PostgreSQL advisory lock makes the others wait."""
    try:
        pg = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise LakeError(f"cannot reach the lake's PostgreSQL ({dsn}): {exc}".strip()) from None
    with pg:
        pg.execute("SELECT pg_advisory_lock(hashtext('newsdesk schema'))")
        try:
            done = one_row(pg.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{KEYED_SCHEMA}.lake_schema"]))[0]
            version = one_row(pg.execute(f"SELECT max(version) FROM {KEYED_SCHEMA}.lake_schema"))[0] if done else None
            if version is not None and version > LAKE_VERSION:
                raise LakeError(f"the lake's schema version {version} is newer than this newsdesk ({LAKE_VERSION}); "
                                "upgrade newsdesk")
            if version == LAKE_VERSION:
                return
            with pg.transaction():
                pg.execute(keyed_ddl())
                # An older lake: the columns later migrations added (CREATE
                # TABLE IF NOT EXISTS leaves an existing table as it was).
                for statement in keyed_upgrades():
                    pg.execute(statement)
            for ddl in lake_ddl():
                con.execute(ddl)
            for ddl in lake_upgrades():
                con.execute(ddl)
            pg.execute(f"INSERT INTO {KEYED_SCHEMA}.lake_schema (version, applied_at) VALUES (%s, now()) "
                       "ON CONFLICT DO NOTHING", [LAKE_VERSION])
        finally:
            pg.execute("SELECT pg_advisory_unlock(hashtext('newsdesk schema'))")
    con.execute("CALL pg_clear_cache()")


def _as_of_words(as_of: int | datetime) -> str:
    return f"{as_of}" if isinstance(as_of, int) else f"at {as_of.isoformat(sep=' ', timespec='seconds')}"


def _kept_snapshots(con: duckdb.DuckDBPyConnection, target: LakeTarget) -> str:
    """The range of snapshots the lake still has, in words, for a message."""
    try:
        con.execute(f"ATTACH {_literal(target.attach)} AS kept (READ_ONLY)")
        first, last, since, until = one_row(con.execute(
            "SELECT min(snapshot_id), max(snapshot_id), min(snapshot_time), max(snapshot_time) "
            "FROM ducklake_snapshots('kept')"))
        con.execute("DETACH kept")
    except duckdb.Error as exc:
        return f"snapshots it could not list ({exc})"

    def when(t: datetime) -> str:
        return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    return (f"snapshots {first} to {last}, from {when(since)} to {when(until)} "
            "(`newsdesk maintain` expires those older than `[maintenance] keep_days`)")


def _views(con: duckdb.DuckDBPyConnection) -> None:
    for name in VIEWS:
        sql = built_schema().views[name]
        con.execute(re.sub(r"^\s*CREATE VIEW", "CREATE OR REPLACE TEMP VIEW", sql, count=1))


@contextmanager
def _creating(dsn: str, *, writable: bool) -> Iterator[None]:
    """Writers that attach a lake not made yet take turns: DuckLake creates
    its catalog on the first ATTACH, and two at once collide on its tables
    (two workers started together on a new lake). Once the catalog exists,
    nobody waits."""
    if not writable:
        yield
        return
    try:
        pg = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error:
        yield  # unreachable: the ATTACH says so in its own words
        return
    with pg:
        if one_row(pg.execute("SELECT to_regclass('ducklake_metadata') IS NOT NULL"))[0]:
            yield
            return
        pg.execute("SELECT pg_advisory_lock(hashtext('newsdesk lake create'))")
        try:
            yield
        finally:
            pg.execute("SELECT pg_advisory_unlock(hashtext('newsdesk lake create'))")


def attach(con: duckdb.DuckDBPyConnection, target: LakeTarget, *, read_only: bool,
           as_of: int | datetime | None = None) -> None:
    """Attach the lake and its keyed state to `con` and put both on the
    search path. A writer creates what is missing; `as_of` (a snapshot id
    or a time) attaches the lake as it was then, read-only."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute(f"LOAD {_literal(_extension(duckdb_extension_postgres_scanner, 'postgres_scanner'))}")
    con.execute(f"LOAD {_literal(_extension(duckdb_extension_ducklake, 'ducklake'))}")
    options = []
    if target.data_path and not read_only:
        options.append(f"DATA_PATH {_literal(target.data_path)}")
    if read_only or as_of is not None:
        options.append("READ_ONLY")
    if isinstance(as_of, int):
        options.append(f"SNAPSHOT_VERSION {as_of}")
    elif as_of is not None:
        options.append(f"SNAPSHOT_TIME {_literal(as_of.isoformat())}")
    try:
        with _creating(target.dsn, writable=not read_only and as_of is None):
            con.execute(f"ATTACH {_literal(target.attach)} AS lake" + (f" ({', '.join(options)})" if options else ""))
    except duckdb.Error as exc:
        message = str(exc)
        if "does not exist" in message and (read_only or as_of is not None):
            raise NoWarehouse(f"no warehouse in the lake {target.attach}: run `newsdesk ingest` or "
                                    "`newsdesk migrate --to` first") from None
        if "No snapshot found" in message and as_of is not None:
            raise SnapshotNotKept(f"the lake has no snapshot {_as_of_words(as_of)}: it keeps "
                                  f"{_kept_snapshots(con, target)}") from None
        if "DATA_PATH" in message or "data path" in message.lower():
            raise NewLakeNeedsDataPath(f"{target.attach} is a new lake: give it a data folder with --data-path DIR "
                            f"(DuckDB: {message})") from None
        raise LakeError(f"cannot attach the lake {target.attach}: {message}") from None
    keyed = f"ATTACH {_literal(target.dsn)} AS keys (TYPE postgres" + (", READ_ONLY" if read_only else "") + ")"
    con.execute(keyed)
    # The scanner splits a scan of a keyed table into ctid ranges, each a
    # whole-table pass for PostgreSQL: a point lookup (`band_key IN (...)`)
    # then grows with the history instead of using the table's index.
    con.execute("SET pg_use_ctid_scan = false")
    if not read_only and as_of is None:
        _ensure_schema(con, target.dsn)
    elif not one_row(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake' "
                                 "AND table_name = 'runs'"))[0]:
        if as_of is not None:
            raise SnapshotNotKept(f"the lake held no warehouse yet at snapshot {_as_of_words(as_of)}: it keeps "
                                  f"{_kept_snapshots(con, target)}")
        raise NoWarehouse(f"no warehouse in the lake {target.attach}: run `newsdesk ingest` or "
                                "`newsdesk migrate --to` first")
    con.execute("USE lake")  # resets the search path: set after it
    con.execute(f"SET search_path = 'lake.main,keys.{KEYED_SCHEMA}'")
    _views(con)


@contextmanager
def connect_lake(target: LakeTarget, *, read_only: bool = False, as_of: int | datetime | None = None,
                 memory_limit: str = "1GB") -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    spill = tempfile.mkdtemp(prefix="newsdesk-lake-")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET temp_directory = ?", [spill])
        attach(con, target, read_only=read_only, as_of=as_of)
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    snapshot_id: int = one_row(con.execute("SELECT id FROM lake.current_snapshot()"))[0]
    return snapshot_id
