"""The `ingest` Prefect flow: feeds → pages → articles → DuckDB.

This module holds the flow and the run's lifecycle: the ingest lock, the
run's row (started, then completed or failed), the stages in order, the
search index and the run report. The stages live elsewhere:
`flows.polls` (feeds), `flows.pipeline` (pages, in overlapping batches),
`flows.stories` (clustering). The flow is async: a sync flow waits ~1 s on
exit for its heartbeat.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from flows import search_index
from flows.archive import WarcInput, archive_for, warc_input, warc_source
from flows.clock import utc_now
from flows.confine import check_run_paths
from flows.conflicts import retrying
from flows.crashpoints import crash_point
from flows.extraction import ExtractorPool, default_workers
from flows.fetch import Fetcher
from flows.locks import ingest_lock
from flows.pipeline import run_pages
from flows.polls import Leasing, poll_due, work_outbox
from flows.runstate import abandon_dead_runs, recorded_run
from flows.settings import Settings, default_db, load_settings, select_feeds, with_registry, worker_name
from flows.stories import cluster_backlog
from flows.summary import RunSummary
from transforms.reports import run_report
from warehouse import feed_registry, queries, run_rows
from warehouse.connection import Writer, check_warehouse_target, connect


@flow(name="ingest", log_prints=False)
async def ingest(sources: str | None = None, db: str | None = None, feeds: list[str] | None = None,
                 from_warc: list[str] | None = None, all_feeds: bool = False) -> dict:
    """Fetch the due feeds of the sources file (of all, or of those named or
    tagged in `feeds`; every one of them with `all_feeds`), extract the new
    articles and load them into the warehouse. Returns the run's counts.
    With `from_warc`, the pages come from those WARC files instead of the
    feeds.

    Only one ingest writes a warehouse at a time: a second one waits for the
    first (up to [pipeline] lock_wait_s), then gives up with an error."""
    logger = get_run_logger()
    sources, db = check_run_paths(sources, db, from_warc)  # under `newsdesk serve`: only the paths it allows
    settings: Settings = load_settings(sources)
    target = default_db(db)
    if not isinstance(target, Path):  # a lake: writers share it, no lock file
        return await _ingest(settings, target, from_warc, logger, all_feeds, feeds)
    db_path = target
    # A directory, a FIFO, a text file, another program's DuckDB file (looked at read-only: a
    # writable open would replay its WAL): refused before the lock beside it.
    check_warehouse_target(db_path)
    lock = ingest_lock(db_path, settings.pipeline.lock_wait_s)
    waited = await asyncio.to_thread(lock.__enter__)
    if waited > 1:
        logger.info("waited %.0f s for another ingest of %s to finish", waited, db_path)
    try:
        return await _ingest(settings, db_path, from_warc, logger, all_feeds, feeds)
    finally:
        lock.__exit__(None, None, None)


def flow_for(settings: Settings):
    """The `ingest` flow with the task runner the settings ask for."""
    if settings.pipeline.task_runner != "dask":
        return ingest
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.pipeline.dask_address:
        runner = DaskTaskRunner(address=settings.pipeline.dask_address)
    else:
        workers = settings.pipeline.workers or default_workers()
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": None})
    # prefect-dask subclasses a bare TaskRunner, which the type variable's default makes
    # TaskRunner[PrefectConcurrentFuture]: not the TaskRunner[PrefectFuture] with_options takes.
    return ingest.with_options(task_runner=runner)  # type: ignore[arg-type]


async def _ingest(settings: Settings, db_path: Path | str, from_warc: list[str] | None, logger,
                  all_feeds: bool = False, wanted: Sequence[str] | None = None) -> dict:
    run_id = str(flow_run.id or uuid.uuid4())
    if isinstance(db_path, Path):
        return await _run(settings, db_path, run_id, from_warc, logger, all_feeds, wanted)
    # On a lake the run holds a lock in PostgreSQL for its life: other
    # writers tell it from a dead run by that lock.
    from warehouse.lake import connect_lake
    from warehouse.maintenance import writing
    from warehouse.target import LakeTarget, parse_target
    from warehouse.twophase import hold_run, replay_staged

    target = parse_target(db_path)
    assert isinstance(target, LakeTarget)  # not a Path: default_db gave a lake's ATTACH string
    # writing: no `newsdesk maintain` compacts the lake while the run writes.
    with writing(target.dsn), hold_run(target.dsn, run_id):
        with connect_lake(target) as con:
            replayed = replay_staged(con)  # what writers that died between their two commits left
        if replayed:
            logger.info("finished %d unit(s) of work that a killed writer had committed to PostgreSQL only",
                        replayed)
        return await _run(settings, db_path, run_id, from_warc, logger, all_feeds, wanted)


async def _run(settings: Settings, db_path: Path | str, run_id: str, from_warc: list[str] | None, logger,
               all_feeds: bool = False, wanted: Sequence[str] | None = None) -> dict:
    started = utc_now()
    warc = [str(Path(p).expanduser().resolve()) for p in from_warc or ()]
    if warc:
        settings = settings.model_copy(update={"feeds": ()})

    def begin() -> tuple[dict, list]:
        with connect(db_path) as con:
            feed_registry.upsert_sources(con, [f.model_dump() for f in settings.feeds])
            feed_registry.upsert_sources(con, [warc_source(p) for p in warc], origin="warc")
            # We hold the ingest lock (on a lake: other runs' locks are checked): other 'running' rows are dead.
            abandon_dead_runs(con, run_id, started, logger)
            return queries.select_feed_state(con), ([] if warc else feed_registry.opml_feeds(con))

    feed_state, registry = retrying(begin)  # writers of a lake register the same feeds at once
    # The feeds polled: the sources file's and the OPML feeds of the registry (`newsdesk feeds import`).
    if not warc:
        settings = select_feeds(with_registry(settings, registry), wanted)
    summary = RunSummary(run_id=run_id, db=str(db_path), feeds_total=len(settings.feeds))
    with connect(db_path) as con:
        run_rows.start_run(con, run_id, started, flow_run.id, worker_name())
    with recorded_run(db_path, run_id, summary, logger):  # 'completed', or 'failed' on any exception below
        # Articles loaded before stories existed, or before [stories] changed.
        clock = time.perf_counter()
        backlog = await asyncio.to_thread(cluster_backlog, db_path, settings.stories.params())
        summary.dedupe_s += time.perf_counter() - clock
        if backlog:
            logger.info("fingerprinted %d stored articles for the current [stories] settings", backlog)
        await _stages(settings, db_path, run_id, started, summary, feed_state, logger, warc, all_feeds)
        with connect(db_path) as con:
            # Search sees this run's articles: the index takes only what the run's loads queued
            # (on a lake: what changed since the snapshot this machine's index has).
            refreshed = search_index.update(con, db_path)
            if refreshed.damage:
                logger.warning("the search index could not be read (%s): rebuilt it from the warehouse, "
                               "%d articles in %.1f s", refreshed.damage, refreshed.articles, refreshed.seconds)
            crash_point("indexing")
            per_feed = queries.select_run_feeds(con, run_id)
        if flow_run.id:  # under Prefect: the run's report, in the UI beside the flow run
            await acreate_markdown_artifact(markdown=run_report(asdict(summary), per_feed), key="newsdesk-run",
                                            description=f"newsdesk ingest into {db_path}")
    logger.info(
        "run %s: %d feeds (%d failed, %d backing off, %d not due, %d polled by other workers), %d entries, %d new articles, %d duplicates, "
        "%d near-duplicates, %d pending, %d failures, %d retries (%d loaded)",
        run_id, summary.feeds_total, summary.feeds_failed, summary.feeds_skipped, summary.feeds_not_due,
        summary.feeds_elsewhere, summary.entries_seen,
        summary.articles_new, summary.duplicates, summary.near_duplicates, summary.entries_pending, summary.failures,
        summary.retries, summary.retries_loaded,
    )
    return asdict(summary)


async def _stages(settings: Settings, db_path: Path | str, run_id: str, started: datetime, summary: RunSummary,
                  feed_state: dict, logger, warc: list[str], all_feeds: bool = False) -> None:
    """Poll the feeds, then fetch, extract and load their pages (or the
    pages of the WARC files, a file at a time)."""
    deadline = time.monotonic() + settings.pipeline.max_run_s
    policy = settings.retry.policy()
    # A lake's raw archive is relative to the working directory (there is no warehouse file to sit beside).
    archive = archive_for(settings.archive.enabled, settings.archive.dir, settings.archive.max_file_mb,
                          db_path if isinstance(db_path, Path) else Path.cwd() / "newsdesk.lake")
    leasing, shared = None, None
    if not isinstance(db_path, Path):  # a lake: the due feeds and each host's politeness shared by its workers
        from warehouse.host_turns import HostTurns
        from warehouse.target import LakeTarget, parse_target

        target = parse_target(db_path)
        assert isinstance(target, LakeTarget)  # not a Path: default_db gave a lake's ATTACH string
        dsn = target.dsn
        leasing = Leasing(dsn, f"{worker_name()} {run_id}", settings.workers.lease_s, settings.workers.feeds_per_lease)
        shared = HostTurns(dsn, leasing.owner, hold_s=settings.fetch.total_timeout_s + 60)
    async with Fetcher(settings.fetch, shared) as fetcher:
        pool = ExtractorPool(settings.pipeline.workers or default_workers())
        writer = Writer(db_path, hold_s=settings.pipeline.hold_db_s)

        async def pages(jobs, files: WarcInput | None = None) -> None:
            await run_pages(jobs, fetcher=fetcher, pool=pool, writer=writer, run_id=run_id, summary=summary,
                            file_sources=_file_sources(settings.feeds), policy=policy,
                            dedupe=settings.stories.params(), batch_size=settings.pipeline.batch_size,
                            task_runner=settings.pipeline.task_runner, archive=None if files else archive,
                            warc=files, deadline=deadline, logger=logger)
            if files is not None:
                writer.close()  # the next file's outbox step opens the warehouse itself

        try:
            if warc:
                await _backfill(warc, pages, db_path=db_path, run_id=run_id, summary=summary, deadline=deadline,
                                leasing=leasing, lease_s=settings.workers.warc_lease_s, logger=logger)
                return
            polled = await poll_due(fetcher, settings.feeds, feed_state, db_path=db_path, run_id=run_id,
                                    started=started, policy=policy, schedule=settings.schedule.rule(),
                                    summary=summary, archive=archive, logger=logger, all_feeds=all_feeds,
                                    leasing=leasing)
            await pages(work_outbox(db_path, run_id=run_id, summary=summary, polled=polled))
        finally:
            pool.close()
            writer.close()


async def _backfill(paths: list[str], pages, *, db_path: Path | str, run_id: str, summary: RunSummary,
                    deadline: float, leasing: Leasing | None, lease_s: float, logger) -> None:
    """The pages of WARC files, a file at a time (one file's index in memory).
    On a lake the files are leased: workers given the same files each take
    the next one nobody holds, a file done is skipped, and the file of a
    worker that died passes to the next (a hung one's after `[workers]
    warc_lease_s`); its records already loaded are then known, not loaded
    again."""
    todo = list(paths)
    if leasing is not None:
        from warehouse import leases

        await asyncio.to_thread(leases.register_files, leasing.dsn, [(p, Path(p).stat().st_size) for p in paths])

    def next_file() -> str | None:
        if leasing is None:
            return todo.pop(0) if todo else None
        path = leases.lease_file(leasing.dsn, paths, owner=leasing.owner, lease_s=lease_s)
        # None free: the rest are done or held; a dead run's file is freed and leased here.
        if path is None and leases.reclaim_dead(leasing.dsn):
            path = leases.lease_file(leasing.dsn, paths, owner=leasing.owner, lease_s=lease_s)
        return path

    try:
        while time.monotonic() < deadline and (path := await asyncio.to_thread(next_file)) is not None:
            files = await asyncio.to_thread(warc_input, [path])
            logger.info("WARC file %s: %d pages", path, len(files.entries))
            deferred = summary.deferred_pages
            await pages(work_outbox(db_path, run_id=run_id, summary=summary, extra=files.entries,
                                    unreadable=files.failures), files)
            crash_point("warc_file_loaded")
            if leasing is not None and summary.deferred_pages == deferred:  # else it stays for the next worker
                await asyncio.to_thread(leases.finish_file, leasing.dsn, path, owner=leasing.owner, run_id=run_id,
                                        records=len(files.entries))
    finally:
        if leasing is not None:
            await asyncio.to_thread(leases.release_files, leasing.dsn, leasing.owner)


def _file_sources(feeds: Sequence) -> frozenset[str]:
    """Feeds read from local files: their entries' pages may be files too."""
    return frozenset(f.name for f in feeds if urlsplit(f.url).scheme == "file")
