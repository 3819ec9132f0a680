"""The feed registry and what polls teach it: the feeds of the sources file,
their fetch state (validators, backoff), one row per poll, and the new
entries a poll queues in the outbox, in the transaction that stores the
validators they stand for.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Iterable, Sequence

import duckdb
import pyarrow as pa

from transforms.records import Failure, FeedEntry, FeedPoll, Sighting, SourceState
from warehouse.page_loads import insert_sightings
from warehouse.arrow_rows import ENTRY_FIELDS, FAILURE_SCHEMA, OUTBOX_SCHEMA, TS, feed_polls_arrow, insert_rows, to_arrow
from warehouse.scopes import registered, transaction
from warehouse.twophase import is_lake


def record_polls(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    at: datetime,
    states: Sequence[SourceState],
    polls: Sequence[FeedPoll],
    queued: Sequence[FeedEntry],
    sightings: Sequence[Sighting] = (),
    failures: Sequence[Failure] = (),
) -> None:
    """What a run's polls taught us, in one transaction: the feeds' new state
    (validators, backoff), the poll rows, sightings of articles already held,
    failures, and the new entries queued in entry_outbox. The validators are
    never stored without the entries they stand for."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.record_polls(con, run_id=run_id, at=at, states=states, polls=polls, queued=queued,
                                     sightings=sightings, failures=failures)
    columns = {name: [getattr(e, name) for e in queued] for name in ENTRY_FIELDS}
    columns.update(run_id=[run_id] * len(queued), queued_at=[at] * len(queued), position=list(range(len(queued))))
    with transaction(con):
        update_source_states(con, states)
        insert_feed_polls(con, polls)
        insert_rows(con, "entry_outbox", pa.table(columns, schema=OUTBOX_SCHEMA), "ON CONFLICT DO NOTHING")
        insert_sightings(con, sightings)
        insert_rows(con, "failures", to_arrow(failures, FAILURE_SCHEMA), "")


def insert_feed_polls(con: duckdb.DuckDBPyConnection, polls: Sequence[FeedPoll]) -> None:
    if not polls:
        return
    insert_rows(con, "feed_polls", feed_polls_arrow(polls), "")


def upsert_sources(con: duckdb.DuckDBPyConnection, feeds: Iterable[dict]) -> None:
    """Register the feeds of the sources file; keeps each feed's fetch state."""
    rows = [
        {"name": f["name"], "url": f["url"], "language": f.get("language"), "tags": list(f.get("tags") or [])}
        for f in feeds
    ]
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("name", pa.string()), ("url", pa.string()), ("language", pa.string()), ("tags", pa.list_(pa.string())),
    ]))
    with registered(con, "_feeds", table):
        con.execute(
            # Every column given: through DuckDB a lake's PostgreSQL table gets NULL, not its default.
            "INSERT INTO sources (name, url, language, tags, consecutive_failures) "
            "SELECT name, url, language, tags, 0 FROM _feeds "
            "ON CONFLICT (name) DO UPDATE SET url = excluded.url, language = excluded.language, tags = excluded.tags"
        )


def update_source_states(con: duckdb.DuckDBPyConnection, states: Sequence[SourceState]) -> None:
    if not states:
        return
    table = pa.Table.from_pylist([dataclasses.asdict(s) for s in states], schema=pa.schema([
        ("name", pa.string()), ("fetched_at", TS), ("status", pa.int32()), ("ok", pa.bool_()),
        ("error", pa.string()), ("etag", pa.string()), ("last_modified", pa.string()), ("title", pa.string()),
        ("next_attempt_at", TS), ("warning", pa.string()),
        ("next_poll_at", TS), ("poll_interval_s", pa.int32()), ("poll_reason", pa.string()),
    ]))
    with registered(con, "_states", table):
        # A 304 carries no validators of its own: keep the ones we had.
        con.execute("""
            UPDATE sources SET
                last_fetched_at = s.fetched_at,
                last_status = s.status,
                last_success_at = CASE WHEN s.ok THEN s.fetched_at ELSE sources.last_success_at END,
                last_error = CASE WHEN s.ok THEN NULL ELSE s.error END,
                -- a 304 re-reads nothing: the warning of the document we have stays
                last_warning = CASE WHEN s.ok AND s.status <> 304 THEN s.warning ELSE sources.last_warning END,
                consecutive_failures = CASE WHEN s.ok THEN 0 ELSE sources.consecutive_failures + 1 END,
                etag = CASE WHEN s.ok THEN coalesce(s.etag, sources.etag) ELSE sources.etag END,
                last_modified = CASE WHEN s.ok THEN coalesce(s.last_modified, sources.last_modified)
                                     ELSE sources.last_modified END,
                title = coalesce(s.title, sources.title),
                next_attempt_at = s.next_attempt_at,
                -- a failure leaves the schedule as it was: the backoff decides
                next_poll_at = CASE WHEN s.ok THEN s.next_poll_at ELSE sources.next_poll_at END,
                poll_interval_s = CASE WHEN s.ok THEN s.poll_interval_s ELSE sources.poll_interval_s END,
                poll_reason = CASE WHEN s.ok THEN s.poll_reason ELSE sources.poll_reason END
            FROM _states AS s
            WHERE sources.name = s.name
        """)
