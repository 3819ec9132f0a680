"""`newsdesk export`: files out of the warehouse (Parquet, text, JSON Lines).

What a reader of --out sees only ever changes a whole day (or, for JSON
Lines, the whole file) at a time, and a killed export leaves nothing a read
of --out can pick up: everything is written in a staging folder beside --out,
never inside it, and swapped in by rename. It must not write into --out
directly, nor hold more than a few days of Parquet partitions in one COPY.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Iterator

from flows.crashpoints import crash_point
from transforms.dated import dated_record
from warehouse import exports
from warehouse.connection import connect

FORMATS = ("parquet", "text", "jsonl")
# One COPY writes at most this many days, and more than this many rows only
# when a single day holds them. DuckDB keeps buffers for every partition a
# COPY has open (30,000 articles over 2,000 days in one COPY ran out of the
# readers' 1 GB), and a COPY's rows pass through its sort: 50,000 rows of
# 3 kB bodies per COPY took the process to 1.5 GB. Each COPY also scans the
# table once, cheap when rows are in time order (zone maps), not otherwise.
# Measured with benchmarks/export.py (docs/scale.md#exports).
DAYS_PER_COPY = 16
ROWS_PER_COPY = 10_000


def export(db: Path | str, fmt: str, out: Path, since: date | None = None, until: date | None = None) -> tuple[int, Path]:
    """Export the articles published between `since` and `until` (inclusive,
    either open). Returns how many articles, and where they went."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    # The warehouse first: a missing or bad one fails before --out exists.
    with connect(db, read_only=True) as con, _staging(out) as staging:
        if fmt == "parquet":
            return _parquet(con, staging, out, since, until), out
        if fmt == "text":
            return _text(exports.article_batches(con, since, until), staging, out), out
        target = out / "articles.jsonl"
        return _jsonl(exports.article_batches(con, since, until), staging / target.name, target), target


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """An empty folder beside `out` (`.<name>.export-*` in its parent), on
    the same file system so that renames from it are atomic, and removed
    afterwards. Exports to one `out` take turns (a lock on the folder), so
    any staging folder found beside it is a killed export's, and goes."""
    out.mkdir(parents=True, exist_ok=True)
    where = out.resolve()
    fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when a killed export's process ends
        prefix = f".{where.name}.export-"
        for left in where.parent.glob(glob.escape(prefix) + "*"):
            shutil.rmtree(left, ignore_errors=True)
        _remove_old_leftovers(where)
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=where.parent))
        try:
            if staging.stat().st_dev != where.stat().st_dev:
                raise OSError(errno.EXDEV, f"{out} is on another file system than its parent folder, where the "
                                           "export stages its files; export into a folder inside it instead")
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        os.close(fd)


def _remove_old_leftovers(out: Path) -> None:
    """Earlier versions staged inside `out` (`.export-*`, `.published_date=*.old-*`,
    `articles.jsonl.part`), where a killed export's files were read as data."""
    for left in [*out.glob(".export-*"), *out.glob(".published_date=*.old-*")]:
        shutil.rmtree(left, ignore_errors=True)
    (out / "articles.jsonl.part").unlink(missing_ok=True)


def _parquet(con, staging: Path, out: Path, since: date | None, until: date | None) -> int:
    """Each group of days is COPYed into the staging folder, then swapped in
    day by day: a re-export of a day replaces that day only, and only with
    complete files."""
    counts = exports.select_day_counts(con, since, until)
    for first, last in _day_groups(counts, DAYS_PER_COPY, ROWS_PER_COPY):
        exports.copy_parquet(con, staging, first, last)
        crash_point("export_written")
        for day in sorted(staging.glob("published_date=*")):
            _swap_in(day, out / day.name)
            crash_point("export_swapped")
    return sum(n for _, n in counts)


def _day_groups(counts: list[tuple[date, int]], max_days: int, max_rows: int) -> list[tuple[date, date]]:
    """Split the days (oldest first, with their article counts) into runs of
    at most `max_days` days and `max_rows` rows; a day bigger than
    `max_rows` is a group of its own."""
    groups: list[tuple[date, date]] = []
    group: tuple[date, date] | None = None  # (first, last) day of the group being filled
    days = rows = 0
    for day, n in counts:
        if group is not None and (days >= max_days or rows + n > max_rows):
            groups.append(group)
            group, days, rows = None, 0, 0
        group = (day if group is None else group[0], day)
        days, rows = days + 1, rows + n
    if group is not None:
        groups.append(group)
    return groups


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder `new` where `target` is. On Linux one exchange, so a
    reader sees the old day or the new one, never neither; elsewhere two
    renames, with an instant between them when the day is absent."""
    if not target.exists():
        new.rename(target)
        return
    if not _exchange(new, target):
        aside = new.with_name(new.name + ".old")
        target.rename(aside)
        try:
            new.rename(target)
        except OSError:
            aside.rename(target)  # put the old day back
            raise
        new = aside
    shutil.rmtree(new, ignore_errors=True)  # the old day, now in staging


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the
    C library or the file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _text(batches, staging: Path, out: Path) -> int:
    """One UTF-8 file per article, out/YYYY-MM-DD/<article_id>.txt; each day
    written whole in staging, then swapped in."""
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            folder = staging / row["published_date"].isoformat()
            folder.mkdir(exist_ok=True)
            (folder / f"{row['article_id']}.txt").write_text(dated_record(row["published_date"], row["body"]),
                                                             encoding="utf-8")
            n += 1
    crash_point("export_written")
    for day in sorted(staging.iterdir()):
        _swap_in(day, out / day.name)
        crash_point("export_swapped")
    return n


def _jsonl(batches, staged: Path, target: Path) -> int:
    n = 0
    with staged.open("w", encoding="utf-8") as f:
        for batch in batches:
            for row in batch.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=_iso) + "\n")
                n += 1
    crash_point("export_written")
    staged.replace(target)  # a reader never sees half a file
    return n


def _iso(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
