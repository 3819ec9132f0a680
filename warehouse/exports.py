"""Exports of the articles: Parquet partitioned by day, and row batches for
the text and JSON Lines writers in `flows.exports`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

# What leaves the warehouse: the article and its story; fingerprints stay in.
EXPORT_COLUMNS = ("article_id, url, source, title, author, published_at, published_date, date_source, language, "
                  "body, body_source, word_count, content_hash, first_seen_at, story_id, duplicate_of, extractor")
_RANGE = "($since IS NULL OR published_date >= $since) AND ($until IS NULL OR published_date <= $until)"


def select_day_counts(con: duckdb.DuckDBPyConnection, since: date | None,
                      until: date | None) -> list[tuple[date, int]]:
    """How many articles each published_date between `since` and `until`
    holds, oldest first: one column read, so the export can plan its COPYs."""
    return con.execute(f"SELECT published_date, count(*) FROM articles WHERE {_RANGE} GROUP BY 1 ORDER BY 1",
                       {"since": since, "until": until}).fetchall()


def copy_parquet(con: duckdb.DuckDBPyConnection, out_dir: Path, first: date, last: date) -> None:
    """Write the days `first`..`last` as hive-style partitions
    out_dir/published_date=YYYY-MM-DD/*.parquet. The caller keeps the range
    to a few days: DuckDB holds buffers for every partition a COPY writes,
    and one COPY over 2,000 days ran out of the readers' 1 GB. Existing files
    are left alone: the caller writes into an empty staging folder and swaps
    the days in, so that a re-export of a day replaces it."""
    con.execute(f"""
        COPY (SELECT {EXPORT_COLUMNS} FROM articles WHERE published_date BETWEEN $first AND $last
              ORDER BY published_at, article_id)
        TO $target (FORMAT parquet, PARTITION_BY (published_date), OVERWRITE_OR_IGNORE true,
                    FILENAME_PATTERN 'articles_{{uuid}}')
    """, {"first": first, "last": last, "target": str(out_dir)})


def article_batches(con: duckdb.DuckDBPyConnection, since: date | None, until: date | None,
                    rows_per_batch: int = 1_000) -> Iterator[pa.RecordBatch]:
    """The articles to export as Arrow record batches, so memory stays bounded."""
    reader = con.execute(
        f"SELECT {EXPORT_COLUMNS} FROM articles WHERE {_RANGE} ORDER BY published_at, article_id",
        {"since": since, "until": until},
    ).to_arrow_reader(rows_per_batch)
    yield from reader
