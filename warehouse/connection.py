"""The one place that opens DuckDB connections.

Writers open the file only for a short unit of work and close it again: DuckDB
allows one writing process per file, and another process cannot even read it
while a writer holds it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from warehouse.schema import migrate

# For type hints outside the warehouse, which never imports duckdb itself.
Connection = duckdb.DuckDBPyConnection


@contextmanager
def connect(path: str | os.PathLike, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, migrated to the current schema when writable."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: run `newsdesk ingest` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        # Every timestamp is shown and compared in UTC, whatever the machine's zone.
        con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            migrate(con)
        yield con
    finally:
        con.close()
