import pytest

from transforms.records import RunCounts
from transforms.reports import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, run_outcome


def summary(**kw):
    base = dict(feeds_total=3, feeds_ok=3, feeds_failed=0, feeds_skipped=0, entries_failed=0, entries_pending=0)
    base.update(kw)
    return RunCounts(**base)


@pytest.mark.parametrize("counts, code, words", [
    (dict(), EXIT_OK, "run ok"),
    (dict(entries_pending=4), EXIT_OK, "run ok"),  # pending retries are not losses
    (dict(feeds_ok=0, feeds_skipped=3), EXIT_OK, "run ok"),  # nothing was due
    (dict(feeds_ok=2, feeds_failed=1), EXIT_PARTIAL, "1 of 3 feeds failed"),
    (dict(entries_failed=1), EXIT_PARTIAL, "1 entry could not be loaded"),
    (dict(feeds_ok=0, feeds_failed=3), EXIT_FAILED, "every feed polled failed (3 of 3)"),
    (dict(feeds_ok=0, feeds_failed=1, feeds_skipped=2), EXIT_FAILED, "every feed polled failed (1 of 1)"),
    (dict(feeds_total=0, feeds_ok=0, entries_failed=2), EXIT_PARTIAL, "2 entries could not be loaded"),  # --from-warc
])
def test_run_outcome(counts, code, words):
    got, line = run_outcome(summary(**counts))
    assert got == code and words in line
