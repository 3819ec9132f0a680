"""Every run ends in a terminal state: the `runs` row of an ingest.

A run's row is written 'running' when it starts and must not stay so: the
run ends 'completed' or 'failed' itself (a failure after the loads, in the
search index or the report, fails it too), and a run whose process died
(SIGKILL, power loss) is marked 'abandoned' by the next run of the same
warehouse. That next run holds the ingest lock (`flows.locks`), so no other
run of this warehouse can be alive: any other 'running' row is dead. On a
lake, where writers share the warehouse, a run is dead when its lock in
PostgreSQL is free (`warehouse.twophase.hold_run`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from flows.conflicts import retrying
from warehouse import run_rows
from warehouse.connection import connect


def abandon_dead_runs(con, run_id: str, now: datetime, logger) -> None:
    """Call only while holding the ingest lock of this warehouse."""
    for dead in run_rows.abandon_dead_runs(con, run_id, now):
        logger.warning("run %s never finished (its process ended): marked abandoned", dead)


@contextmanager
def recorded_run(db_path: Path | str, run_id: str, summary: Any, logger) -> Iterator[None]:
    """Finish the run's row when the block ends: 'completed' when it ran to
    its end, 'failed' with the error on any exception (cancellation too)."""
    try:
        yield
    except BaseException as exc:
        try:
            _finish(db_path, run_id, summary, "failed", repr(exc))
        except Exception as finish_exc:  # the warehouse itself failed: say so, keep the first error
            logger.error("run %s failed (%r) and could not be recorded as failed: %r", run_id, exc, finish_exc)
        raise
    _finish(db_path, run_id, summary, "completed", None)


def _finish(db_path: Path | str, run_id: str, summary: Any, status: str, error: str | None) -> None:
    def finish() -> None:
        with connect(db_path) as con:
            run_rows.finish_run(con, run_id, finished_at=datetime.now(timezone.utc), status=status,
                            counts=asdict(summary), error=error)

    retrying(finish)  # another writer of a lake may be updating its own run's row
