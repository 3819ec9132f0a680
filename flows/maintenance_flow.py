"""The `maintain` Prefect flow: `newsdesk maintain` on a schedule
(prefect.yaml's deployment maintain/newsdesk-maintain, daily, one run at a
time). Thin on purpose: the work is flows.maintenance.maintain, the same
call the CLI makes."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.confine import check_run_paths
from flows.maintenance import describe
from flows.maintenance import maintain as run_maintenance
from flows.settings import default_db, load_settings


@flow(name="maintain", log_prints=False)
def maintain(sources: str | None = None, db: str | None = None, keep_days: int | None = None,
             grace_hours: float | None = None) -> dict:
    """Maintain the warehouse: on a lake, flush inlined rows, expire
    snapshots older than `keep_days` (else the sources file's [maintenance]
    keep_days, 30), rewrite and merge small files, delete files unreferenced
    for `grace_hours` (24); on a DuckDB file, a CHECKPOINT. Fails at once
    when another maintenance of the lake is running."""
    logger = get_run_logger()
    sources, db = check_run_paths(sources, db, None)
    settings = load_settings(sources).maintenance
    keep = settings.keep_days if keep_days is None else keep_days
    grace = settings.grace_hours if grace_hours is None else grace_hours
    done = run_maintenance(default_db(db), keep_days=keep, grace_hours=grace, on_step=logger.info)
    lines = describe(done, grace)
    for line in lines:
        logger.info("%s", line)
    report: dict[str, Any] = {"target": done.target, "lines": lines}
    if done.lake is not None:
        report.update(files_before=done.lake.files_before, files_after=done.lake.files_after,
                      expired=len(done.lake.expired), deleted=len(done.lake.deleted),
                      orphans=len(done.lake.orphans))
    return report
