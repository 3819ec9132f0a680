"""The Arrow shapes of the records the warehouse loads, and the INSERT the
loads of an Arrow table go through.

Rows travel as Arrow tables (DuckDB loads them ~100x faster than
executemany), one shape per table. Each shape is derived from its record
type in `transforms.records` (a column per field, the type from the
annotation), so a field added to a record is a column of its shape; rows
read back become records by column name (`warehouse.rows`), never by
position.
`tests/warehouse/test_shapes.py` checks each shape against its table.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import date, datetime
from typing import Any, Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa

from transforms.records import Article, Failure, FeedEntry, FeedPoll, Fingerprint, PageAttempt, Sighting, SourceState
from warehouse.scopes import registered

TS = pa.timestamp("us", tz="UTC")


_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), bytes: pa.binary(),
    datetime: TS, date: pa.date32(),
}


def _arrow_type(hint: Any) -> pa.DataType:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: a nullable X
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return _ARROW_TYPES[hint]


def arrow_schema(fields: Iterable[tuple[str, pa.DataType]]) -> pa.Schema:
    """`pa.schema` of (name, type) pairs. For the type checker: pyarrow's
    stubs take a union there, against which a list mixing types (string,
    int32, timestamp) is inferred as list[tuple[str, object]] and refused."""
    return pa.schema(fields)


def shape_of(record: type, *, leave_out: Sequence[str] = ()) -> pa.Schema:
    """The Arrow schema of a record type: a column per field, in field order,
    typed from its annotation (`str | None` is a nullable string)."""
    hints = typing.get_type_hints(record)
    return arrow_schema([(f.name, _arrow_type(hints[f.name])) for f in dataclasses.fields(record)
                         if f.name not in leave_out])


ARTICLE_SCHEMA = shape_of(Article, leave_out=("fingerprint",))  # fingerprints: article_fingerprints
SIGHTING_SCHEMA = shape_of(Sighting)
FAILURE_SCHEMA = shape_of(Failure)
FEED_POLL_SCHEMA = shape_of(FeedPoll)
SOURCE_STATE_SCHEMA = shape_of(SourceState)  # the UPDATE of sources (feed_registry.update_source_states)
# The entry_outbox and page_attempts rows each hold a whole FeedEntry.
ENTRY_SCHEMA = shape_of(FeedEntry)
ENTRY_COLUMNS = ", ".join(ENTRY_SCHEMA.names)
OUTBOX_SCHEMA = arrow_schema([*ENTRY_SCHEMA, ("run_id", pa.string()), ("queued_at", TS), ("position", pa.int32())])
ATTEMPT_SCHEMA = arrow_schema([*ENTRY_SCHEMA, *shape_of(PageAttempt, leave_out=("entry",))])


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
        return {r[0] for r in result.fetchall()} if returning else set()


def _entry_columns(entries: Sequence[FeedEntry]) -> dict[str, list[Any]]:
    return {name: [getattr(e, name) for e in entries] for name in ENTRY_SCHEMA.names}


def attempts_arrow(attempts: Sequence[PageAttempt]) -> pa.Table:
    columns = _entry_columns([a.entry for a in attempts])
    for name in ATTEMPT_SCHEMA.names[len(ENTRY_SCHEMA):]:
        columns[name] = [getattr(a, name) for a in attempts]
    return pa.table(columns, schema=ATTEMPT_SCHEMA)


def outbox_arrow(queued: Sequence[FeedEntry], run_id: str, at: datetime) -> pa.Table:
    """entry_outbox rows: the entries a run queued, in the order found."""
    columns = _entry_columns(queued)
    columns.update(run_id=[run_id] * len(queued), queued_at=[at] * len(queued), position=list(range(len(queued))))
    return pa.table(columns, schema=OUTBOX_SCHEMA)


FINGERPRINT_SCHEMA = arrow_schema([
    ("article_id", pa.string()), ("scheme", pa.string()), ("shingles", pa.int32()), ("signature", pa.binary()),
])


def fingerprints_arrow(pairs: Sequence[tuple[str, Fingerprint]]) -> pa.Table:
    """article_fingerprints rows of these (article id, fingerprint) pairs."""
    return pa.table({
        "article_id": [a for a, _ in pairs], "scheme": [f.scheme for _, f in pairs],
        "shingles": [f.shingles for _, f in pairs], "signature": [f.signature for _, f in pairs],
    }, schema=FINGERPRINT_SCHEMA)


BAND_SCHEMA = arrow_schema([("band_key", pa.int64()), ("story_id", pa.string()), ("first_seen_at", TS)])


def bands_arrow(roots: Sequence[tuple[str, Fingerprint, datetime]]) -> pa.Table:
    """story_bands rows: a row per band key of each story root (id, fingerprint, first seen)."""
    return pa.table({
        "band_key": [k for _, f, _ in roots for k in f.band_keys],
        "story_id": [a for a, f, _ in roots for _ in f.band_keys],
        "first_seen_at": [t for _, f, t in roots for _ in f.band_keys],
    }, schema=BAND_SCHEMA)


STORY_SCHEMA = arrow_schema([("article_id", pa.string()), ("story_id", pa.string()),
                             ("duplicate_of", pa.string()), ("similarity", pa.float64())])


def stories_arrow(assignments: Sequence[tuple[str, str, str | None, float | None]]) -> pa.Table:
    """Story assignments (article_id, story_id, duplicate_of, similarity), as
    the backlog's clustering gives them to stored articles."""
    return pa.table({name: [a[i] for a in assignments] for i, name in enumerate(STORY_SCHEMA.names)},
                    schema=STORY_SCHEMA)


def feed_polls_arrow(polls: Sequence[FeedPoll]) -> pa.Table:
    return to_arrow(polls, FEED_POLL_SCHEMA)


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Key lists of at most `size` (see `warehouse.lookups.lookup`)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
