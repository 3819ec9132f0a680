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
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from flows import search_index
from flows.archive import archive_for, warc_input, warc_source
from flows.clock import utc_now
from flows.confine import check_run_paths
from flows.conflicts import retrying
from flows.context import Leasing, RunContext
from flows.crashpoints import crash_point
from flows.extraction import ExtractorPool, default_workers
from flows.fetch import Fetcher
from flows.locks import ingest_lock
from flows.pipeline import run_pages
from flows.polls import poll_due, work_outbox
from flows.runstate import abandon_dead_runs, recorded_run
from flows.settings import Settings, default_db, load_settings, select_feeds, with_registry, worker_name
from flows.stories import cluster_backlog
from flows.summary import RunTally
from transforms.records import RegistryFeed, RunCounts
from transforms.reports import run_report
from warehouse import feed_registry, run_rows
from warehouse.connection import Writer, check_warehouse_target, connect
from warehouse.feed_registry import FeedState


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
    asked = Asked(warc=[str(Path(p).expanduser().resolve()) for p in from_warc or ()], all_feeds=all_feeds,
                  wanted=feeds)
    if not isinstance(target, Path):  # a lake: writers share it, no lock file
        return await _ingest(settings, target, asked, logger)
    db_path = target
    # A directory, a FIFO, a text file, another program's DuckDB file (looked at read-only: a
    # writable open would replay its WAL): refused before the lock beside it.
    check_warehouse_target(db_path)
    lock = ingest_lock(db_path, settings.pipeline.lock_wait_s)
    waited = await asyncio.to_thread(lock.__enter__)
    if waited > 1:
        logger.info("waited %.0f s for another ingest of %s to finish", waited, db_path)
    try:
        return await _ingest(settings, db_path, asked, logger)
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


@dataclass(frozen=True, slots=True)
class Asked:
    """What a run was asked to do: the flow's parameters, checked."""

    warc: list[str]  # WARC files (absolute paths) to take the pages from, instead of the feeds
    all_feeds: bool  # poll every feed, due or not
    wanted: Sequence[str] | None  # only the feeds named or tagged so


async def _ingest(settings: Settings, target: Path | str, asked: Asked, logger) -> dict:
    run_id = str(flow_run.id or uuid.uuid4())
    if isinstance(target, Path):
        return await _run(settings, target, run_id, asked, logger)
    # On a lake the run holds a lock in PostgreSQL for its life: other
    # writers tell it from a dead run by that lock.
    from warehouse.lake import connect_lake
    from warehouse.maintenance import writing
    from warehouse.target import parse_lake
    from warehouse.twophase import hold_run, replay_staged

    lake = parse_lake(target)
    # writing: no `newsdesk maintain` compacts the lake while the run writes.
    with writing(lake.dsn), hold_run(lake.dsn, run_id):
        with connect_lake(lake) as con:
            replayed = replay_staged(con)  # what writers that died between their two commits left
        if replayed:
            logger.info("finished %d unit(s) of work that a killed writer had committed to PostgreSQL only",
                        replayed)
        return await _run(settings, target, run_id, asked, logger)


async def _run(settings: Settings, target: Path | str, run_id: str, asked: Asked, logger) -> dict:
    started = utc_now()
    if asked.warc:
        settings = settings.model_copy(update={"feeds": ()})

    def begin() -> tuple[dict[str, FeedState], list[RegistryFeed]]:
        with connect(target) as con:
            feed_registry.upsert_sources(con, [f.model_dump() for f in settings.feeds])
            feed_registry.upsert_sources(con, [warc_source(p) for p in asked.warc], origin="warc")
            # We hold the ingest lock (on a lake: other runs' locks are checked): other 'running' rows are dead.
            abandon_dead_runs(con, run_id, started, logger)
            return feed_registry.select_feed_state(con), ([] if asked.warc else feed_registry.opml_feeds(con))

    feed_state, registry = retrying(begin)  # writers of a lake register the same feeds at once
    # The feeds polled: the sources file's and the OPML feeds of the registry (`newsdesk feeds import`).
    if not asked.warc:
        settings = select_feeds(with_registry(settings, registry), asked.wanted)
    tally = RunTally(run_id, str(target))
    tally.add(RunCounts(feeds_total=len(settings.feeds)))
    with connect(target) as con:
        run_rows.start_run(con, run_id, started, flow_run.id, worker_name())
    with recorded_run(target, run_id, tally, logger):  # 'completed', or 'failed' on any exception below
        # Articles loaded before stories existed, or before [stories] changed.
        clock = time.perf_counter()
        backlog = await asyncio.to_thread(cluster_backlog, target, settings.stories.params())
        tally.add(RunCounts(dedupe_s=time.perf_counter() - clock))
        if backlog:
            logger.info("fingerprinted %d stored articles for the current [stories] settings", backlog)
        async with _context(settings, target, run_id, started, tally, logger) as ctx:
            await _stages(ctx, feed_state, asked)
        with connect(target) as con:
            # Search sees this run's articles: the index takes only what the run's loads queued
            # (on a lake: what changed since the snapshot this machine's index has).
            refreshed = search_index.update(con, target)
            if refreshed.damage:
                logger.warning("the search index could not be read (%s): rebuilt it from the warehouse, "
                               "%d articles in %.1f s", refreshed.damage, refreshed.articles, refreshed.seconds)
            crash_point("indexing")
            per_feed = run_rows.select_run_feeds(con, run_id)
        if flow_run.id:  # under Prefect: the run's report, in the UI beside the flow run
            report = run_report(run_id, str(target), tally.counts, per_feed)
            await acreate_markdown_artifact(markdown=report, key="newsdesk-run",
                                            description=f"newsdesk ingest into {target}")
    c = tally.counts
    logger.info(
        "run %s: %d feeds (%d failed, %d backing off, %d not due, %d polled by other workers), %d entries, "
        "%d new articles, %d duplicates, %d near-duplicates, %d pending, %d failures, %d retries (%d loaded)",
        run_id, c.feeds_total, c.feeds_failed, c.feeds_skipped, c.feeds_not_due, c.feeds_elsewhere, c.entries_seen,
        c.articles_new, c.duplicates, c.near_duplicates, c.entries_pending, c.failures, c.retries, c.retries_loaded,
    )
    return tally.as_dict()


@asynccontextmanager
async def _context(settings: Settings, target: Path | str, run_id: str, started: datetime, tally: RunTally,
                   logger) -> AsyncIterator[RunContext]:
    """The run's context: its HTTP client, extraction workers and warehouse
    writer, open for the stages and closed after them."""
    deadline = time.monotonic() + settings.pipeline.max_run_s
    # A lake's raw archive is relative to the working directory (there is no warehouse file to sit beside).
    archive = archive_for(settings.archive.enabled, settings.archive.dir, settings.archive.max_file_mb,
                          target if isinstance(target, Path) else Path.cwd() / "newsdesk.lake")
    leasing, shared = None, None
    if not isinstance(target, Path):  # a lake: the due feeds and each host's politeness shared by its workers
        from warehouse.host_turns import HostTurns
        from warehouse.target import parse_lake

        dsn = parse_lake(target).dsn
        leasing = Leasing(dsn, f"{worker_name()} {run_id}", settings.workers.lease_s,
                          settings.workers.feeds_per_lease, settings.workers.warc_lease_s)
        shared = HostTurns(dsn, leasing.owner, hold_s=settings.fetch.total_timeout_s + 60)
    async with Fetcher(settings.fetch, shared) as fetcher:
        pool = ExtractorPool(settings.pipeline.workers or default_workers())
        writer = Writer(target, hold_s=settings.pipeline.hold_db_s)
        try:
            yield RunContext(run_id=run_id, target=target, settings=settings, started=started, logger=logger,
                             tally=tally, fetcher=fetcher, pool=pool, writer=writer, deadline=deadline,
                             archive=archive, leasing=leasing)
        finally:
            pool.close()
            writer.close()


async def _stages(ctx: RunContext, feed_state: dict[str, FeedState], asked: Asked) -> None:
    """Poll the feeds, then fetch, extract and load their pages (or the
    pages of the WARC files, a file at a time)."""
    if asked.warc:
        await _backfill(ctx, asked.warc)
        return
    polled = await poll_due(ctx, feed_state, all_feeds=asked.all_feeds)
    jobs, counts = work_outbox(ctx, polled=polled)
    ctx.tally.add(counts)
    await run_pages(ctx, jobs)


async def _backfill(ctx: RunContext, paths: list[str]) -> None:
    """The pages of WARC files, a file at a time (one file's index in memory).
    On a lake the files are leased: workers given the same files each take
    the next one nobody holds, a file done is skipped, and the file of a
    worker that died passes to the next (a hung one's after `[workers]
    warc_lease_s`); its records already loaded are then known, not loaded
    again."""
    leasing = ctx.leasing
    todo = list(paths)
    if leasing is not None:
        from warehouse import leases

        await asyncio.to_thread(leases.register_files, leasing.dsn, [(p, Path(p).stat().st_size) for p in paths])

    def next_file() -> str | None:
        if leasing is None:
            return todo.pop(0) if todo else None
        path = leases.lease_file(leasing.dsn, paths, owner=leasing.owner, lease_s=leasing.file_lease_s)
        # None free: the rest are done or held; a dead run's file is freed and leased here.
        if path is None and leases.reclaim_dead(leasing.dsn):
            path = leases.lease_file(leasing.dsn, paths, owner=leasing.owner, lease_s=leasing.file_lease_s)
        return path

    try:
        while time.monotonic() < ctx.deadline and (path := await asyncio.to_thread(next_file)) is not None:
            files = await asyncio.to_thread(warc_input, [path])
            ctx.logger.info("WARC file %s: %d pages", path, len(files.entries))
            jobs, counts = work_outbox(ctx, extra=files.entries, unreadable=files.failures)
            ctx.tally.add(counts)
            deferred = await run_pages(ctx, jobs, files)
            ctx.writer.close()  # the next file's outbox step opens the warehouse itself
            crash_point("warc_file_loaded")
            if leasing is not None and not deferred:  # else it stays for the next worker
                await asyncio.to_thread(leases.finish_file, leasing.dsn, path, owner=leasing.owner,
                                        run_id=ctx.run_id, records=len(files.entries))
    finally:
        if leasing is not None:
            await asyncio.to_thread(leases.release_files, leasing.dsn, leasing.owner)
