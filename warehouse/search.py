"""The warehouse side of full-text search: which articles the search index
must (re)index, their text, and the rows a search shows (the ranking into
stories is `transforms.ranking`).

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

from transforms.errors import NewsdeskError
from warehouse.lookups import lookup
from warehouse.rows import one_row
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
        upto = one_row(con.execute("SELECT coalesce(max(seq), 0) FROM search_queue"))[0]
        ids = [r[0] for r in con.execute("SELECT DISTINCT article_id FROM search_queue WHERE seq <= ?",
                                         [upto]).fetchall()]
        names = [name.strip() for name in INDEX_COLUMNS.split(",")]
        rows = lookup(con, f"SELECT {INDEX_COLUMNS} FROM articles", "article_id", ids)
    return Queued(upto, [dict(zip(names, r)) for r in rows])


def clear_queue(con: duckdb.DuckDBPyConnection, upto: int) -> None:
    con.execute("DELETE FROM search_queue WHERE seq <= ?", [upto])


def select_index_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the index build the warehouse was last synced with."""
    row = con.execute("SELECT index_id FROM search_index").fetchone()
    return row[0] if row else None


def begin_rebuild(con: duckdb.DuckDBPyConnection, rows_per_batch: int = 2_000) -> tuple[int, Iterator[pa.RecordBatch]]:
    """For a full rebuild: the queue position now, and every article as Arrow
    record batches read in the same snapshot (streamed: memory stays bounded).
    The caller ends the snapshot with `end_rebuild`."""
    con.begin()
    upto = one_row(con.execute("SELECT coalesce(max(seq), 0) FROM search_queue"))[0]
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


# -- On a lake: the index's watermark is a lake snapshot, kept by the index
# beside it on each machine, and what changed since is DuckLake's change
# feed. There is no queue: any machine's index catches up from its own mark.

def select_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    snapshot_id: int = one_row(con.execute("SELECT id FROM lake.current_snapshot()"))[0]
    return snapshot_id


class ChangesExpired(NewsdeskError):
    """The snapshot an index was built at has been expired (`maintain`):
    its changes since cannot be read, only the whole lake."""


def select_changed(con: duckdb.DuckDBPyConnection, since: int, upto: int) -> list[dict[str, Any]]:
    """The latest version of every article inserted or changed in snapshots
    (since, upto], from the change feed: O(changes), not O(articles)."""
    if upto <= since:
        return []
    names = [name.strip() for name in INDEX_COLUMNS.split(",")]
    try:
        oldest = one_row(con.execute("SELECT min(snapshot_id) FROM lake.snapshots()"))[0]
    except duckdb.Error as exc:
        raise ChangesExpired(str(exc)) from None
    if oldest is None or oldest > since:
        raise ChangesExpired(f"snapshot {since} is no longer kept (the oldest is {oldest})")
    rows = con.execute(f"""
        SELECT {INDEX_COLUMNS} FROM (
            SELECT *, row_number() OVER (PARTITION BY article_id ORDER BY snapshot_id DESC, rowid DESC) AS nth
            FROM lake.table_changes('articles', {int(since) + 1}, {int(upto)})
            WHERE change_type IN ('insert', 'update_postimage'))
        WHERE nth = 1
    """).fetchall()
    return [dict(zip(names, r)) for r in rows]


def begin_lake_rebuild(con: duckdb.DuckDBPyConnection,
                       rows_per_batch: int = 2_000) -> tuple[int, Iterator[pa.RecordBatch]]:
    """Every article, as of one snapshot (returned), streamed; end with `end_rebuild`."""
    con.begin()
    upto = select_snapshot(con)
    reader = con.execute(f"SELECT {INDEX_COLUMNS} FROM articles").to_arrow_reader(rows_per_batch)
    return upto, iter(reader)
