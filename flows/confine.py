"""Which files a run started through the Prefect API may touch.

Whoever can reach the Prefect API (the UI's Run > Custom run) can set the
flow's parameters. Under `newsdesk serve` a run therefore takes its
`sources`, `db` and `from_warc` paths only from what the operator chose when
starting serve: the sources file and warehouse serve was started with, or
paths strictly inside a directory named with `newsdesk serve --allow-dir
DIR` (not the directory itself, nor any existing directory). Anything else
fails the run, naming the parameter, before a file is opened or created.

serve hands the rule to its runs in an environment variable, which the runs
(subprocesses of serve) inherit and the API cannot set. Without it (a plain
`newsdesk ingest` from a shell) every path is the user's own choice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from transforms.errors import InputError
from warehouse.target import is_lake

CONFINE_ENV = "NEWSDESK_SERVE_CONFINE"


class ParameterNotAllowed(InputError):
    """A run parameter names a path outside what the served deployment may use."""


def _resolved(path: str | os.PathLike) -> Path:
    # resolve() follows symlinks: a link inside an allowed directory that
    # points out of it is judged by where it points.
    return Path(path).expanduser().resolve()


def confine_runs(sources: str, db: str, allow_dirs: Sequence[str | os.PathLike]) -> dict:
    """Called by serve before serving: every run of this process is confined.
    Returns the rule, as set in the environment."""
    # A lake is named, not a path: kept as given, and the only lake runs may use.
    rule = {"sources": str(_resolved(sources)), "db": db if is_lake(db) else str(_resolved(db)),
            "dirs": [str(_resolved(d)) for d in allow_dirs]}
    os.environ[CONFINE_ENV] = json.dumps(rule)
    return rule


def _inside(path: Path, dirs: Sequence[str]) -> bool:
    # Strictly inside: the allowed directory itself is no file path, and a
    # warehouse there would put its lock file (<db>.ingest.lock) beside it,
    # outside the directory.
    return any(path != Path(d) and path.is_relative_to(d) for d in dirs)


def _check(name: str, value: str, served: str | None, dirs: Sequence[str]) -> str:
    if is_lake(value):
        # A lake's name reaches a PostgreSQL server: only the served one.
        if value == served:
            return value
        raise ParameterNotAllowed(f"parameter {name!r}: the lake {value} is not allowed here; "
                                  f"the served default is {served}")
    path = _resolved(value)
    if path.is_dir():
        # Every parameter names a file; a directory would fail later, after
        # the lock file beside it was created.
        raise ParameterNotAllowed(f"parameter {name!r}: {value} is a directory, not a file")
    if (served is not None and str(path) == served) or _inside(path, dirs):
        return str(path)
    where = ("the directories named with --allow-dir: " + ", ".join(dirs)) if dirs else \
        "any directory this deployment may use (none was named with newsdesk serve --allow-dir)"
    default = f" the served default is {served};" if served else ""
    raise ParameterNotAllowed(f"parameter {name!r}: {value} is not allowed here:{default} other paths must be "
                              f"inside {where}")


def check_run_paths(sources: str | None, db: str | None,
                    from_warc: Sequence[str] | None) -> tuple[str | None, str | None]:
    """The `sources` and `db` a run may use: unchanged outside serve; under
    serve, None becomes the served file, and every path must be the served
    one or inside an allowed directory, else ParameterNotAllowed."""
    raw = os.environ.get(CONFINE_ENV)
    if not raw:
        return sources, db
    rule = json.loads(raw)
    dirs = rule["dirs"]
    sources = _check("sources", sources, rule["sources"], dirs) if sources else rule["sources"]
    db = _check("db", db, rule["db"], dirs) if db else rule["db"]
    for path in from_warc or ():
        _check("from_warc", path, None, dirs)
    return sources, db
