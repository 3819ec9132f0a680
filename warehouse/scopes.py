"""The scopes warehouse functions need: a transaction, a read snapshot, and
an Arrow table registered under a name for the length of a statement or two.

Each was once a begin/commit/rollback or register/try/finally/unregister
block written out by hand in every function. No SQL of its own here beyond
the transaction, and nothing outside the warehouse uses these.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All of the block's statements, or none of them: commit when it ends,
    roll back (and re-raise) when it raises."""
    con.begin()
    try:
        yield con
    except Exception:
        con.rollback()
        raise
    con.commit()


@contextmanager
def snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Several reads that see one state of the database; nothing is written."""
    con.begin()
    try:
        yield con
    finally:
        con.rollback()


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[str]:
    """`table` (an Arrow table or DataFrame) visible to SQL as `name` inside
    the block, and unregistered after it, whatever happens."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)
