"""`newsdesk export`: files out of the warehouse (Parquet, text, JSON Lines)."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from datetime import date, datetime
from pathlib import Path

from transforms.dated import dated_record
from warehouse import exports
from warehouse.connection import connect


def export(db: Path, fmt: str, out: Path, since: date | None = None, until: date | None = None) -> tuple[int, Path]:
    """Export the articles published between `since` and `until` (inclusive,
    either open). Returns how many articles, and where they went."""
    out.mkdir(parents=True, exist_ok=True)
    with connect(db, read_only=True) as con:
        if fmt == "parquet":
            return _parquet(con, out, since, until), out
        if fmt == "text":
            return _text(exports.article_batches(con, since, until), out), out
        if fmt == "jsonl":
            target = out / "articles.jsonl"
            return _jsonl(exports.article_batches(con, since, until), target), target
    raise ValueError(f"unknown export format {fmt!r}")


def _parquet(con, out: Path, since: date | None, until: date | None) -> int:
    """A re-export of a day replaces that day only, and only once the new
    files are complete: COPY writes into a hidden folder beside the days,
    then each day's folder is swapped in by rename. A COPY that fails (disk
    full, killed) leaves the old files as they were and removes its own."""
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        count = exports.copy_parquet(con, staging, since, until)
        for day in sorted(staging.glob("published_date=*")):
            _swap_in(day, out / day.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def _swap_in(new: Path, target: Path) -> None:
    """Put `new` where `target` is: two renames on one file system, so a
    reader sees the old day or the new one, apart from the instant between."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        new.rename(target)
    except OSError:
        old.rename(target)  # put the old day back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _text(batches, out: Path) -> int:
    """One UTF-8 file per article, out/YYYY-MM-DD/<article_id>.txt."""
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            folder = out / row["published_date"].isoformat()
            folder.mkdir(exist_ok=True)
            (folder / f"{row['article_id']}.txt").write_text(dated_record(row["published_date"], row["body"]),
                                                             encoding="utf-8")
            n += 1
    return n


def _jsonl(batches, target: Path) -> int:
    n = 0
    tmp = target.with_suffix(".jsonl.part")
    with tmp.open("w", encoding="utf-8") as f:
        for batch in batches:
            for row in batch.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=_iso) + "\n")
                n += 1
    tmp.replace(target)  # a reader never sees half a file
    return n


def _iso(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
