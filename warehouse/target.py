"""What `--db` names: a DuckDB file (the embedded default) or a DuckLake
whose catalog is a PostgreSQL database.

A lake is named by the string DuckDB's ATTACH takes,
`ducklake:postgres:dbname=news host=db.internal user=newsdesk`; anything
else is a file path. Only a PostgreSQL catalog is accepted: a DuckDB-file
catalog has one client, like the plain file, and a SQLite catalog beside an
open reader failed every commit (docs/warehouse.md, "The lake").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transforms.errors import InputError

LAKE_PREFIX = "ducklake:"
POSTGRES_PREFIX = "ducklake:postgres:"


class BadTarget(InputError):
    """`--db` names a lake that newsdesk cannot use."""


@dataclass(frozen=True)
class FileTarget:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class LakeTarget:
    attach: str                    # as given: ducklake:postgres:<libpq connection string>
    data_path: str | None = None   # only for a new lake; the catalog keeps it from then on

    @property
    def dsn(self) -> str:
        """The catalog's PostgreSQL connection string (libpq keywords or URI)."""
        return self.attach[len(POSTGRES_PREFIX):]

    def __str__(self) -> str:
        return self.attach


Target = FileTarget | LakeTarget


def is_lake(value: str | os.PathLike[str] | None) -> bool:
    return value is not None and str(value).startswith(LAKE_PREFIX)


def parse_target(value: str | os.PathLike[str], data_path: str | os.PathLike[str] | None = None) -> Target:
    """A lake for `ducklake:postgres:...`, else the file at that path.
    `data_path` (a folder, or an object-storage URL passed to DuckDB as it
    is) only matters to a lake."""
    text = str(value)
    if not text.startswith(LAKE_PREFIX):
        return FileTarget(Path(text).expanduser())
    if not text.startswith(POSTGRES_PREFIX):
        catalog = text[len(LAKE_PREFIX):].split(":", 1)[0] or "(none)"
        raise BadTarget(f"a lake needs a PostgreSQL catalog (ducklake:postgres:dbname=... host=...), "
                        f"not {catalog!r}: other catalogs do not let readers and writers share it")
    if not text[len(POSTGRES_PREFIX):].strip():
        raise BadTarget("ducklake:postgres: needs a connection string, e.g. "
                        "'ducklake:postgres:dbname=news host=127.0.0.1 user=newsdesk'")
    if data_path is not None:
        data = str(data_path)
        if "://" not in data:  # a local or shared folder; URLs (s3://, ...) pass through
            data = str(Path(data).expanduser().resolve())
        data_path = data.rstrip("/") + "/"
    return LakeTarget(text, data_path)


def parse_lake(value: str | os.PathLike[str], data_path: str | os.PathLike[str] | None = None) -> LakeTarget:
    """`parse_target` of a value known to name a lake (`is_lake`);
    BadTarget if it names a file."""
    target = parse_target(value, data_path)
    if not isinstance(target, LakeTarget):
        raise BadTarget(f"{value} is not a lake (ducklake:postgres:...)")
    return target
