from dataclasses import fields
from datetime import datetime, timezone

from transforms.records import RUN_COLUMNS, Failure, RunCounts

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _failure(reason: str) -> Failure:
    return Failure(run_id="r", stage="fetch", url="http://x/", source="s", reason=reason, error=reason, at=NOW,
                   transient=False, outcome="failed")


def test_counts_add_field_by_field_and_merge_the_reasons():
    a = RunCounts(feeds_ok=2, articles_new=3, fetch_s=0.5) + RunCounts.of_failures([_failure("timeout")])
    b = RunCounts(feeds_ok=1, duplicates=4, fetch_s=0.25) + RunCounts.of_failures([_failure("timeout"),
                                                                                    _failure("http_404")])
    total = a + b
    assert (total.feeds_ok, total.articles_new, total.duplicates, total.fetch_s) == (3, 3, 4, 0.75)
    assert total.failures == 3 and total.failure_reasons == {"timeout": 2, "http_404": 1}
    assert a.failure_reasons == {"timeout": 1}  # the operands are left as they were


def test_every_counter_is_added():
    ones = RunCounts(**{f.name: 1 for f in fields(RunCounts) if f.name != "failure_reasons"})
    twice = ones + ones
    assert all(getattr(twice, f.name) == 2 for f in fields(RunCounts) if f.name != "failure_reasons")


def test_stored_columns_leave_out_what_the_row_does_not_keep():
    assert "deferred_pages" not in RUN_COLUMNS and "failure_reasons" not in RUN_COLUMNS
    assert "articles_new" in RUN_COLUMNS and "dedupe_s" in RUN_COLUMNS
