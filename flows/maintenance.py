"""`newsdesk maintain`, without Prefect: open the warehouse, maintain it
(warehouse/maintenance.py), say what was done. The CLI calls it directly,
the Prefect flow `maintain` (flows/maintenance_flow.py) through a task-less
flow; neither adds logic of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from transforms.errors import NoWarehouse
from warehouse.maintenance import LakeMaintenance


@dataclass(frozen=True)
class Maintained:
    target: str
    lake: LakeMaintenance | None = None                  # a lake's report
    file_bytes: tuple[int, int] | None = None            # a file's size before and after its CHECKPOINT


def maintain(db: str | Path, *, keep_days: int, grace_hours: float,
             on_step: Callable[[str], None] | None = None) -> Maintained:
    """Maintain the warehouse `db` names (settings.default_db): a lake, or a
    DuckDB file. Raises MaintenanceRunning when another maintenance holds
    the lake, FileNotFoundError when there is no warehouse."""
    if isinstance(db, Path):
        from warehouse.connection import check_warehouse_file, connect
        from warehouse.maintenance import checkpoint_file

        check_warehouse_file(db)
        if not db.exists():
            raise NoWarehouse(f"no warehouse at {db}: nothing to maintain")
        size = db.stat().st_size
        with connect(db) as con:  # waits for an ingest's load to let go of the file
            checkpoint_file(con)
        return Maintained(str(db), file_bytes=(size, db.stat().st_size))

    from warehouse.lake import NewLakeNeedsDataPath, connect_lake
    from warehouse.maintenance import maintain_lake
    from warehouse.target import parse_lake

    target = parse_lake(db)
    try:
        with connect_lake(target) as con:
            report = maintain_lake(con, keep_days=keep_days, grace=timedelta(hours=grace_hours), on_step=on_step)
    except NewLakeNeedsDataPath:
        raise NoWarehouse(f"no warehouse in the lake {db}: nothing to maintain") from None
    return Maintained(db, lake=report)


def _when(at) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def describe(done: Maintained, grace_hours: float) -> list[str]:
    """What `newsdesk maintain` prints, and the flow logs."""
    if done.lake is None:
        assert done.file_bytes is not None  # a file's report: maintain() gives its sizes
        before, after = done.file_bytes
        return [f"checkpointed {done.target}: a DuckDB file keeps no snapshots and no small files "
                f"({before / 2**20:.1f} MB before, {after / 2**20:.1f} MB after)"]
    r = done.lake
    lines = [f"maintained {done.target}:", "  files per table (data and delete files the last snapshot reads), "
             "before -> after:"]
    for table, n in r.files_before.items():
        rows = r.inlined_rows.get(table, 0)
        flushed = f" ({rows} inlined row{'s' if rows != 1 else ''} flushed)" if rows else ""
        lines.append(f"    {table}: {n} -> {r.files_after[table]}{flushed}")
    ids = f" (ids {r.expired[0]}-{r.expired[-1]})" if r.expired else ""
    lines.append(f"  snapshots older than {_when(r.expired_before)} expired: {len(r.expired)}{ids}; "
                 f"kept: {r.kept}, the oldest {r.oldest_kept[0]} from {_when(r.oldest_kept[1])}")
    lines.append(f"  files deleted: {len(r.deleted)} no longer referenced, {len(r.orphans)} orphaned; "
                 f"{r.waiting} unreferenced for less than {grace_hours:g} h are left for the next run")
    return lines
