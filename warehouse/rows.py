"""The one row of a query that always returns one (an aggregate, a lookup
that must find its row), typed: DuckDB's and psycopg's `fetchone()` say
`tuple | None`, and a missing row there is a bug, said as one."""

from __future__ import annotations

from typing import Any, Protocol


class Fetches(Protocol):
    """A DuckDB connection or result, or a psycopg cursor, after execute()."""

    def fetchone(self) -> tuple[Any, ...] | None: ...


def one_row(result: Fetches) -> tuple[Any, ...]:
    """The row the last statement returned; RuntimeError when it returned none."""
    row = result.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row where one was expected")
    return row
