"""The markdown report of one run, published as a Prefect artifact."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def run_report(summary: Mapping[str, Any], feeds: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"# newsdesk run `{summary['run_id']}`",
        "",
        f"Warehouse `{summary['db']}`: {summary['articles_new']} new articles "
        f"({summary['near_duplicates']} joined an existing story), {summary['duplicates']} duplicates, "
        f"{summary['entries_pending']} pending, {summary['failures']} failures.",
        "",
        "| feed | status | entries | new | duplicates | failures |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for f in feeds:
        status = "304 unchanged" if f["not_modified"] else (str(f["status"] or "") if f["ok"] else
                                                            f"failed: {(f['error'] or '')[:80]}")
        lines.append(f"| {f['source']} | {status} | {f['entries']} | {f['articles_new']} | {f['duplicates']} "
                     f"| {f['failures']} |")
    lines.append(f"| **total** | {summary['feeds_ok']}/{summary['feeds_total']} fetched | {summary['entries_seen']} "
                 f"| {summary['articles_new']} | {summary['duplicates']} | {summary['failures']} |")
    warned = [f for f in feeds if f.get("warning")]
    if warned:
        lines += ["", "Feeds read with a warning (feed_polls.warning):", ""]
        lines += [f"- {f['source']}: {f['warning'][:200]}" for f in warned]
    reasons = summary.get("failure_reasons") or {}
    if reasons:
        lines += ["", "Failures by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + "."]
    lines += ["", "The run's row in the warehouse:", "",
              f"```\nnewsdesk sql \"select * from runs where run_id = '{summary['run_id']}'\" --db {summary['db']}\n```"]
    return "\n".join(lines)


# Exit codes of `newsdesk ingest`, for cron and scripts (docs/reliability.md).
EXIT_OK = 0  # the run did its work: every feed polled was read, every entry ended as a row or a pending retry
EXIT_FAILED = 1  # the run could not do its work: every feed polled failed, or the run itself failed
EXIT_PARTIAL = 3  # the run completed, but some feeds failed or some entries could not be loaded


def run_outcome(summary: Mapping[str, Any]) -> tuple[int, str]:
    """The exit code of a completed run and a one-line verdict. A run that
    raised (warehouse failure, lock not obtained) exits EXIT_FAILED at the
    CLI without coming here; 2 is kept for bad input (settings, arguments)."""
    polled = summary["feeds_ok"] + summary["feeds_failed"]
    failed_feeds, lost = summary["feeds_failed"], summary["entries_failed"]
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
