"""What the warehouse already holds, for the duplicate decisions of
`transforms.dedupe`: the articles and sightings of these links, GUIDs and
body hashes, looked up key by key through the indexes."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import duckdb
import pyarrow as pa

from transforms.records import FeedEntry, KnownKeys
from warehouse.arrow_rows import chunks, marks
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
    for part in chunks(distinct, chunk):
        rows += con.execute(f"{select} WHERE {column} IN ({marks(part)})", part).fetchall()
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
