"""The feed registry and what polls teach it: the feeds of the sources file,
their fetch state (validators, backoff), one row per poll, and the new
entries a poll queues in the outbox, in the transaction that stores the
validators they stand for; and each feed's state as the next run reads it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, NamedTuple, Sequence

import duckdb
import pyarrow as pa

from transforms.records import FeedPoll, PollRows, RegistryFeed, SourceState
from warehouse.arrow_rows import (
    FAILURE_SCHEMA,
    SOURCE_STATE_SCHEMA,
    feed_polls_arrow,
    insert_rows,
    outbox_arrow,
    to_arrow,
)
from warehouse.article_rows import insert_sightings
from warehouse.rows import named_rows, one_row, record_of
from warehouse.scopes import registered, transaction
from warehouse.twophase import is_lake


def record_polls(con: duckdb.DuckDBPyConnection, rows: PollRows, *, run_id: str, at: datetime) -> None:
    """What a run's polls taught us, in one transaction: the feeds' new state
    (validators, backoff), the poll rows, sightings of articles already held,
    failures, and the new entries queued in entry_outbox. The validators are
    never stored without the entries they stand for."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.record_polls(con, rows, run_id=run_id, at=at)
    with transaction(con):
        update_source_states(con, rows.states)
        insert_feed_polls(con, rows.polls)
        insert_rows(con, "entry_outbox", outbox_arrow(rows.queued, run_id, at), "ON CONFLICT DO NOTHING")
        insert_sightings(con, rows.sightings)
        insert_rows(con, "failures", to_arrow(rows.failures, FAILURE_SCHEMA), "")


def insert_feed_polls(con: duckdb.DuckDBPyConnection, polls: Sequence[FeedPoll]) -> None:
    if not polls:
        return
    insert_rows(con, "feed_polls", feed_polls_arrow(polls), "")


def upsert_sources(con: duckdb.DuckDBPyConnection, feeds: Iterable[dict[str, Any]], *, origin: str = "sources file") -> None:
    """Register the feeds of the sources file (or a WARC file's pseudo-feed);
    keeps each feed's fetch state. A feed of the sources file is polled
    whatever `feeds remove` said of an OPML feed of that name."""
    rows = [
        {"name": f["name"], "url": f["url"], "language": f.get("language"), "tags": list(f.get("tags") or []),
         "origin": f.get("origin", origin)}
        for f in feeds
    ]
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("name", pa.string()), ("url", pa.string()), ("language", pa.string()), ("tags", pa.list_(pa.string())),
        ("origin", pa.string()),
    ]))
    with registered(con, "_feeds", table):
        con.execute(
            # Every column given: through DuckDB a lake's PostgreSQL table gets NULL, not its default.
            "INSERT INTO sources (name, url, language, tags, consecutive_failures, origin, active, added_at) "
            "SELECT name, url, language, tags, 0, origin, true, now() FROM _feeds "
            "ON CONFLICT (name) DO UPDATE SET url = excluded.url, language = excluded.language, tags = excluded.tags, "
            "origin = excluded.origin, active = true"
        )


_REGISTRY_SCHEMA = pa.schema([
    ("name", pa.string()), ("url", pa.string()), ("title", pa.string()), ("html_url", pa.string()),
    ("language", pa.string()), ("tags", pa.list_(pa.string())), ("origin", pa.string()),
])


def register_feeds(con: duckdb.DuckDBPyConnection, feeds: Sequence[RegistryFeed]) -> int:
    """Add feeds to the registry in one statement (100,000 in about a
    second); a name taken meanwhile by another import is left as it was.
    Returns how many were added."""
    if not feeds:
        return 0
    table = pa.table({name: [getattr(f, name) if name != "tags" else list(f.tags) for f in feeds]
                      for name in _REGISTRY_SCHEMA.names}, schema=_REGISTRY_SCHEMA)
    with registered(con, "_registry", table), transaction(con):
        before: int = one_row(con.execute("SELECT count(*) FROM sources"))[0]
        con.execute(
            "INSERT INTO sources (name, url, title, html_url, language, tags, origin, consecutive_failures, "
            "active, added_at) "
            "SELECT name, url, title, html_url, language, tags, origin, 0, true, now() FROM _registry "
            "ON CONFLICT (name) DO NOTHING")
        after: int = one_row(con.execute("SELECT count(*) FROM sources"))[0]
        return after - before


def registered_urls(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every registered feed URL (active or not, of any origin) and its name."""
    return dict(con.execute("SELECT url, name FROM sources ORDER BY name").fetchall())


def registered_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sources").fetchall()}


def set_active(con: duckdb.DuckDBPyConnection, names: Sequence[str], active: bool) -> list[tuple[str, str, bool]]:
    """Start or stop polling OPML feeds (the sources file's feeds are
    changed in that file). Returns (name, origin, active before) of the
    feeds named that exist, changed or not."""
    if not names:
        return []
    table = pa.table({"name": list(names)})
    with registered(con, "_names", table), transaction(con):
        found = con.execute("SELECT s.name, s.origin, coalesce(s.active, true) FROM sources s "
                            "JOIN _names n ON n.name = s.name ORDER BY s.name").fetchall()
        con.execute("UPDATE sources SET active = ? FROM _names n WHERE sources.name = n.name "
                    "AND sources.origin = 'opml'", [active])
    return found


def registry_state(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[tuple[str, str, bool]]:
    """(name, origin, active) of the feeds named that exist."""
    if not names:
        return []
    with registered(con, "_names", pa.table({"name": list(names)})):
        return con.execute("SELECT s.name, coalesce(s.origin, 'sources file'), coalesce(s.active, true) "
                           "FROM sources s JOIN _names n ON n.name = s.name ORDER BY s.name").fetchall()


def opml_tags(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The tags of these feeds, for those imported from OPML."""
    if not names:
        return {}
    with registered(con, "_names", pa.table({"name": list(names)})):
        return {n: tuple(t or ()) for n, t in con.execute(
            "SELECT s.name, s.tags FROM sources s JOIN _names n ON n.name = s.name WHERE s.origin = 'opml'").fetchall()}


def set_tags(con: duckdb.DuckDBPyConnection, tags: dict[str, tuple[str, ...]]) -> None:
    if not tags:
        return
    table = pa.table({"name": list(tags), "tags": [list(t) for t in tags.values()]},
                     schema=pa.schema([("name", pa.string()), ("tags", pa.list_(pa.string()))]))
    with registered(con, "_tags", table), transaction(con):
        con.execute("UPDATE sources SET tags = t.tags FROM _tags t WHERE sources.name = t.name")


def opml_feeds(con: duckdb.DuckDBPyConnection) -> list[RegistryFeed]:
    """The active feeds imported from OPML: polled beside the sources file's."""
    rows = named_rows(con.execute("SELECT name, url, title, html_url, language, tags FROM sources "
                                  "WHERE origin = 'opml' AND active ORDER BY name"))
    return [record_of(RegistryFeed, r, tags=tuple(r["tags"] or ())) for r in rows]


def registry_rows(con: duckdb.DuckDBPyConnection, *, include_inactive: bool = False) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The registry as `newsdesk feeds list` shows it."""
    cur = con.execute(
        "SELECT name, origin, active, url, tags, last_status, last_error, "
        "round(poll_interval_s / 60, 1) AS interval_min, date_trunc('second', next_poll_at) AS next_poll_at, "
        "consecutive_failures AS failures "
        "FROM sources WHERE coalesce(origin, '') <> 'warc'" + ("" if include_inactive else " AND active") + " ORDER BY name")
    return [d[0] for d in cur.description], cur.fetchall()


def update_source_states(con: duckdb.DuckDBPyConnection, states: Sequence[SourceState]) -> None:
    if not states:
        return
    with registered(con, "_states", to_arrow(states, SOURCE_STATE_SCHEMA)):
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
                poll_reason = CASE WHEN s.ok THEN s.poll_reason ELSE sources.poll_reason END,
                -- the poll is recorded: its lease (warehouse/leases.py) has done its work
                lease_owner = NULL,
                lease_until = NULL
            FROM _states AS s
            WHERE sources.name = s.name
        """)


class FeedState(NamedTuple):
    etag: str | None
    last_modified: str | None
    next_attempt_at: datetime | None
    consecutive_failures: int
    next_poll_at: datetime | None
    poll_interval_s: int | None
    poll_reason: str | None
    last_fetched_at: datetime | None


def select_feed_state(con: duckdb.DuckDBPyConnection) -> dict[str, FeedState]:
    """What the last polls left per feed: validators for conditional GET,
    backoff, the schedule."""
    rows = con.execute("SELECT name, " + ", ".join(FeedState._fields) + " FROM sources").fetchall()
    return {name: FeedState(*rest) for name, *rest in rows}
