"""The warehouse side of full-text search: which articles the search index
must (re)index, their text, and ranking the index's hits into stories.

The index itself is a tantivy index beside the DuckDB file
(`flows.search_index`); it never talks to DuckDB. Every load that adds or
changes an article queues its id in `search_queue`, in the same transaction
as the change, so the queue is the index's watermark: what the index has not
committed yet is exactly what is still queued. After the index commits, the
queue is cleared up to the sequence number it read; a crash in between only
means those articles are indexed again (replacing themselves) by the next run.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterator, NamedTuple, Sequence

import duckdb
import pyarrow as pa

# What the index needs of an article.
INDEX_COLUMNS = "article_id, title, body, language, source, published_date"


def queue_articles(con: duckdb.DuckDBPyConnection, ids_table: str) -> None:
    """Queue the article_ids of the registered table `ids_table` for the
    search index (inside the caller's transaction)."""
    con.execute(f"INSERT INTO search_queue (article_id) SELECT DISTINCT article_id FROM {ids_table}")


class Queued(NamedTuple):
    upto: int  # highest seq read: clear up to here once the index has committed
    articles: list[dict[str, Any]]


def select_queued(con: duckdb.DuckDBPyConnection) -> Queued:
    """The current version of every queued article (one read transaction)."""
    con.begin()
    try:
        upto = con.execute("SELECT coalesce(max(seq), 0) FROM search_queue").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT DISTINCT article_id FROM search_queue WHERE seq <= ?",
                                         [upto]).fetchall()]
        articles: list[dict[str, Any]] = []
        if ids:
            con.register("_queued", pa.table({"article_id": ids}))
            try:
                cur = con.execute(f"SELECT {INDEX_COLUMNS} FROM articles "
                                  "WHERE article_id IN (SELECT article_id FROM _queued)")
                names = [d[0] for d in cur.description]
                articles = [dict(zip(names, r)) for r in cur.fetchall()]
            finally:
                con.unregister("_queued")
    finally:
        con.rollback()  # read only
    return Queued(upto, articles)


def clear_queue(con: duckdb.DuckDBPyConnection, upto: int) -> None:
    con.execute("DELETE FROM search_queue WHERE seq <= ?", [upto])


def queue_length(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM search_queue").fetchone()[0]


def select_index_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the index build the warehouse was last synced with."""
    row = con.execute("SELECT index_id FROM search_index").fetchone()
    return row[0] if row else None


def article_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM articles").fetchone()[0]


def begin_rebuild(con: duckdb.DuckDBPyConnection, rows_per_batch: int = 2_000) -> tuple[int, Iterator[pa.RecordBatch]]:
    """For a full rebuild: the queue position now, and every article as Arrow
    record batches read in the same snapshot (streamed: memory stays bounded).
    The caller ends the snapshot with `end_rebuild`."""
    con.begin()
    upto = con.execute("SELECT coalesce(max(seq), 0) FROM search_queue").fetchone()[0]
    reader = con.execute(f"SELECT {INDEX_COLUMNS} FROM articles").to_arrow_reader(rows_per_batch)
    return upto, iter(reader)


def end_rebuild(con: duckdb.DuckDBPyConnection) -> None:
    con.rollback()


def finish_rebuild(con: duckdb.DuckDBPyConnection, index_id: str, upto: int, articles: int, at: datetime) -> None:
    """Record the new index build and clear what it covered from the queue."""
    con.begin()
    try:
        con.execute("DELETE FROM search_index")
        con.execute("INSERT INTO search_index VALUES (?, ?, ?)", [index_id, at, articles])
        clear_queue(con, upto)
        con.commit()
    except Exception:
        con.rollback()
        raise


def rank_hits(
    con: duckdb.DuckDBPyConnection,
    hits: Sequence[tuple[str, float]],
    *,
    since: date | None = None,
    until: date | None = None,
    source: str | None = None,
    language: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The index's hits (article_id, BM25 score), best-ranked article of each
    story only, with how many of the story's articles are among the hits."""
    if not hits:
        return []
    con.register("_hits", pa.table({"article_id": [h[0] for h in hits], "score": [float(h[1]) for h in hits]}))
    try:
        # Narrow columns only: the join reads them for every article.
        ranked = con.execute("""
            WITH matched AS (
                SELECT a.article_id, a.published_date, a.source, coalesce(a.story_id, a.article_id) AS story_id,
                       h.score,
                       row_number() OVER (PARTITION BY coalesce(a.story_id, a.article_id)
                                          ORDER BY h.score DESC, a.first_seen_at, a.article_id) AS rank_in_story,
                       count(*) OVER (PARTITION BY coalesce(a.story_id, a.article_id)) AS story_matches
                FROM _hits h JOIN articles a USING (article_id)
                WHERE ($since IS NULL OR a.published_date >= $since)
                  AND ($until IS NULL OR a.published_date <= $until)
                  AND ($source IS NULL OR a.source = $source)
                  AND ($language IS NULL OR a.language = $language)
            )
            SELECT score, published_date, source, article_id, story_id, story_matches
            FROM matched WHERE rank_in_story = 1
            ORDER BY score DESC, published_date DESC, article_id
            LIMIT $limit
        """, {"since": since, "until": until, "source": source, "language": language, "limit": limit}).fetchall()
    finally:
        con.unregister("_hits")
    out = []
    for score, published_date, source_, article_id, story_id, story_matches in ranked:
        # One primary-key lookup per result for the wide columns.
        title, url, body = con.execute("SELECT title, url, body FROM articles WHERE article_id = ?",
                                       [article_id]).fetchone()
        out.append(dict(score=score, published_date=published_date, source=source_, title=title, url=url, body=body,
                        article_id=article_id, story_id=story_id, story_matches=story_matches))
    return out
