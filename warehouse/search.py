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

from datetime import datetime
from typing import Any, Iterator, NamedTuple, Sequence

import duckdb
import pyarrow as pa

from warehouse.queries import lookup
from warehouse.scopes import snapshot, transaction

# What the index needs of an article.
INDEX_COLUMNS = "article_id, title, body, language, source, published_date, story_id, first_seen_at"


def queue_articles(con: duckdb.DuckDBPyConnection, ids_table: str) -> None:
    """Queue the article_ids of the registered table `ids_table` for the
    search index (inside the caller's transaction)."""
    con.execute(f"INSERT INTO search_queue (article_id) SELECT DISTINCT article_id FROM {ids_table}")


class Queued(NamedTuple):
    upto: int  # highest seq read: clear up to here once the index has committed
    articles: list[dict[str, Any]]


def select_queued(con: duckdb.DuckDBPyConnection) -> Queued:
    """The current version of every queued article (one read transaction)."""
    with snapshot(con):
        upto = con.execute("SELECT coalesce(max(seq), 0) FROM search_queue").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT DISTINCT article_id FROM search_queue WHERE seq <= ?",
                                         [upto]).fetchall()]
        names = [name.strip() for name in INDEX_COLUMNS.split(",")]
        rows = lookup(con, f"SELECT {INDEX_COLUMNS} FROM articles", "article_id", ids)
    return Queued(upto, [dict(zip(names, r)) for r in rows])


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
    with transaction(con):
        con.execute("DELETE FROM search_index")
        con.execute("INSERT INTO search_index (index_id, built_at, articles) VALUES (?, ?, ?)",
                    [index_id, at, articles])
        clear_queue(con, upto)


def select_hit_rows(con: duckdb.DuckDBPyConnection, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What a search result shows of these articles, by id. One primary-key
    lookup each (a join would read the id column of every article)."""
    names = ("article_id", "published_date", "source", "title", "url", "body")
    rows = lookup(con, f"SELECT {', '.join(names)} FROM articles", "article_id", article_ids)
    return {row[0]: dict(zip(names, row)) for row in rows}
