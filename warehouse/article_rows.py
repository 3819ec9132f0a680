"""A batch of pages, loaded: new articles, sightings, failures, page
attempts, upgrades of feed-text bodies, and the outbox entries they settle,
in one transaction; re-extraction's replacements with their revisions.

`INSERT ... ON CONFLICT DO NOTHING` (or a lookup of the stored keys first)
makes loading a batch twice change nothing. On a lake each of these is one
unit of `warehouse.twophase` (`warehouse.lakeload`). Also the reads of
stored articles (re-extraction's).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable, NamedTuple, Sequence

import duckdb
import pyarrow as pa

from transforms.records import Article, BatchRows, Sighting
from warehouse.arrow_rows import (
    ARTICLE_SCHEMA,
    FAILURE_SCHEMA,
    SIGHTING_SCHEMA,
    attempts_arrow,
    chunks,
    insert_rows,
    marks,
    to_arrow,
)
from warehouse.lookups import lookup
from warehouse.outbox import ATTEMPT_UPSERT, delete_keys
from warehouse.rows import named_rows
from warehouse.scopes import registered, transaction
from warehouse.search import queue_articles
from warehouse.story_rows import put_bands, put_fingerprints, refingerprint
from warehouse.twophase import is_lake

# What an upgrade changes (the page body `u` replaces a feed-text body):
# identity, first sighting, story and a feed date stay. Shared with the
# lake's version (warehouse.twophase).
UPGRADE_SET = """
    body = u.body, body_source = u.body_source, body_note = u.body_note,
    word_count = u.word_count, content_hash = u.content_hash, language = u.language,
    extractor = u.extractor, title = coalesce(articles.title, u.title),
    warc_file = u.warc_file, warc_offset = u.warc_offset,
    author = coalesce(articles.author, u.author),
    published_at = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                        THEN u.published_at ELSE articles.published_at END,
    published_date = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                          THEN u.published_date ELSE articles.published_date END,
    date_source = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                       THEN 'page' ELSE articles.date_source END
"""
# What re-extraction replaces (`r`: the article extracted again), on both
# backends; identity, URL, feed, first sighting and story stay.
REEXTRACT_SET = """
    title = r.title, author = r.author, published_at = r.published_at,
    published_date = r.published_date, date_source = r.date_source, date_note = r.date_note,
    language = r.language, body = r.body, body_source = r.body_source, body_note = r.body_note,
    word_count = r.word_count, content_hash = r.content_hash, extractor = r.extractor
"""
# The fields of an Article neither replaces: a new field of Article goes in
# one of the SETs or here (tests/warehouse/test_shapes.py holds them to it).
UPGRADE_KEEPS = frozenset({"article_id", "url", "source", "date_note", "first_seen_at", "run_id", "fingerprint",
                           "story_id", "duplicate_of", "story_similarity", "published_raw"})
REEXTRACT_KEEPS = frozenset({"article_id", "url", "source", "first_seen_at", "run_id", "fingerprint", "story_id",
                             "duplicate_of", "story_similarity", "warc_file", "warc_offset", "published_raw"})
# The columns of an article's earlier version kept in article_revisions.
REVISION_COLUMNS = "title, body, body_source, content_hash, extractor, published_at, language"


def columns_of(alias: str, columns: str) -> str:
    """`a.x, a.y` of the columns `x, y`."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def load_batch(con: duckdb.DuckDBPyConnection, batch: BatchRows, *, run_id: str = "",
               before_commit: Callable[[], None] | None = None,
               between_commits: Callable[[], None] | None = None) -> None:
    """Load one batch in one transaction: all of it, or none of it.

    `attempts` are upserted into page_attempts; `upgrades` replace the body of
    feed-text articles whose page has now been fetched (same article_id);
    `settled` (source, canonical_link) pairs leave page_attempts, `dequeued`
    ones leave entry_outbox. `before_commit` runs last inside the transaction
    (the crash-injection tests kill the process there). On a lake the batch
    is one unit of `warehouse.twophase` for the run `run_id`, and
    `between_commits` runs between its PostgreSQL and its lake commit."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.load_batch(con, batch, run_id=run_id, before_commit=before_commit,
                                   between_commits=between_commits)
    articles = batch.articles
    with transaction(con):
        rows = to_arrow(articles, ARTICLE_SCHEMA)
        new = insert_rows(con, "articles", rows, "ON CONFLICT DO NOTHING", "article_id")
        with registered(con, "_loaded", rows.select(["article_id"])):
            queue_articles(con, "_loaded")  # the search index picks them up after the run
        insert_sightings(con, batch.sightings)
        insert_rows(con, "failures", to_arrow(batch.failures, FAILURE_SCHEMA), "")
        insert_rows(con, "page_attempts", attempts_arrow(batch.attempts), ATTEMPT_UPSERT)
        put_fingerprints(con, [(a.article_id, a.fingerprint) for a in articles if a.fingerprint])
        put_bands(con, [(a.article_id, a.fingerprint, a.first_seen_at) for a in articles
                         if a.fingerprint and a.story_id == a.article_id and a.article_id in new], replace=False)
        _upgrade(con, batch.upgrades)
        delete_keys(con, "page_attempts", batch.settled)
        delete_keys(con, "entry_outbox", batch.dequeued)
        if before_commit is not None:
            before_commit()


def insert_sightings(con: duckdb.DuckDBPyConnection, sightings: Sequence[Sighting]) -> None:
    """Store the sightings not stored yet: one per (source, canonical_link),
    the first. Stored ones are looked up by link (the sightings_link index)
    rather than left to ON CONFLICT: DuckDB 1.5 checks a conflict on a
    two-column key with a hash join over the whole table, every batch."""
    if not sightings:
        return
    stored = set(lookup(con, "SELECT source, canonical_link FROM article_sightings", "canonical_link",
                        [s.canonical_link for s in sightings]))
    fresh: dict[tuple[str, str], Sighting] = {}
    for s in sightings:
        if (s.source, s.canonical_link) not in stored:
            fresh.setdefault((s.source, s.canonical_link), s)
    insert_rows(con, "article_sightings", to_arrow(list(fresh.values()), SIGHTING_SCHEMA), "")


def _upgrade(con: duckdb.DuckDBPyConnection, upgrades: Sequence[Article]) -> None:
    """The page body replaces the feed text; identity, first sighting, story
    and a feed date stay as they were. The new body's fingerprint replaces
    the old one (and a root's band keys with it)."""
    if not upgrades:
        return
    with registered(con, "_up", to_arrow(upgrades, ARTICLE_SCHEMA)):
        upgraded = {article_id for article_id, body_source in lookup(
            con, "SELECT article_id, body_source FROM articles", "article_id", [a.article_id for a in upgrades])
            if body_source == "feed"}
        # By key, with the ids as constants: a join with _up alone would read
        # the id column of every article (tests/warehouse/test_lookups.py).
        for ids in chunks(sorted(upgraded)):
            _keep_revisions(con, "_up", "upgrade", ids)
            con.execute(f"""
                UPDATE articles SET {UPGRADE_SET}
                FROM _up AS u
                -- only a feed-text body is replaced (`upgraded`): a page body
                -- already stored stays. No other condition beside the id list:
                -- it would keep DuckDB from answering it with the index.
                WHERE articles.article_id = u.article_id AND articles.article_id IN ({marks(ids)})
            """, ids)
        if upgraded:
            with registered(con, "_upgraded", pa.table({"article_id": sorted(upgraded)})):
                queue_articles(con, "_upgraded")
    refingerprint(con, [(a.article_id, a.fingerprint) for a in upgrades if a.article_id in upgraded and a.fingerprint])


def _keep_revisions(con: duckdb.DuckDBPyConnection, changes: str, reason: str,
                    ids: Sequence[str] | None = None) -> None:
    """Copy the current version of the articles in the registered table
    `changes` whose body is about to change into article_revisions. With
    `ids` (a batch's worth), only those articles are read, by primary key."""
    # MATERIALIZED: inlined, the id list would be merged with the join's
    # conditions and DuckDB would scan the whole table instead of the index.
    stored = (f"(WITH k AS MATERIALIZED (SELECT * FROM articles WHERE article_id IN ({marks(ids)})) "
              "SELECT * FROM k)") if ids is not None else "articles"
    con.execute(f"""
        INSERT INTO article_revisions (article_id, revised_at, reason, {REVISION_COLUMNS})
        SELECT a.article_id, now(), ?, {columns_of("a", REVISION_COLUMNS)}
        FROM {stored} a JOIN {changes} c USING (article_id)
        WHERE a.content_hash <> c.content_hash
    """, [reason, *(ids or ())])


def apply_reextraction(con: duckdb.DuckDBPyConnection, articles: Sequence[Article]) -> None:
    """Replace what extraction decides (body, metadata from the page, language,
    fingerprint) of these stored articles, keeping each previous version whose
    body changed in article_revisions. Identity, URL, feed and story stay."""
    if not articles:
        return
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.apply_reextraction(con, articles)
    with transaction(con):
        with registered(con, "_re", to_arrow(articles, ARTICLE_SCHEMA)):
            _keep_revisions(con, "_re", "reextract")
            con.execute(f"UPDATE articles SET {REEXTRACT_SET} FROM _re r WHERE articles.article_id = r.article_id")
            queue_articles(con, "_re")
        refingerprint(con, [(a.article_id, a.fingerprint) for a in articles if a.fingerprint])


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
    rows = named_rows(con.execute("""
        SELECT a.article_id, a.url, a.source, a.title, a.author, a.published_at, a.date_source, a.first_seen_at,
               a.run_id, a.warc_file, a.warc_offset, s.language AS source_language, a.published_raw
        FROM articles a LEFT JOIN sources s ON s.name = a.source
        WHERE a.warc_file IS NOT NULL AND a.body_source = 'page'
          AND ($since IS NULL OR a.published_date >= $since) AND ($source IS NULL OR a.source = $source)
        ORDER BY a.first_seen_at, a.article_id
    """, {"since": since, "source": source}))
    return [ArchivedArticle(**r) for r in rows]


def select_articles(con: duckdb.DuckDBPyConnection, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not article_ids:
        return {}
    names = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE articles)").fetchall()]
    rows = lookup(con, "SELECT * FROM articles", "article_id", article_ids)
    return {r[0]: dict(zip(names, r)) for r in rows}
