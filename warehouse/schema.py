"""Schema of the warehouse: one commented DDL per numbered migration.

`migrate` applies the migrations a database has not seen yet, each in its own
transaction, and records them in `schema_migrations`; running it twice is a
no-op. To change the schema, append a migration; never edit a shipped one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from transforms.errors import InputError, NewsdeskError
from warehouse.rows import one_row
from warehouse.scopes import transaction

_V1 = """
-- One row per feed of the sources file, with its fetch state.
CREATE TABLE sources (
    name                 VARCHAR PRIMARY KEY,
    url                  VARCHAR NOT NULL,
    language             VARCHAR,
    tags                 VARCHAR[],
    title                VARCHAR,        -- as the feed names itself
    etag                 VARCHAR,        -- for conditional GET
    last_modified        VARCHAR,        -- for conditional GET, as the server sent it
    last_fetched_at      TIMESTAMPTZ,
    last_status          INTEGER,        -- HTTP status of the last fetch (304 = unchanged)
    last_success_at      TIMESTAMPTZ,
    last_error           VARCHAR,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- One row per article, however many feeds carried it.
CREATE TABLE articles (
    article_id     VARCHAR PRIMARY KEY,  -- sha256 of the first canonical URL, 20 hex
    url            VARCHAR NOT NULL,     -- canonical URL
    source         VARCHAR NOT NULL,     -- the feed it was first seen in
    title          VARCHAR,
    author         VARCHAR,
    published_at   TIMESTAMPTZ NOT NULL, -- UTC, never later than the run that loaded it
    published_date DATE NOT NULL,        -- UTC date of published_at
    date_source    VARCHAR NOT NULL,     -- 'feed' | 'page' | 'first_seen'
    date_note      VARCHAR,              -- why a feed/page date was rejected
    language       VARCHAR,              -- ISO 639-1, detected from the body
    body           VARCHAR NOT NULL,     -- NFC text, paragraphs split by a blank line
    body_source    VARCHAR NOT NULL,     -- 'page' | 'feed'
    body_note      VARCHAR,              -- why the page body was not used
    word_count     INTEGER NOT NULL,
    content_hash   VARCHAR NOT NULL,     -- sha256 of body
    first_seen_at  TIMESTAMPTZ NOT NULL,
    run_id         VARCHAR NOT NULL,
    extractor      VARCHAR NOT NULL      -- e.g. 'trafilatura 2.3.0 fast', or 'feed'
);
CREATE INDEX articles_url ON articles (url);
CREATE INDEX articles_content_hash ON articles (content_hash);

-- Every (feed, entry link) that carried an article, kept once.
CREATE TABLE article_sightings (
    source         VARCHAR NOT NULL,
    canonical_link VARCHAR NOT NULL,     -- the entry link, normalized
    article_id     VARCHAR NOT NULL,
    url            VARCHAR NOT NULL,     -- the entry link as the feed gave it
    guid           VARCHAR,
    seen_at        TIMESTAMPTZ NOT NULL,
    run_id         VARCHAR NOT NULL,
    PRIMARY KEY (source, canonical_link)
);
CREATE INDEX sightings_article ON article_sightings (article_id);

-- One row per run of the ingest flow, with what it did.
CREATE TABLE runs (
    run_id             VARCHAR PRIMARY KEY,
    flow_run_id        VARCHAR,          -- Prefect's id, when run under Prefect
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    status             VARCHAR NOT NULL, -- 'running' | 'completed' | 'failed' | 'abandoned' (found dead by a later run)
    feeds_total        INTEGER,
    feeds_ok           INTEGER,          -- fetched and parsed (304 included)
    feeds_not_modified INTEGER,
    feeds_failed       INTEGER,
    entries_seen       INTEGER,          -- = entries_known + articles_new + duplicates + entries_failed
    entries_known      INTEGER,          -- already sighted in that feed: skipped
    articles_new       INTEGER,
    articles_from_feed INTEGER,          -- of articles_new, bodies taken from the feed
    duplicates         INTEGER,          -- new sightings of an article we hold
    entries_failed     INTEGER,          -- entries that ended as a failure only
    pages_fetched      INTEGER,
    failures           INTEGER,          -- failure rows written by the run
    error              VARCHAR
);

-- Everything that did not become a row, and why.
CREATE TABLE failures (
    run_id    VARCHAR NOT NULL,
    stage     VARCHAR NOT NULL,          -- 'fetch' | 'parse' | 'extract' | 'load'
    url       VARCHAR NOT NULL,
    source    VARCHAR,
    reason    VARCHAR NOT NULL,          -- short code: http_404, timeout, not_html ...
    error     VARCHAR NOT NULL,          -- the message
    transient BOOLEAN NOT NULL,          -- worth retrying in a later run
    outcome   VARCHAR NOT NULL,          -- 'feed_fallback' (loaded from the feed text) | 'not_loaded'
    "at"      TIMESTAMPTZ NOT NULL       -- when it happened (quoted: AT is a keyword)
);
"""

_V2 = """
-- Entries whose page is not loaded yet (pending a retry in a later run) or
-- never will be (failed: permanent error; given_up: out of attempts). The
-- entry is kept whole so that a retry needs no feed, and a feed-text article
-- loaded meanwhile (article_id) is upgraded in place when the page comes.
CREATE TABLE page_attempts (
    source          VARCHAR NOT NULL,
    canonical_link  VARCHAR NOT NULL,
    link            VARCHAR NOT NULL,
    guid            VARCHAR,
    title           VARCHAR,
    author          VARCHAR,
    published_at    TIMESTAMPTZ,
    feed_text       VARCHAR NOT NULL,
    language        VARCHAR,
    article_id      VARCHAR,            -- the feed-fallback article, if one was loaded
    status          VARCHAR NOT NULL,   -- 'pending' | 'failed' | 'given_up'
    attempts        INTEGER NOT NULL,
    last_reason     VARCHAR NOT NULL,
    last_error      VARCHAR,
    first_failed_at TIMESTAMPTZ NOT NULL,
    last_attempt_at TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ,        -- NULL unless pending
    PRIMARY KEY (source, canonical_link)
);

-- One row per poll of a feed, for feed health.
CREATE TABLE feed_polls (
    run_id       VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    fetched_at   TIMESTAMPTZ NOT NULL,
    status       INTEGER,               -- HTTP status, NULL when no response
    ok           BOOLEAN NOT NULL,
    not_modified BOOLEAN NOT NULL,
    error        VARCHAR,
    entries      INTEGER NOT NULL,      -- entries in the document
    new_entries  INTEGER NOT NULL       -- of which not seen before in this feed
);

-- A failing feed is polled again no sooner than this (exponential, <= 24 h).
ALTER TABLE sources ADD COLUMN next_attempt_at TIMESTAMPTZ;

ALTER TABLE runs ADD COLUMN feeds_skipped INTEGER;      -- backing off after failures
ALTER TABLE runs ADD COLUMN entries_pending INTEGER;    -- no row yet, retried in a later run
ALTER TABLE runs ADD COLUMN retries INTEGER;            -- pending pages tried again this run
ALTER TABLE runs ADD COLUMN retries_loaded INTEGER;     -- of which now loaded (new or upgraded)

-- Per feed: how it has been doing.
CREATE VIEW feed_health AS
SELECT
    s.name AS source,
    s.url,
    count(p.source)                                            AS polls,
    round(avg(p.ok::INTEGER), 3)                               AS success_rate,
    round(avg(p.not_modified::INTEGER), 3)                     AS share_304,
    round(avg(p.new_entries) FILTER (WHERE p.ok), 2)           AS new_items_per_poll,
    s.last_success_at,
    (SELECT max(g.seen_at) FROM article_sightings g WHERE g.source = s.name) AS last_new_item_at,
    now() - (SELECT max(g.seen_at) FROM article_sightings g WHERE g.source = s.name) AS staleness,
    s.consecutive_failures,
    s.last_error,
    s.next_attempt_at
FROM sources s
LEFT JOIN feed_polls p ON p.source = s.name
GROUP BY ALL;

-- Per run: every entry seen ends as exactly one thing; balanced = true.
CREATE VIEW run_accounting AS
SELECT
    run_id, started_at, status, entries_seen, entries_known, articles_new, duplicates,
    entries_pending, entries_failed,
    entries_known + articles_new + duplicates + coalesce(entries_pending, 0) + entries_failed AS accounted,
    entries_seen = entries_known + articles_new + duplicates + coalesce(entries_pending, 0) + entries_failed AS balanced,
    -- rows this run loaded: its new articles plus entries retried from earlier runs
    (SELECT count(*) FROM articles a WHERE a.run_id = r.run_id) AS articles_loaded
FROM runs r;
"""

_V3 = """
-- Near-duplicate story clusters (transforms.stories). story_id is the story's
-- root, its first-seen article; NULL only until the next run clusters it.
ALTER TABLE articles ADD COLUMN story_id VARCHAR;
ALTER TABLE articles ADD COLUMN duplicate_of VARCHAR;        -- the root; NULL for the root
ALTER TABLE articles ADD COLUMN story_similarity DOUBLE;     -- estimated Jaccard with the root

-- MinHash signature of each article's body, under the scheme that made it.
CREATE TABLE article_fingerprints (
    article_id VARCHAR PRIMARY KEY,
    scheme     VARCHAR NOT NULL,      -- shingle size, permutations, bands: see transforms.fingerprints
    shingles   INTEGER NOT NULL,      -- size of the shingle set
    signature  BLOB NOT NULL          -- num_perm little-endian uint32
);

-- LSH band keys of story roots (only roots are match candidates). Candidate
-- stories for new articles come from one join on band_key.
CREATE TABLE story_bands (
    band_key BIGINT NOT NULL,
    story_id VARCHAR NOT NULL
);

ALTER TABLE runs ADD COLUMN near_duplicates INTEGER;  -- of articles_new, joined an existing story

-- One row per story.
CREATE VIEW stories AS
WITH members AS (
    SELECT coalesce(story_id, article_id) AS story_id, article_id, title, published_at, first_seen_at, source
    FROM articles
), carried AS (  -- every feed that carried a member, the first one included
    SELECT m.story_id,
           count(DISTINCT coalesce(g.source, m.source))              AS sources,
           list_sort(list(DISTINCT coalesce(g.source, m.source)))   AS source_list
    FROM members m LEFT JOIN article_sightings g ON g.article_id = m.article_id
    GROUP BY m.story_id
), grouped AS (
    SELECT
        story_id,
        min(published_at)                                   AS first_published_at,
        min(published_at)::DATE                             AS first_published_date,
        max(title) FILTER (WHERE article_id = story_id)     AS headline,  -- the root's
        count(*)                                            AS articles,
        min(first_seen_at)                                  AS first_seen_at,
        max(first_seen_at)                                  AS last_seen_at
    FROM members
    GROUP BY story_id
)
SELECT g.story_id, g.first_published_at, g.first_published_date, g.headline, g.articles,
       c.sources, c.source_list, g.first_seen_at, g.last_seen_at
FROM grouped g JOIN carried c USING (story_id);
"""

_V4 = """
-- Seconds per stage of a run. Pages are fetched while the previous batch is
-- extracted, so the stages add up to more than finished_at - started_at.
ALTER TABLE runs ADD COLUMN fetch_s DOUBLE;    -- feeds and pages over HTTP / from files
ALTER TABLE runs ADD COLUMN parse_s DOUBLE;    -- feedparser
ALTER TABLE runs ADD COLUMN extract_s DOUBLE;  -- trafilatura, normalization, fingerprints (worker processes)
ALTER TABLE runs ADD COLUMN dedupe_s DOUBLE;   -- known-entry lookups, exact duplicates, story clustering
ALTER TABLE runs ADD COLUMN load_s DOUBLE;     -- the load transactions
"""

_V5 = """
-- Where each article's page lives in the raw WARC archive, for re-extraction
-- without the network (NULL for bodies taken from the feed).
ALTER TABLE articles ADD COLUMN warc_file VARCHAR;
ALTER TABLE articles ADD COLUMN warc_offset BIGINT;

-- Earlier versions of an article: kept whenever a body is replaced (a
-- feed-text body upgraded to the page's, a refetch or re-extraction that
-- changed it). The row in `articles` is always the latest.
CREATE TABLE article_revisions (
    article_id   VARCHAR NOT NULL,
    revised_at   TIMESTAMPTZ NOT NULL,   -- when this version was replaced
    reason       VARCHAR NOT NULL,       -- 'upgrade' | 'reextract'
    title        VARCHAR,
    body         VARCHAR NOT NULL,
    body_source  VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    extractor    VARCHAR NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    language     VARCHAR
);
CREATE INDEX revisions_article ON article_revisions (article_id);
"""

_V6 = """
-- The outbox of new entries. A poll writes the entries it found new in the
-- same transaction as the feed's new validators (ETag, Last-Modified), and
-- the load of the batch that settles an entry (an article, a sighting, a
-- failure or a pending retry) deletes it in that batch's transaction. So a
-- run that dies, or fails on a locked warehouse, leaves its unfinished
-- entries here, and the next run works them even when the feed answers 304.
CREATE TABLE entry_outbox (
    source         VARCHAR NOT NULL,
    canonical_link VARCHAR NOT NULL,
    link           VARCHAR NOT NULL,
    guid           VARCHAR,
    title          VARCHAR,
    author         VARCHAR,
    published_at   TIMESTAMPTZ,
    feed_text      VARCHAR NOT NULL,
    language       VARCHAR,
    run_id         VARCHAR NOT NULL,     -- the run whose poll found it
    queued_at      TIMESTAMPTZ NOT NULL,
    position       INTEGER NOT NULL,     -- its place in that run's polls: pages are worked in feed order
    PRIMARY KEY (source, canonical_link)
);
"""

_V7 = """
-- Feed text as the publisher meant it (transforms.feeds, transforms.charsets).
-- An item without a link but with text is an article loaded from the feed.
-- Its key, in articles.url and article_sightings.canonical_link/url, is its
-- GUID when that is global (tag:, urn:), else 'urn:newsdesk:entry:' and a
-- hash of feed + GUID, or of feed + title + date: a URN, never fetched.
-- The feed's date string when no parser could read it (date_note says so).
ALTER TABLE articles ADD COLUMN published_raw VARCHAR;
ALTER TABLE page_attempts ADD COLUMN published_raw VARCHAR;
ALTER TABLE entry_outbox ADD COLUMN published_raw VARCHAR;
-- An item without a link waits in the outbox like any entry (only a primary
-- key on that table: DuckDB can drop the NOT NULL).
ALTER TABLE entry_outbox ALTER COLUMN link DROP NOT NULL;
-- A failure's URL, or NULL when the thing that failed has none (never a title).
ALTER TABLE failures ALTER COLUMN url DROP NOT NULL;
-- What was wrong with a feed that could still be read: its encoding (declared
-- and actual disagree, none declared on non-UTF-8 bytes) or ill-formed XML.
ALTER TABLE feed_polls ADD COLUMN warning VARCHAR;
ALTER TABLE sources ADD COLUMN last_warning VARCHAR;     -- of the last successful poll, NULL when clean
"""

_V8 = """
-- Full-text search moved out of DuckDB's fts extension (rebuilt whole after
-- every run) into an incremental tantivy index beside the warehouse.
DROP MACRO TABLE IF EXISTS search_articles;
DROP SCHEMA IF EXISTS fts_main_articles CASCADE;

-- Articles added or changed since the search index last committed: every
-- load that writes an article body queues its id in the same transaction.
-- The index clears the queue up to the seq it read once it has committed.
CREATE SEQUENCE search_queue_seq;
CREATE TABLE search_queue (
    seq        BIGINT NOT NULL DEFAULT nextval('search_queue_seq'),
    article_id VARCHAR NOT NULL
);

-- The index build this warehouse is synced with (one row); an index
-- directory with another id (or none) is rebuilt whole.
CREATE TABLE search_index (
    index_id VARCHAR NOT NULL,
    built_at TIMESTAMPTZ NOT NULL,
    articles BIGINT NOT NULL          -- articles in the warehouse at the build
);
"""

_V9 = """
-- Story candidates are roots first seen within [stories] window_days of the
-- new article. Band keys carry their root's first sighting; runs append them
-- in that order, so a filter on it skips older row groups by their min/max
-- alone and the candidate join reads the window, not the history. The table
-- is rewritten once, in that order.
CREATE TABLE story_bands_by_time (
    band_key      BIGINT NOT NULL,
    story_id      VARCHAR NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL   -- the root's
);
INSERT INTO story_bands_by_time (band_key, story_id, first_seen_at)
SELECT b.band_key, b.story_id, a.first_seen_at
FROM story_bands b JOIN articles a ON a.article_id = b.story_id
ORDER BY a.first_seen_at, b.story_id;
DROP TABLE story_bands;
ALTER TABLE story_bands_by_time RENAME TO story_bands;

-- Known-entry checks look sightings up by link and by GUID, one key at a
-- time through these (an IN list or a join would scan the whole column).
CREATE INDEX sightings_link ON article_sightings (canonical_link);
CREATE INDEX sightings_guid ON article_sightings (guid);
"""

_V10 = """
-- Each feed's own schedule (transforms/schedule.py): a healthy feed is
-- polled again no sooner than next_poll_at; a failing one backs off
-- (next_attempt_at). poll_reason says why the interval is what it is.
ALTER TABLE sources ADD COLUMN next_poll_at TIMESTAMPTZ;
ALTER TABLE sources ADD COLUMN poll_interval_s INTEGER;
ALTER TABLE sources ADD COLUMN poll_reason VARCHAR;

ALTER TABLE runs ADD COLUMN feeds_not_due INTEGER;      -- healthy feeds whose next poll was later

CREATE OR REPLACE VIEW feed_health AS
SELECT
    s.name AS source,
    s.url,
    count(p.source)                                            AS polls,
    round(avg(p.ok::INTEGER), 3)                               AS success_rate,
    round(avg(p.not_modified::INTEGER), 3)                     AS share_304,
    round(avg(p.new_entries) FILTER (WHERE p.ok), 2)           AS new_items_per_poll,
    s.last_success_at,
    (SELECT max(g.seen_at) FROM article_sightings g WHERE g.source = s.name) AS last_new_item_at,
    now() - (SELECT max(g.seen_at) FROM article_sightings g WHERE g.source = s.name) AS staleness,
    s.consecutive_failures,
    s.last_error,
    s.next_attempt_at,
    round(s.poll_interval_s / 60, 1)                           AS poll_interval_min,
    s.poll_reason,
    s.next_poll_at
FROM sources s
LEFT JOIN feed_polls p ON p.source = s.name
GROUP BY ALL;
"""

_V11 = """
-- The feed registry: feeds come from the sources file or from OPML
-- (`newsdesk feeds import`); `feeds remove` sets active = false, keeping
-- the feed's history. WARC files register one pseudo-feed each.
ALTER TABLE sources ADD COLUMN origin VARCHAR;         -- 'sources file' | 'opml' | 'warc'
ALTER TABLE sources ADD COLUMN active BOOLEAN;
ALTER TABLE sources ADD COLUMN html_url VARCHAR;       -- the site, as OPML's htmlUrl
ALTER TABLE sources ADD COLUMN added_at TIMESTAMPTZ;
-- Workers of one lake lease due feeds (warehouse/leases.py): a lease ends
-- when its poll is recorded, or at lease_until if the worker died.
ALTER TABLE sources ADD COLUMN lease_owner VARCHAR;
ALTER TABLE sources ADD COLUMN lease_until TIMESTAMPTZ;
UPDATE sources SET origin = CASE WHEN list_contains(tags, 'warc') AND starts_with(url, 'file:') THEN 'warc'
                                 ELSE 'sources file' END,
                   active = true;

ALTER TABLE runs ADD COLUMN worker VARCHAR;             -- host:pid, or $NEWSDESK_WORKER
ALTER TABLE runs ADD COLUMN feeds_elsewhere INTEGER;    -- due, but polled by another worker of the lake

"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "core tables: sources, articles, article_sightings, runs, failures", _V1),
    (2, "page retries across runs, feed polls and backoff, feed_health and run_accounting views", _V2),
    (3, "near-duplicate stories: story_id, duplicate_of, fingerprints, band keys, stories view", _V3),
    (4, "per-stage timings in runs", _V4),
    (5, "raw archive locations and article revisions", _V5),
    (6, "entry outbox: new entries are durable before their feed's validators", _V6),
    (7, "items without links, unread feed dates, feed warnings", _V7),
    (8, "search index queue (tantivy index beside the warehouse) instead of the fts extension", _V8),
    (9, "story band keys carry their root's first sighting, stored in that order (the story window); "
        "sightings indexed by link and GUID", _V9),
    (10, "a schedule per feed: next_poll_at, poll_interval_s, poll_reason; runs.feeds_not_due", _V10),
    (11, "the feed registry (origin, active, OPML's htmlUrl), feed leases, runs.worker and feeds_elsewhere", _V11),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaTooNew(NewsdeskError):
    """The warehouse was written by a newer newsdesk."""


class NotAWarehouse(InputError):
    """The path is not a DuckDB file we can open or create: a directory, a
    text file, a truncated copy, another program's DuckDB file, a place where
    no file can be created. A mistake in the user's input, not a failed run."""


# The columns of our schema_migrations: the mark of a newsdesk warehouse.
_MARKER = {"version", "description", "applied_at"}


def foreign_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables and views of the connection's database when it is not a
    newsdesk warehouse: it has some, and no schema_migrations of ours.
    Empty for a warehouse of any version, and for an empty database."""
    names = [r[0] for r in con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
        " WHERE database_name = current_database() AND NOT temporary"
        " UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views()"
        " WHERE database_name = current_database() AND NOT internal AND NOT temporary ORDER BY 1"
    ).fetchall()]
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name = 'schema_migrations'"
    ).fetchall()}
    return [] if not names or _MARKER <= columns else names


def refuse_foreign(con: duckdb.DuckDBPyConnection) -> None:
    """NotAWarehouse, naming the file and some of its tables, when the
    database is another program's."""
    names = foreign_tables(con)
    if names:
        path = one_row(con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"))[0]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise NotAWarehouse(f"{path} is not a newsdesk warehouse: a DuckDB file with tables of its own ({shown}) "
                            f"and no newsdesk schema_migrations; it was left unchanged")


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    version: int = one_row(con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"))[0]
    return version


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it is at.
    Another program's DuckDB file is refused (NotAWarehouse) before anything
    is written to it; an empty one is initialised."""
    refuse_foreign(con)
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {current} is newer than this newsdesk ({SCHEMA_VERSION}); upgrade newsdesk"
        )
    for version, description, ddl in MIGRATIONS:
        if version <= current:
            continue
        with transaction(con):
            con.execute(ddl)
            con.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                [version, description, datetime.now(timezone.utc)],
            )
    return SCHEMA_VERSION


@dataclass(frozen=True)
class BuiltSchema:
    """The file warehouse at the current version, read from an in-memory
    database the migrations built one by one: what a lake's tables
    (warehouse/lake.py) and docs/schema.sql are made from."""

    columns: dict[str, list[tuple[str, str, bool, str | None]]]  # per table or view: (name, type, nullable, default)
    keys: dict[str, list[str]]  # primary key columns, per table
    indexes: list[tuple[str, str, str, str]]  # (name, table, expressions, CREATE INDEX)
    views: dict[str, str]  # name: CREATE VIEW
    added: dict[tuple[str, str], int]  # (table, column): the migration that added it


@functools.lru_cache(maxsize=1)
def built_schema() -> BuiltSchema:
    con = duckdb.connect()
    try:
        schema_version(con)  # schema_migrations, as every warehouse has it
        added: dict[tuple[str, str], int] = {}
        for version, _, ddl in MIGRATIONS:
            con.execute(ddl)
            for table, column in con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                             "WHERE schema_name = 'main' AND NOT internal").fetchall():
                added.setdefault((table, column), version)
        columns: dict[str, list[tuple[str, str, bool, str | None]]] = {}
        for table, name, kind, nullable, default in con.execute("""
                SELECT table_name, column_name, data_type, is_nullable = 'YES', column_default
                FROM information_schema.columns WHERE table_schema = 'main' ORDER BY table_name, ordinal_position
                """).fetchall():
            columns.setdefault(table, []).append((name, kind, nullable, default))
        keys = {table: names for table, names in con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'").fetchall()}
        indexes = con.execute("SELECT index_name, table_name, expressions, sql FROM duckdb_indexes()").fetchall()
        views = {name: sql for name, sql in con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
        return BuiltSchema(columns, keys, indexes, views, added)
    finally:
        con.close()


def current_schema() -> str:
    """The warehouse as the migrations leave it, in one place: every table
    with its columns (and the migration that added each), keys and indexes,
    then the views. docs/schema.sql is this text; a test keeps it current.
    The migrations above stay deltas."""
    schema = built_schema()
    lines = [f"-- The newsdesk warehouse at schema version {SCHEMA_VERSION}: what migrations 1-{SCHEMA_VERSION}",
             "-- of warehouse/schema.py leave. Generated by warehouse.schema.current_schema() (a test",
             "-- fails when this file is not its output); `-- vN`: the migration that added the column.",
             "-- A lake holds the same tables: the keyed ones in PostgreSQL, the rest in DuckLake."]
    for table in sorted(t for t in schema.columns if t not in schema.views):
        columns = schema.columns[table]
        keys = schema.keys.get(table)
        width = max(len(name) for name, *_ in columns)
        decls = [f"{name:<{width}} {kind}{'' if nullable else ' NOT NULL'}"
                 f"{'' if default is None else ' DEFAULT ' + default}"
                 for name, kind, nullable, default in columns]
        commas = [","] * (len(decls) - 1) + ["," if keys else ""]
        pad = max(len(d) for d in decls) + 1
        body = [f"    {(d + c):<{pad}}  -- v{schema.added[(table, name)]}"
                for d, c, (name, *_) in zip(decls, commas, columns)]
        if keys:
            body.append(f"    PRIMARY KEY ({', '.join(keys)})")
        lines += ["", f"CREATE TABLE {table} (", *body, ");"]
        lines += [sql.rstrip(";") + ";" for name, on, _, sql in sorted(schema.indexes) if on == table]
    for name in sorted(schema.views):
        lines += ["", schema.views[name].rstrip(";") + ";"]
    return "\n".join(lines) + "\n"
