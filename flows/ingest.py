"""The `ingest` Prefect flow: feeds → pages → articles → DuckDB.

The flow is async (a sync flow waits ~1 s on exit for its heartbeat) and works
in batches: one task per stage per batch of pages, never one per article,
because a Prefect task costs about as much as an extraction. The warehouse is
opened only for short units of work, so readers can get in between.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows import progress
from flows.fetch import Fetcher, Response
from flows.settings import FeedSettings, Settings, default_db_path, load_settings
from transforms.articles import build_article, decode_html, extract_page, looks_like_html
from transforms.dedupe import plan_entries, resolve_duplicates, sighting
from transforms.errors import FetchError, NewsdeskError
from transforms.feeds import parse_feed
from transforms.records import Article, Failure, FeedEntry, ParsedFeed
from warehouse import load, queries
from warehouse.connection import connect

_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_SNIFF_TYPES = {"", "application/octet-stream", "text/plain"}
_PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_FEED_ACCEPT = "application/rss+xml,application/atom+xml,application/rdf+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.5"


@dataclass
class RunSummary:
    run_id: str
    db: str
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    entries_seen: int = 0
    entries_known: int = 0
    articles_new: int = 0
    articles_from_feed: int = 0
    duplicates: int = 0
    entries_failed: int = 0
    failures: int = 0
    pages_fetched: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def add_failures(self, failures: Sequence[Failure]) -> None:
        self.failures += len(failures)
        for f in failures:
            self.failure_reasons[f.reason] = self.failure_reasons.get(f.reason, 0) + 1


@dataclass(frozen=True, slots=True)
class FeedFetch:
    feed: FeedSettings
    response: Response | None
    error: FetchError | None
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class PageFetch:
    entries: tuple[FeedEntry, ...]  # the entries that share this page's link
    response: Response | None
    error: NewsdeskError | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _failure(error: NewsdeskError, *, run_id: str, source: str | None, at: datetime, outcome: str) -> Failure:
    return Failure(run_id=run_id, stage=error.stage, url=error.url, source=source, reason=error.reason,
                   error=error.message, at=at, transient=error.transient, outcome=outcome)


# -- tasks -------------------------------------------------------------------


@task(cache_policy=NO_CACHE)
async def fetch_feeds(fetcher: Fetcher, feeds: Sequence[FeedSettings], validators: dict[str, tuple]) -> list[FeedFetch]:
    """Fetch every feed concurrently, with conditional GET."""

    async def one(feed: FeedSettings) -> FeedFetch:
        etag, last_modified = validators.get(feed.name, (None, None))
        try:
            resp = await fetcher.get(feed.url, etag=etag, last_modified=last_modified, allow_file=True, accept=_FEED_ACCEPT)
            return FeedFetch(feed, resp, None, _now())
        except FetchError as exc:
            return FeedFetch(feed, None, exc, _now())

    return list(await asyncio.gather(*(one(f) for f in feeds)))


def _parse_all(fetched: Sequence[FeedFetch]) -> list[ParsedFeed | NewsdeskError | None]:
    out: list[ParsedFeed | NewsdeskError | None] = []
    for item in fetched:
        if item.response is None or item.response.not_modified:
            out.append(None)
            continue
        try:
            out.append(parse_feed(
                item.response.body, source=item.feed.name, url=item.response.final_url,
                headers=item.response.headers, language=item.feed.language,
            ))
        except NewsdeskError as exc:
            out.append(exc)
    return out


@task(cache_policy=NO_CACHE)
async def parse_feeds(fetched: Sequence[FeedFetch]) -> list[ParsedFeed | NewsdeskError | None]:
    """feedparser is CPU-bound (~100 ms per 200 items): keep it off the event loop."""
    return await asyncio.to_thread(_parse_all, fetched)


@task(cache_policy=NO_CACHE)
async def fetch_pages(fetcher: Fetcher, groups: Sequence[tuple[FeedEntry, ...]], file_sources: frozenset[str]) -> list[PageFetch]:
    """Fetch the page of each group of entries; different hosts in parallel."""

    async def one(group: tuple[FeedEntry, ...]) -> PageFetch:
        entry = group[0]
        try:
            resp = await fetcher.get(entry.link, allow_file=entry.source in file_sources, accept=_PAGE_ACCEPT)
            return PageFetch(group, resp, None)
        except FetchError as exc:
            return PageFetch(group, None, exc)

    results = list(await asyncio.gather(*(one(g) for g in groups)))
    return results


def _extract_one(page: PageFetch, run_id: str, now: datetime) -> tuple[Article | None, NewsdeskError | None]:
    """Article for one page; falls back to the feed text when the page fails.
    Returns the article and the problem met on the way (either may be None)."""
    entry = page.entries[0]
    problem: NewsdeskError | None = page.error
    extracted = None
    resp = page.response
    if resp is not None:
        if resp.content_type in _HTML_TYPES or (resp.content_type in _SNIFF_TYPES and looks_like_html(resp.body)):
            try:
                extracted = extract_page(decode_html(resp.body, resp.charset), resp.final_url)
            except NewsdeskError as exc:
                problem = exc
        else:
            problem = FetchError(entry.link, "not_html", f"Content-Type {resp.content_type or 'missing'}")
    try:
        article = build_article(entry, extracted, page_problem=problem.reason if problem else None, run_id=run_id, now=now)
    except NewsdeskError as exc:
        return None, problem or exc
    return article, problem


def _extract_all(pages: Sequence[PageFetch], run_id: str, now: datetime):
    return [_extract_one(p, run_id, now) for p in pages]


@task(cache_policy=NO_CACHE)
async def extract_pages(pages: Sequence[PageFetch], run_id: str, now: datetime):
    """HTML → articles, in a worker thread so fetching can go on meanwhile."""
    return await asyncio.to_thread(_extract_all, pages, run_id, now)


@task(cache_policy=NO_CACHE)
def load_pages(db: Path, pages: Sequence[PageFetch], extracted, run_id: str, now: datetime) -> dict[str, int]:
    """Resolve exact duplicates against the warehouse and load one batch."""
    built: list[tuple[tuple[FeedEntry, ...], Article]] = []
    failures: list[Failure] = []
    for page, (article, problem) in zip(pages, extracted):
        source = page.entries[0].source
        if problem is not None:
            outcome = "feed_fallback" if article is not None else "not_loaded"
            failures.append(_failure(problem, run_id=run_id, source=source, at=now, outcome=outcome))
        if article is not None:
            built.append((page.entries, article))
    with connect(db) as con:
        known = queries.select_known_articles(con, [a.url for _, a in built], [a.content_hash for _, a in built])
        resolved = resolve_duplicates(built, known, run_id=run_id, now=now)
        load.load_batch(con, articles=resolved.articles, sightings=resolved.sightings, failures=failures)
    return {
        "articles_new": len(resolved.articles),
        "articles_from_feed": sum(a.body_source == "feed" for a in resolved.articles),
        "duplicates": resolved.duplicates,
        "entries_failed": sum(len(p.entries) for p, (a, _) in zip(pages, extracted) if a is None),
        "failures": failures,
    }


# -- the flow ----------------------------------------------------------------


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@flow(name="ingest", log_prints=False)
async def ingest(sources: str | None = None, db: str | None = None) -> dict:
    """Fetch every feed of the sources file, extract the new articles and load
    them into the DuckDB warehouse. Returns the run's counts."""
    logger = get_run_logger()
    settings: Settings = load_settings(sources)
    db_path = default_db_path(db)
    run_id = str(flow_run.id or uuid.uuid4())
    started = _now()
    summary = RunSummary(run_id=run_id, db=str(db_path), feeds_total=len(settings.feeds))

    with connect(db_path) as con:
        load.upsert_sources(con, [f.model_dump() for f in settings.feeds])
        load.start_run(con, run_id, started, flow_run.id)
        validators = queries.select_feed_validators(con)
    try:
        await _run(settings, db_path, run_id, started, summary, validators, logger)
    except Exception as exc:
        with connect(db_path) as con:
            load.finish_run(con, run_id, finished_at=_now(), status="failed", counts=asdict(summary), error=repr(exc))
        raise
    with connect(db_path) as con:
        load.finish_run(con, run_id, finished_at=_now(), status="completed", counts=asdict(summary))
    logger.info(
        "run %s: %d feeds (%d failed), %d entries, %d new articles, %d duplicates, %d failures",
        run_id, summary.feeds_total, summary.feeds_failed, summary.entries_seen,
        summary.articles_new, summary.duplicates, summary.failures,
    )
    return asdict(summary)


async def _run(settings: Settings, db_path: Path, run_id: str, started: datetime, summary: RunSummary, validators, logger) -> None:
    file_sources = frozenset(f.name for f in settings.feeds if urlsplit(f.url).scheme == "file")
    async with Fetcher(settings.fetch) as fetcher:
        progress.report("feeds", 0, len(settings.feeds))
        fetched = await fetch_feeds(fetcher, settings.feeds, validators)
        parsed = await parse_feeds(fetched)
        progress.report("feeds", len(settings.feeds), len(settings.feeds))

        entries: list[FeedEntry] = []
        states: list[load.SourceState] = []
        feed_failures: list[Failure] = []
        for item, result in zip(fetched, parsed):
            error = item.error or (result if isinstance(result, NewsdeskError) else None)
            status = item.response.status if item.response else None
            if error is not None:
                summary.feeds_failed += 1
                feed_failures.append(_failure(error, run_id=run_id, source=item.feed.name, at=item.fetched_at, outcome="not_loaded"))
                logger.warning("feed %s failed: %s", item.feed.name, error)
                states.append(load.SourceState(item.feed.name, item.fetched_at, status, ok=False, error=str(error)))
                continue
            summary.feeds_ok += 1
            headers = item.response.headers
            if item.response.not_modified:
                summary.feeds_not_modified += 1
            else:
                entries.extend(result.entries)
                if result.warning:
                    logger.info("feed %s is ill-formed but readable: %s", item.feed.name, result.warning)
                for link, why in result.rejected:
                    feed_failures.append(Failure(run_id=run_id, stage="parse", url=link, source=item.feed.name,
                                                 reason="no_link", error=why, at=item.fetched_at, outcome="not_loaded"))
                    summary.entries_seen += 1
                    summary.entries_failed += 1
            states.append(load.SourceState(
                item.feed.name, item.fetched_at, status, ok=True, etag=headers.get("etag"),
                last_modified=headers.get("last-modified"), title=result.title if isinstance(result, ParsedFeed) else None,
            ))
        summary.entries_seen += len(entries)
        summary.add_failures(feed_failures)

        now = _now()
        with connect(db_path) as con:
            load.update_source_states(con, states)
            known = queries.select_known_for_entries(con, entries)
            plan = plan_entries(entries, known)
            summary.entries_known = len(plan.already_seen)
            # Entries of articles we already hold need no fetch: only a sighting.
            known_sightings = [sighting(e, article_id, run_id=run_id, now=now) for e, article_id in plan.known]
            load.load_batch(con, sightings=known_sightings, failures=feed_failures)
            summary.duplicates += len(known_sightings)

        groups = plan.to_fetch
        done = 0
        progress.report("pages", 0, len(groups))
        for batch in _chunks(groups, settings.pipeline.batch_size):
            pages = await fetch_pages(fetcher, batch, file_sources)
            summary.pages_fetched += sum(p.response is not None for p in pages)
            extracted = await extract_pages(pages, run_id, _now())
            counts = load_pages(db_path, pages, extracted, run_id, _now())
            summary.add_failures(counts.pop("failures"))
            for key, value in counts.items():
                setattr(summary, key, getattr(summary, key) + value)
            done += len(batch)
            progress.report("pages", done, len(groups))
