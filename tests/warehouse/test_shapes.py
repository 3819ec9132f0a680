"""Each record shape is written once: the Arrow shapes the warehouse loads
are derived from the record types of transforms.records; here they are
checked against the tables they load, and rows read back become records by
column name. docs/schema.sql, the current schema in one place, is the
output of warehouse.schema.current_schema()."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from tests.conftest import REPO
from transforms.records import Article, FeedEntry, PageAttempt
from warehouse import outbox
from warehouse.arrow_rows import (
    ARTICLE_SCHEMA,
    ATTEMPT_SCHEMA,
    BAND_SCHEMA,
    FAILURE_SCHEMA,
    FEED_POLL_SCHEMA,
    FINGERPRINT_SCHEMA,
    OUTBOX_SCHEMA,
    SIGHTING_SCHEMA,
    attempts_arrow,
    insert_rows,
    outbox_arrow,
)
from warehouse.connection import connect
from warehouse.schema import current_schema

# The DuckDB column types an Arrow type of a shape may load into.
_LOADS_INTO = {
    pa.string(): {"VARCHAR"}, pa.int64(): {"INTEGER", "BIGINT"}, pa.int32(): {"INTEGER"},
    pa.float64(): {"DOUBLE"}, pa.bool_(): {"BOOLEAN"}, pa.date32(): {"DATE"}, pa.binary(): {"BLOB"},
    pa.timestamp("us", tz="UTC"): {"TIMESTAMP WITH TIME ZONE"},
}
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(("table", "shape"), [
    ("articles", ARTICLE_SCHEMA), ("article_sightings", SIGHTING_SCHEMA), ("failures", FAILURE_SCHEMA),
    ("feed_polls", FEED_POLL_SCHEMA), ("entry_outbox", OUTBOX_SCHEMA), ("page_attempts", ATTEMPT_SCHEMA),
    ("article_fingerprints", FINGERPRINT_SCHEMA), ("story_bands", BAND_SCHEMA),
])
def test_each_shape_fits_its_table(tmp_path, table, shape):
    with connect(tmp_path / "w.duckdb") as con:
        columns = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?",
                                   [table]).fetchall())
    misfits = [(f.name, str(f.type), columns.get(f.name)) for f in shape
               if columns.get(f.name) not in _LOADS_INTO[f.type]]
    assert misfits == []


def test_the_article_shape_is_the_record_but_its_fingerprint():
    assert ARTICLE_SCHEMA.names == [f.name for f in fields(Article) if f.name != "fingerprint"]


def _entry(n: int) -> FeedEntry:
    return FeedEntry(source="feed", link=f"https://example.org/{n}", canonical_link=f"https://example.org/{n}",
                     guid=f"g{n}", title=f"Title {n}", author=None, published_at=NOW, feed_text=f"text {n}",
                     language="en", published_raw=None if n else "Mon, 32 Foo")


def test_rows_read_back_are_the_records_written(tmp_path):
    entries = [_entry(0), _entry(1)]
    attempt = PageAttempt(entry=entries[1], article_id=None, status="pending", attempts=2, last_reason="timeout",
                          last_error="timed out", first_failed_at=NOW, last_attempt_at=NOW, next_attempt_at=NOW)
    with connect(tmp_path / "w.duckdb") as con:
        insert_rows(con, "entry_outbox", outbox_arrow(entries, "run-1", NOW), "")
        insert_rows(con, "page_attempts", attempts_arrow([attempt]), "")
        assert outbox.select_outbox(con) == [(entries[0], "run-1"), (entries[1], "run-1")]
        assert outbox.select_due_attempts(con, NOW) == [attempt]


def test_docs_schema_sql_is_the_current_schema():
    path = REPO / "docs" / "schema.sql"
    assert path.read_text(encoding="utf-8") == current_schema(), (
        "docs/schema.sql is stale: regenerate it with\n  .venv/bin/python -c \"from warehouse.schema import "
        "current_schema; print(current_schema(), end='')\" > docs/schema.sql")


def test_every_field_of_a_source_state_is_written():
    """A poll's SourceState updates `sources` through a hand-written UPDATE:
    a field the UPDATE does not read would be dropped without a word."""
    import inspect

    from transforms.records import SourceState
    from warehouse import feed_registry

    update = inspect.getsource(feed_registry.update_source_states)
    assert [f.name for f in fields(SourceState) if f"s.{f.name}" not in update] == []


@pytest.mark.parametrize(("changes", "keeps"), [("UPGRADE_SET", "UPGRADE_KEEPS"), ("REEXTRACT_SET", "REEXTRACT_KEEPS")])
def test_every_article_field_is_replaced_or_kept(changes, keeps):
    """An upgrade (page body for a feed text) and a re-extraction update
    stored articles through hand-written SETs, shared by both backends: each
    field of Article is either set there or listed as kept, so that a new
    field is a decision, not a column left behind."""
    import re

    from warehouse import article_rows

    set_columns = set(re.findall(r"(\w+) = ", getattr(article_rows, changes)))
    kept = getattr(article_rows, keeps)
    assert [f.name for f in fields(Article) if (f.name in set_columns) == (f.name in kept)] == []


def test_a_record_from_a_row_takes_its_defaults_and_refuses_a_missing_field():
    from transforms.records import RegistryFeed
    from warehouse.rows import record_of

    feed = record_of(RegistryFeed, {"name": "a", "url": "https://a.example/rss", "title": None}, tags=("x",))
    assert feed == RegistryFeed(name="a", url="https://a.example/rss", tags=("x",))  # origin: its default
    with pytest.raises(TypeError):
        record_of(RegistryFeed, {"name": "a"})  # url has no default
