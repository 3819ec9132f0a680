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


def copy_parquet(con: duckdb.DuckDBPyConnection, out_dir: Path, since: date | None, until: date | None) -> int:
    """Write hive-style partitions out_dir/published_date=YYYY-MM-DD/*.parquet.
    Existing files are left alone: the caller writes into an empty staging
    folder and swaps the days in, so that a re-export of a day replaces it."""
    count = con.execute(f"SELECT count(*) FROM articles WHERE {_RANGE}", {"since": since, "until": until}).fetchone()[0]
    if count:
        con.execute(f"""
            COPY (SELECT {EXPORT_COLUMNS} FROM articles WHERE {_RANGE} ORDER BY published_at, article_id)
            TO $target (FORMAT parquet, PARTITION_BY (published_date), OVERWRITE_OR_IGNORE true,
                        FILENAME_PATTERN 'articles_{{uuid}}')
        """, {"since": since, "until": until, "target": str(out_dir)})
    return count


def article_batches(con: duckdb.DuckDBPyConnection, since: date | None, until: date | None,
                    rows_per_batch: int = 1_000) -> Iterator[pa.RecordBatch]:
    """The articles to export as Arrow record batches, so memory stays bounded."""
    reader = con.execute(
        f"SELECT {EXPORT_COLUMNS} FROM articles WHERE {_RANGE} ORDER BY published_at, article_id",
        {"since": since, "until": until},
    ).to_arrow_reader(rows_per_batch)
    yield from reader
