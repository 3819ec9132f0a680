"""Rows read back: as records by column name (`named_rows`, `record_of`),
never by position; and the one row of a query that always returns one (an
aggregate, a lookup that must find its row), typed: DuckDB's and psycopg's
`fetchone()` say `tuple | None`, and a missing row there is a bug, said as
one."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Protocol, TypeVar

import duckdb


class Fetches(Protocol):
    """A DuckDB connection or result, or a psycopg cursor, after execute()."""

    def fetchone(self) -> tuple[Any, ...] | None: ...


def one_row(result: Fetches) -> tuple[Any, ...]:
    """The row the last statement returned; RuntimeError when it returned none."""
    row = result.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row where one was expected")
    return row


class _Record(Protocol):
    """What every dataclass has: the type `record_of` builds."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


R = TypeVar("R", bound=_Record)


def record_of(record: type[R], row: Mapping[str, Any], **given: Any) -> R:
    """A record from a row read by column name (`named_rows`); `given` fields
    are set from elsewhere (a nested record, a value the row lacks). A field
    with a default may be missing from the row; one without is an error."""
    values = {f.name: given[f.name] if f.name in given else row[f.name]
              for f in dataclasses.fields(record) if f.name in given or f.name in row}
    return record(**values)


def named_rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query, as dicts by column name."""
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
