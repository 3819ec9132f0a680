"""The markdown report of one run, published as a Prefect artifact."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from transforms.records import RunCounts


def run_report(run_id: str, db: str, c: RunCounts, feeds: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"# newsdesk run `{run_id}`",
        "",
        f"Warehouse `{db}`: {c.articles_new} new articles "
        f"({c.near_duplicates} joined an existing story), {c.duplicates} duplicates, "
        f"{c.entries_pending} pending, {c.failures} failures.",
        "",
        "| feed | status | entries | new | duplicates | failures |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for f in feeds:
        status = "304 unchanged" if f["not_modified"] else (str(f["status"] or "") if f["ok"] else
                                                            f"failed: {(f['error'] or '')[:80]}")
        lines.append(f"| {f['source']} | {status} | {f['entries']} | {f['articles_new']} | {f['duplicates']} "
                     f"| {f['failures']} |")
    lines.append(f"| **total** | {c.feeds_ok}/{c.feeds_total} fetched | {c.entries_seen} "
                 f"| {c.articles_new} | {c.duplicates} | {c.failures} |")
    warned = [f for f in feeds if f.get("warning")]
    if warned:
        lines += ["", "Feeds read with a warning (feed_polls.warning):", ""]
        lines += [f"- {f['source']}: {f['warning'][:200]}" for f in warned]
    reasons = c.failure_reasons
    if reasons:
        lines += ["", "Failures by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + "."]
    lines += ["", "The run's row in the warehouse:", "",
              f"```\nnewsdesk sql \"select * from runs where run_id = '{run_id}'\" --db {db}\n```"]
    return "\n".join(lines)


# Exit codes of `newsdesk ingest`, for cron and scripts (docs/reliability.md).
EXIT_OK = 0  # the run did its work: every feed polled was read, every entry ended as a row or a pending retry
EXIT_FAILED = 1  # the run could not do its work: every feed polled failed, or the run itself failed
EXIT_PARTIAL = 3  # the run completed, but some feeds failed or some entries could not be loaded


def run_outcome(c: RunCounts) -> tuple[int, str]:
    """The exit code of a completed run and a one-line verdict. A run that
    raised (warehouse failure, lock not obtained) exits EXIT_FAILED at the
    CLI without coming here; 2 is kept for bad input (settings, arguments)."""
    polled = c.feeds_ok + c.feeds_failed
    failed_feeds, lost = c.feeds_failed, c.entries_failed
    if failed_feeds and failed_feeds == polled:
        return EXIT_FAILED, f"run failed: every feed polled failed ({failed_feeds} of {polled})"
    problems = []
    if failed_feeds:
        problems.append(f"{failed_feeds} of {polled} feeds failed")
    if lost:
        problems.append(f"{lost} entr{'y' if lost == 1 else 'ies'} could not be loaded")
    if problems:
        return EXIT_PARTIAL, "run partial: " + ", ".join(problems) + " (see the failures table)"
    return EXIT_OK, "run ok"
