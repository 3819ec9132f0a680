"""What the stages of one ingest run share (`RunContext`), made once by the
flow (`flows.ingest`) and passed to them whole, instead of a dozen
parameters each."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from flows.archive import WarcArchive
from flows.clock import utc_now
from flows.extraction import ExtractorPool
from flows.fetch import Fetcher
from flows.settings import Settings
from flows.summary import RunTally
from warehouse.connection import Writer


@dataclass(frozen=True, slots=True)
class Leasing:
    """A lake's workers share the due feeds and the WARC files: each worker
    leases them, in PostgreSQL, under its owner name."""

    dsn: str
    owner: str  # "<worker> <run id>"
    lease_s: float  # a hung worker's feeds pass to another after this
    batch: int  # feeds leased at a time
    file_lease_s: float  # a hung worker's WARC file passes to another after this


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run reads. Frozen: a stage changes the run
    only through the warehouse and by adding its counts to `tally`."""

    run_id: str
    target: Path | str  # the warehouse: a DuckDB file, or a lake (ducklake:postgres:...)
    settings: Settings
    started: datetime
    logger: logging.Logger | logging.LoggerAdapter[Any]
    tally: RunTally  # the run's counts so far: what a failed run records
    fetcher: Fetcher
    pool: ExtractorPool  # the extraction worker processes
    writer: Writer  # the warehouse connection the page loads share
    deadline: float  # time.monotonic() past which no new batch of pages starts ([pipeline] max_run_s)
    archive: WarcArchive | None = None  # the raw archive fetched pages are written to, if enabled
    leasing: Leasing | None = None  # on a lake: feeds and WARC files are leased
    now: Callable[[], datetime] = utc_now  # the clock the stages read

    @cached_property
    def file_sources(self) -> frozenset[str]:
        """Feeds read from local files: their entries' pages may be files too."""
        return frozenset(f.name for f in self.settings.feeds if urlsplit(f.url).scheme == "file")
