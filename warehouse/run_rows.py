"""The run lifecycle: a run's row is written 'running' when it starts and
ends 'completed', 'failed' or, found dead by a later run, 'abandoned'; and
the reads of runs (`newsdesk runs`, a run's per-feed report).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from transforms.records import RUN_COLUMNS, RunCounts
from warehouse.rows import named_rows
from warehouse.scopes import transaction
from warehouse.twophase import alive, is_lake, keyed_dsn


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime, flow_run_id: str | None,
              worker: str | None = None) -> None:
    con.execute(
        "INSERT INTO runs (run_id, flow_run_id, started_at, status, worker) VALUES (?, ?, ?, ?, ?)",
        [run_id, flow_run_id, started_at, "running", worker],
    )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    finished_at: datetime,
    status: str,
    counts: RunCounts,
    error: str | None = None,
) -> None:
    sets = ", ".join(f"{name} = ?" for name in RUN_COLUMNS)
    con.execute(
        f"UPDATE runs SET finished_at = ?, status = ?, error = ?, {sets} WHERE run_id = ?",
        [finished_at, status, error, *(getattr(counts, name) for name in RUN_COLUMNS), run_id],
    )


def abandon_dead_runs(con: duckdb.DuckDBPyConnection, live_run_id: str, at: datetime) -> list[str]:
    """Mark every other run still 'running' as 'abandoned'. Called by a run
    that holds the warehouse's ingest lock: no other run can be alive, so one
    still 'running' died without finishing (killed, out of power). Counts it
    had recorded stay; those it had not are taken from the rows it left
    (articles, sightings, failures, feed polls); the entry counts stay NULL,
    so run_accounting shows its balance as unknown, not as true."""
    dead = [r[0] for r in con.execute(
        "SELECT run_id FROM runs WHERE status = 'running' AND run_id <> ?", [live_run_id]).fetchall()]
    if dead and is_lake(con):  # writers share a lake: a run is dead when its lock is free
        live = alive(keyed_dsn(con), dead)
        dead = [r for r in dead if r not in live]
        if dead:  # what it leased is free now, not only once the leases run out
            from warehouse.leases import release_runs

            release_runs(keyed_dsn(con), dead)
    if not dead:
        return []
    with transaction(con):
        con.execute("""
            UPDATE runs SET
                status = 'abandoned',
                finished_at = coalesce(runs.finished_at, ?),
                error = coalesce(runs.error, 'abandoned: its process ended before the run finished'),
                feeds_total = coalesce(runs.feeds_total, (SELECT count(*) FROM feed_polls p WHERE p.run_id = runs.run_id)),
                feeds_ok = coalesce(runs.feeds_ok, (SELECT count(*) FILTER (WHERE p.ok) FROM feed_polls p
                                                    WHERE p.run_id = runs.run_id)),
                feeds_not_modified = coalesce(runs.feeds_not_modified, (
                    SELECT count(*) FILTER (WHERE p.not_modified) FROM feed_polls p WHERE p.run_id = runs.run_id)),
                feeds_failed = coalesce(runs.feeds_failed, (SELECT count(*) FILTER (WHERE NOT p.ok) FROM feed_polls p
                                                            WHERE p.run_id = runs.run_id)),
                articles_new = coalesce(runs.articles_new, (SELECT count(*) FROM articles a WHERE a.run_id = runs.run_id)),
                articles_from_feed = coalesce(runs.articles_from_feed, (
                    SELECT count(*) FILTER (WHERE a.body_source = 'feed') FROM articles a WHERE a.run_id = runs.run_id)),
                failures = coalesce(runs.failures, (SELECT count(*) FROM failures f WHERE f.run_id = runs.run_id))
            WHERE status = 'running' AND run_id IN (SELECT unnest(?::VARCHAR[]))
        """, [at, dead])
    return dead


def select_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    rows = named_rows(con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]))
    return rows[0] if rows else None


def select_run_feeds(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Per feed, what one run did: poll status, entries, new articles, duplicates, failures."""
    # A run's rows are all stamped after it started, and tables are appended
    # in time order: a constant lower bound on the time lets DuckDB skip every
    # older row group on its min/max, where run_id alone (random) would read
    # the whole column. An hour of slack covers a clock stepped back mid-run.
    started = con.execute("SELECT started_at FROM runs WHERE run_id = ?", [run_id]).fetchone()
    since = started[0] - timedelta(hours=1) if started else datetime.min.replace(tzinfo=timezone.utc)
    cur = con.execute("""
        WITH new AS (SELECT source, count(*) AS n FROM articles
                     WHERE run_id = $r AND first_seen_at >= $since GROUP BY 1),
             seen AS (SELECT source, count(*) AS n FROM article_sightings
                      WHERE run_id = $r AND seen_at >= $since GROUP BY 1),
             fails AS (SELECT source, count(*) AS n FROM failures WHERE run_id = $r AND "at" >= $since GROUP BY 1)
        SELECT p.source, p.status, p.ok, p.not_modified, p.entries, p.new_entries,
               coalesce(new.n, 0) AS articles_new,
               greatest(coalesce(seen.n, 0) - coalesce(new.n, 0), 0) AS duplicates,
               coalesce(fails.n, 0) AS failures, p.error, p.warning
        FROM feed_polls p
        LEFT JOIN new ON new.source = p.source
        LEFT JOIN seen ON seen.source = p.source
        LEFT JOIN fails ON fails.source = p.source
        WHERE p.run_id = $r AND p.fetched_at >= $since
        ORDER BY p.source
    """, {"r": run_id, "since": since})
    return named_rows(cur)


def select_recent_runs(con: duckdb.DuckDBPyConnection, limit: int = 20) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The last runs, newest first, as `newsdesk runs` shows them: columns and rows."""
    cur = con.execute("""
        SELECT run_id, started_at, status, round(epoch(finished_at - started_at), 1) AS wall_s,
               feeds_ok || '/' || feeds_total AS feeds, entries_seen, articles_new, duplicates, near_duplicates,
               entries_pending AS pending, failures, flow_run_id
        FROM runs ORDER BY started_at DESC LIMIT ?
    """, [limit])
    return [d[0] for d in cur.description], cur.fetchall()
