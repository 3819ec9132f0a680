"""Read queries: what the warehouse already knows, and ad hoc SQL."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, NamedTuple, Sequence

import duckdb
import pyarrow as pa

from transforms.errors import InputError
from transforms.records import FeedEntry, Fingerprint, KnownKeys, PageAttempt, StoryRoot
from warehouse.arrow_rows import ENTRY_COLUMNS, named_rows, record_of
from warehouse.rows import one_row
from warehouse.scopes import registered


def _lake(con: duckdb.DuckDBPyConnection) -> bool:
    """On a lake, articles have no index: their keys are looked up in
    PostgreSQL (`article_keys`, warehouse/lake.py) instead."""
    from warehouse.twophase import is_lake

    return is_lake(con)


# (file, lake): the article of a canonical URL, and of a page body's hash.
_ARTICLES_BY_URL = {
    False: "SELECT url, article_id FROM articles",
    True: "SELECT url, article_id FROM (SELECT key AS url, article_id FROM keys.newsdesk.article_keys "
          "WHERE kind = 'url')",
}
_ARTICLES_BY_HASH = {
    False: "SELECT content_hash, article_id, body_source FROM articles",
    True: "SELECT content_hash, article_id, body_source FROM (SELECT key AS content_hash, article_id, body_source "
          "FROM keys.newsdesk.article_keys WHERE kind = 'hash')",
}


def lookup(con: duckdb.DuckDBPyConnection, select: str, column: str, values: Iterable[Any],
           chunk: int = 500) -> list[tuple[Any, ...]]:
    """Rows of `select ... WHERE column IN (values)`, the values bound as
    constants, `chunk` at a time.

    DuckDB answers a list of constants on an indexed column from its ART
    index (an Index Scan: a few nodes per value, O(log n) each). The same
    question as a join, or as `IN (SELECT ...)` over a registered table, is
    a hash join over a scan of the whole column: O(n) in the history
    whatever the batch, and what it reads stays in the buffer pool.
    tests/warehouse/test_lookups.py holds both to DuckDB's profiler.

    DuckDB takes the index only while fewer than `index_scan_max_count`
    (2048) rows match, hence chunks of 500 keys: room for a key that
    matches a few rows (a link seen in several feeds)."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(distinct), chunk):
        part = distinct[start:start + chunk]
        rows += con.execute(f"{select} WHERE {column} IN ({', '.join('?' * len(part))})", part).fetchall()
    return rows


def select_known_for_entries(con: duckdb.DuckDBPyConnection, entries: Sequence[FeedEntry],
                             outbox: bool = True) -> KnownKeys:
    """Which of these entries' links and GUIDs the warehouse has seen. Stored
    articles and sightings are looked up key by key through their indexes
    (the cost grows with the entries, not with the history). With `outbox`,
    an entry queued in entry_outbox counts as seen: it is worked from there."""
    if not entries:
        return KnownKeys()
    links = [e.canonical_link for e in entries]
    pairs = {(e.source, e.canonical_link) for e in entries}
    by_url = dict(lookup(con, _ARTICLES_BY_URL[_lake(con)], "url", links))
    sighted_links: set[tuple[str, str]] = set()
    for source, link, article_id in lookup(
            con, "SELECT source, canonical_link, article_id FROM article_sightings", "canonical_link", links):
        by_url[link] = article_id
        if (source, link) in pairs:
            sighted_links.add((source, link))
    guid_pairs = {(e.source, e.guid) for e in entries if e.guid}
    sighted_guids: set[tuple[str, str]] = set()
    by_guid: dict[str, str] = {}
    # Whether a GUID is global is decided in transforms; here any match.
    for source, guid, article_id in lookup(
            con, "SELECT source, guid, article_id FROM article_sightings", "guid", (g for _, g in guid_pairs)):
        by_guid[guid] = min(by_guid.get(guid, article_id), article_id)
        if (source, guid) in guid_pairs:
            sighted_guids.add((source, guid))
    # An entry waiting in page_attempts is known too: its retries come from
    # there, not from the feed showing it again. These two tables hold work
    # in progress and failures, not the history of articles: joined whole.
    keys = pa.table({"source": [s for s, _ in pairs], "link": [c for _, c in pairs]},
                    schema=pa.schema([("source", pa.string()), ("link", pa.string())]))
    with registered(con, "_keys", keys):
        sighted_links.update(con.execute("""
            SELECT p.source, p.canonical_link FROM page_attempts p
            JOIN _keys k ON k.source = p.source AND k.link = p.canonical_link
        """ + ("""
            UNION
            SELECT o.source, o.canonical_link FROM entry_outbox o
            JOIN _keys k ON k.source = o.source AND k.link = o.canonical_link
        """ if outbox else "")).fetchall())
    return KnownKeys(by_url=by_url, by_guid=by_guid, sighted_links=frozenset(sighted_links),
                     sighted_guids=frozenset(sighted_guids))


def select_known_articles(
    con: duckdb.DuckDBPyConnection, urls: Sequence[str], hashes: Sequence[str]
) -> KnownKeys:
    """Articles already stored under one of these canonical URLs, or whose
    page body has one of these hashes (feed-text bodies are never matched by
    hash: see `transforms.dedupe.resolve_duplicates`). Key by key, through
    the indexes on articles.url, article_sightings.canonical_link and
    articles.content_hash."""
    if not urls and not hashes:
        return KnownKeys()
    lake = _lake(con)
    by_url = dict(lookup(con, _ARTICLES_BY_URL[lake], "url", urls))
    by_url.update(lookup(con, "SELECT canonical_link, article_id FROM article_sightings", "canonical_link", urls))
    by_hash: dict[str, str] = {}
    # body_source is tested here, not in SQL: another condition beside the
    # `= ?` could keep DuckDB from answering it with the index.
    for content_hash, article_id, body_source in lookup(con, _ARTICLES_BY_HASH[lake], "content_hash", hashes):
        if body_source == "page":
            by_hash[content_hash] = min(by_hash.get(content_hash, article_id), article_id)
    return KnownKeys(by_url=by_url, by_hash=by_hash)


class FeedState(NamedTuple):
    etag: str | None
    last_modified: str | None
    next_attempt_at: datetime | None
    consecutive_failures: int
    next_poll_at: datetime | None
    poll_interval_s: int | None
    poll_reason: str | None
    last_fetched_at: datetime | None


def select_feed_state(con: duckdb.DuckDBPyConnection) -> dict[str, FeedState]:
    """What the last polls left per feed: validators for conditional GET,
    backoff, the schedule."""
    rows = con.execute("SELECT name, " + ", ".join(FeedState._fields) + " FROM sources").fetchall()
    return {name: FeedState(*rest) for name, *rest in rows}


def select_outbox(con: duckdb.DuckDBPyConnection) -> list[tuple[FeedEntry, str]]:
    """Every queued entry with the run that queued it, in the order found."""
    rows = named_rows(con.execute(f"SELECT {ENTRY_COLUMNS}, run_id FROM entry_outbox ORDER BY queued_at, position"))
    return [(record_of(FeedEntry, r), r["run_id"]) for r in rows]


def select_due_attempts(con: duckdb.DuckDBPyConnection, now: datetime, limit: int = 10_000) -> list[PageAttempt]:
    """Pending pages whose next attempt has come, oldest first."""
    rows = named_rows(con.execute(f"""
        SELECT {ENTRY_COLUMNS}, article_id, status, attempts, last_reason, last_error, first_failed_at,
               last_attempt_at, next_attempt_at
        FROM page_attempts WHERE status = 'pending' AND next_attempt_at <= ?
        ORDER BY next_attempt_at LIMIT ?
    """, [now, limit]))
    return [record_of(PageAttempt, r, entry=record_of(FeedEntry, r)) for r in rows]


def select_story_roots(
    con: duckdb.DuckDBPyConnection, band_keys: Sequence[int], scheme: str,
    first_seen: tuple[datetime, datetime] | None,
) -> dict[int, list[StoryRoot]]:
    """Stored story roots sharing any of these band keys, by key, first seen
    within `first_seen` (from, to) when given. One hash join against
    story_bands; nothing of the history is held in memory.

    Runs append band keys in first-seen order, so the window's filter skips
    every older row group of story_bands on its min/max alone: the join
    reads the window's rows, not the history's."""
    if not band_keys:
        return {}
    if _lake(con):
        return _lake_story_roots(con, band_keys, scheme, first_seen)
    window = "AND b.first_seen_at BETWEEN ? AND ?" if first_seen else ""
    with registered(con, "_bands", pa.table({"band_key": pa.array(sorted(set(band_keys)), pa.int64())})):
        rows = con.execute(f"""
            SELECT b.band_key, b.story_id, b.first_seen_at, f.shingles, f.signature
            FROM story_bands b
            JOIN _bands k ON k.band_key = b.band_key
            JOIN article_fingerprints f ON f.article_id = b.story_id AND f.scheme = ?
            WHERE true {window}
        """, [scheme, *(first_seen or ())]).fetchall()
    roots: dict[str, StoryRoot] = {}
    out: dict[int, list[StoryRoot]] = {}
    for key, story_id, first_seen_at, shingles, signature in rows:
        root = roots.get(story_id)
        if root is None:
            root = roots[story_id] = StoryRoot(story_id, Fingerprint(scheme, shingles, bytes(signature), ()),
                                               first_seen_at)
        out.setdefault(key, []).append(root)
    return out


def _lake_story_roots(con: duckdb.DuckDBPyConnection, band_keys: Sequence[int], scheme: str,
                      first_seen: tuple[datetime, datetime] | None) -> dict[int, list[StoryRoot]]:
    """The same on a lake: band keys and the roots' fingerprints are keyed
    tables in PostgreSQL, read key by key through their indexes."""
    bands = lookup(con, "SELECT band_key, story_id, first_seen_at FROM keys.newsdesk.story_bands", "band_key",
                   sorted(set(band_keys)))
    if first_seen:
        bands = [b for b in bands if first_seen[0] <= b[2] <= first_seen[1]]
    prints = {story_id: (shingles, bytes(signature)) for story_id, shingles, signature, kind in lookup(
        con, "SELECT story_id, shingles, signature, scheme FROM keys.newsdesk.story_roots", "story_id",
        [b[1] for b in bands]) if kind == scheme}
    roots: dict[str, StoryRoot] = {}
    out: dict[int, list[StoryRoot]] = {}
    for key, story_id, first_seen_at in bands:
        if story_id not in prints:
            continue
        root = roots.get(story_id)
        if root is None:
            shingles, signature = prints[story_id]
            root = roots[story_id] = StoryRoot(story_id, Fingerprint(scheme, shingles, signature, ()), first_seen_at)
        out.setdefault(key, []).append(root)
    return out


class BacklogArticle(NamedTuple):
    article_id: str
    body: str
    story_id: str | None
    first_seen_at: datetime


def select_fingerprint_backlog(con: duckdb.DuckDBPyConnection, scheme: str, limit: int) -> list[BacklogArticle]:
    """Articles with no fingerprint under the current scheme (loaded before
    stories existed, or before the [stories] settings changed), first seen first."""
    # Every run asks; almost always there is none. Fingerprints are one per
    # article (article_id is their key) and articles are never deleted, so
    # equal counts mean no backlog, without an anti-join over the history.
    missing = one_row(con.execute("SELECT (SELECT count(*) FROM articles) "
                                  "- (SELECT count(*) FROM article_fingerprints WHERE scheme = ?)", [scheme]))[0]
    if missing <= 0:
        return []
    rows = con.execute("""
        SELECT a.article_id, a.body, a.story_id, a.first_seen_at FROM articles a
        WHERE NOT EXISTS (SELECT 1 FROM article_fingerprints f WHERE f.article_id = a.article_id AND f.scheme = ?)
        ORDER BY a.first_seen_at, a.article_id LIMIT ?
    """, [scheme, limit]).fetchall()
    return [BacklogArticle(*r) for r in rows]


class QueryError(InputError):
    """A user's SQL failed (syntax, unknown column, write on a read-only file)."""


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None,
            tables: dict[str, dict[str, list[Any]]] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement; returns column names and rows. `tables` are
    columns made visible to the statement under their names (search hits)."""
    with ExitStack() as scopes:
        for name, columns in (tables or {}).items():
            scopes.enter_context(registered(con, name, pa.table(columns)))
        try:
            cur = con.execute(sql, params or [])
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        if cur.description is None:
            return [], []  # type: ignore[unreachable]  # duckdb's stubs leave out the None of a result-less cursor
        try:
            return [d[0] for d in cur.description], cur.fetchall()
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc


def select_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    columns, rows = run_sql(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    return dict(zip(columns, rows[0])) if rows else None


class ArchivedArticle(NamedTuple):
    article_id: str
    url: str
    source: str
    title: str | None
    author: str | None
    published_at: datetime
    date_source: str
    first_seen_at: datetime
    run_id: str
    warc_file: str
    warc_offset: int
    source_language: str | None
    published_raw: str | None  # the feed's date when it could not be read


def select_archived_articles(con: duckdb.DuckDBPyConnection, since: date | None = None, source: str | None = None) -> list[ArchivedArticle]:
    """Articles whose page body came from an archived response, oldest first."""
    rows = con.execute("""
        SELECT a.article_id, a.url, a.source, a.title, a.author, a.published_at, a.date_source, a.first_seen_at,
               a.run_id, a.warc_file, a.warc_offset, s.language, a.published_raw
        FROM articles a LEFT JOIN sources s ON s.name = a.source
        WHERE a.warc_file IS NOT NULL AND a.body_source = 'page'
          AND ($since IS NULL OR a.published_date >= $since) AND ($source IS NULL OR a.source = $source)
        ORDER BY a.first_seen_at, a.article_id
    """, {"since": since, "source": source}).fetchall()
    return [ArchivedArticle(*r) for r in rows]


def select_articles(con: duckdb.DuckDBPyConnection, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not article_ids:
        return {}
    names = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE articles)").fetchall()]
    rows = lookup(con, "SELECT * FROM articles", "article_id", article_ids)
    return {r[0]: dict(zip(names, r)) for r in rows}


def select_run_feeds(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Per feed, what one run did: poll status, entries, new articles, duplicates, failures."""
    # A run's rows are all stamped after it started, and tables are appended
    # in time order: a constant lower bound on the time lets DuckDB skip every
    # older row group on its min/max, where run_id alone (random) would read
    # the whole column. An hour of slack covers a clock stepped back mid-run.
    started = con.execute("SELECT started_at FROM runs WHERE run_id = ?", [run_id]).fetchone()
    since = started[0] - timedelta(hours=1) if started else datetime.min.replace(tzinfo=timezone.utc)
    cur = con.execute("""
        WITH new AS (SELECT source, count(*) AS n FROM articles
                     WHERE run_id = $r AND first_seen_at >= $since GROUP BY 1),
             seen AS (SELECT source, count(*) AS n FROM article_sightings
                      WHERE run_id = $r AND seen_at >= $since GROUP BY 1),
             fails AS (SELECT source, count(*) AS n FROM failures WHERE run_id = $r AND "at" >= $since GROUP BY 1)
        SELECT p.source, p.status, p.ok, p.not_modified, p.entries, p.new_entries,
               coalesce(new.n, 0) AS articles_new,
               greatest(coalesce(seen.n, 0) - coalesce(new.n, 0), 0) AS duplicates,
               coalesce(fails.n, 0) AS failures, p.error, p.warning
        FROM feed_polls p
        LEFT JOIN new ON new.source = p.source
        LEFT JOIN seen ON seen.source = p.source
        LEFT JOIN fails ON fails.source = p.source
        WHERE p.run_id = $r AND p.fetched_at >= $since
        ORDER BY p.source
    """, {"r": run_id, "since": since})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def select_recent_runs(con: duckdb.DuckDBPyConnection, limit: int = 20) -> tuple[list[str], list[tuple[Any, ...]]]:
    return run_sql(con, """
        SELECT run_id, started_at, status, round(epoch(finished_at - started_at), 1) AS wall_s,
               feeds_ok || '/' || feeds_total AS feeds, entries_seen, articles_new, duplicates, near_duplicates,
               entries_pending AS pending, failures, flow_run_id
        FROM runs ORDER BY started_at DESC LIMIT ?
    """, [limit])
