"""The Arrow shapes of the records the warehouse loads, and the one INSERT
every load goes through.

Rows travel as Arrow tables (DuckDB loads them ~100x faster than
executemany), one shape per table, built from the records of
`transforms.records` by field name. No Python loop issues one INSERT per row.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa

from transforms.records import FeedPoll, PageAttempt
from warehouse.scopes import registered
from warehouse.search import queue_articles

TS = pa.timestamp("us", tz="UTC")


def arrow_schema(fields: Iterable[tuple[str, pa.DataType]]) -> pa.Schema:
    """`pa.schema` of (name, type) pairs. For the type checker: pyarrow's
    stubs take a union there, against which a list mixing types (string,
    int32, timestamp) is inferred as list[tuple[str, object]] and refused."""
    return pa.schema(fields)


ARTICLE_SCHEMA = arrow_schema([
    ("article_id", pa.string()), ("url", pa.string()), ("source", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", TS),
    ("published_date", pa.date32()), ("date_source", pa.string()), ("date_note", pa.string()),
    ("language", pa.string()), ("body", pa.string()), ("body_source", pa.string()),
    ("body_note", pa.string()), ("word_count", pa.int32()), ("content_hash", pa.string()),
    ("first_seen_at", TS), ("run_id", pa.string()), ("extractor", pa.string()),
    ("story_id", pa.string()), ("duplicate_of", pa.string()), ("story_similarity", pa.float64()),
    ("warc_file", pa.string()), ("warc_offset", pa.int64()), ("published_raw", pa.string()),
])


SIGHTING_SCHEMA = arrow_schema([
    ("article_id", pa.string()), ("source", pa.string()), ("url", pa.string()),
    ("canonical_link", pa.string()), ("guid", pa.string()), ("seen_at", TS), ("run_id", pa.string()),
])


FAILURE_SCHEMA = arrow_schema([
    ("run_id", pa.string()), ("stage", pa.string()), ("url", pa.string()), ("source", pa.string()),
    ("reason", pa.string()), ("error", pa.string()), ("at", TS), ("transient", pa.bool_()),
    ("outcome", pa.string()),
])


def to_arrow(records: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Columnar Arrow table of frozen dataclass records (field names = columns)."""
    names = schema.names
    columns = {name: [getattr(r, name) for r in records] for name in names}
    return pa.table(columns, schema=schema)


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, conflict: str,
            returning: str | None = None) -> set[Any]:
    """Insert the rows; with `returning`, the values of that column in the rows
    actually inserted (not those an ON CONFLICT DO NOTHING skipped)."""
    if rows.num_rows == 0:
        return set()
    columns = ", ".join(f'"{name}"' for name in rows.schema.names)
    with registered(con, "_batch", rows):
        result = con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _batch {conflict}"
                             + (f' RETURNING "{returning}"' if returning else ""))
        inserted = {r[0] for r in result.fetchall()} if returning else set()
        if table == "articles":  # the search index picks them up after the run
            queue_articles(con, "_batch")
    return inserted


ATTEMPT_SCHEMA = arrow_schema([
    ("source", pa.string()), ("canonical_link", pa.string()), ("link", pa.string()), ("guid", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", TS), ("feed_text", pa.string()),
    ("language", pa.string()), ("published_raw", pa.string()), ("article_id", pa.string()),
    ("status", pa.string()), ("attempts", pa.int32()),
    ("last_reason", pa.string()), ("last_error", pa.string()), ("first_failed_at", TS),
    ("last_attempt_at", TS), ("next_attempt_at", TS),
])


ENTRY_FIELDS = ("source", "canonical_link", "link", "guid", "title", "author", "published_at", "feed_text", "language",
                 "published_raw")


def attempts_arrow(attempts: Sequence[PageAttempt]) -> pa.Table:
    columns = {name: [getattr(a.entry, name) for a in attempts] for name in ENTRY_FIELDS}
    for name in ATTEMPT_SCHEMA.names[len(ENTRY_FIELDS):]:
        columns[name] = [getattr(a, name) for a in attempts]
    return pa.table(columns, schema=ATTEMPT_SCHEMA)


OUTBOX_SCHEMA = arrow_schema([
    ("source", pa.string()), ("canonical_link", pa.string()), ("link", pa.string()), ("guid", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", TS), ("feed_text", pa.string()),
    ("language", pa.string()), ("published_raw", pa.string()), ("run_id", pa.string()), ("queued_at", TS),
    ("position", pa.int32()),
])


FINGERPRINT_SCHEMA = arrow_schema([
    ("article_id", pa.string()), ("scheme", pa.string()), ("shingles", pa.int32()), ("signature", pa.binary()),
])


BAND_SCHEMA = arrow_schema([("band_key", pa.int64()), ("story_id", pa.string()), ("first_seen_at", TS)])


FEED_POLL_SCHEMA = arrow_schema([
    ("run_id", pa.string()), ("source", pa.string()), ("fetched_at", TS), ("status", pa.int32()),
    ("ok", pa.bool_()), ("not_modified", pa.bool_()), ("error", pa.string()), ("entries", pa.int32()),
    ("new_entries", pa.int32()), ("warning", pa.string()),
])


def feed_polls_arrow(polls: Sequence[FeedPoll]) -> pa.Table:
    return to_arrow(polls, FEED_POLL_SCHEMA)


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Key lists of at most `size` (see `warehouse.queries.lookup`)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
