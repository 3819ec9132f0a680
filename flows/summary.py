"""The counts of one run (`RunSummary`), filled stage by stage and stored
on the run's row in `runs`: the CLI prints it, the flow returns it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

from transforms.records import Failure


@dataclass
class RunSummary:
    run_id: str
    db: str
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    entries_seen: int = 0
    entries_known: int = 0  # entries their feed had shown before: skipped
    articles_new: int = 0
    articles_from_feed: int = 0
    duplicates: int = 0  # entries of an article already held (in the warehouse or this run)
    entries_failed: int = 0
    failures: int = 0
    pages_fetched: int = 0
    feeds_skipped: int = 0  # backing off after failures
    feeds_not_due: int = 0  # healthy, their next poll later (transforms/schedule.py)
    feeds_elsewhere: int = 0  # due, but polled by another worker of the lake (flows/polls.py:poll_due)
    entries_pending: int = 0
    retries: int = 0
    retries_loaded: int = 0
    near_duplicates: int = 0  # of articles_new, joined an existing story
    deferred_pages: int = 0  # pages not started before [pipeline] max_run_s: left for the next run
    # Seconds spent per stage; fetching overlaps extraction, so they add up to more than the wall time.
    fetch_s: float = 0.0
    parse_s: float = 0.0
    extract_s: float = 0.0
    dedupe_s: float = 0.0
    load_s: float = 0.0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def add_failures(self, failures: Sequence[Failure]) -> None:
        self.failures += len(failures)
        for f in failures:
            self.failure_reasons[f.reason] = self.failure_reasons.get(f.reason, 0) + 1


@dataclass
class BatchCounts:
    """What loading one batch of pages added to the run's counts."""

    entries_failed: int = 0
    entries_pending: int = 0
    retries: int = 0
    retries_loaded: int = 0
    articles_new: int = 0
    articles_from_feed: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    dedupe_s: float = 0.0
    load_s: float = 0.0
    failure_rows: list[Failure] = field(default_factory=list)

    def add_to(self, summary: RunSummary) -> None:
        for f in fields(self):
            if f.name != "failure_rows":  # every other field is a count of the same name in RunSummary
                setattr(summary, f.name, getattr(summary, f.name) + getattr(self, f.name))
        summary.add_failures(self.failure_rows)
