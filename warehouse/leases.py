"""Leases that let workers of one lake share the work: due feeds in
bounded batches, and the files of a backfill one at a time.

A lease is a row's `lease_owner` and `lease_until` in the lake's
PostgreSQL, taken with `FOR UPDATE SKIP LOCKED` so that workers asking at
once get disjoint rows without waiting for each other. A lease's owner is
"<worker> <run id>". A worker that dies (kill -9) loses its leases as soon
as another run finds its run dead (its PostgreSQL lock gone:
`run_rows.abandon_dead_runs`); one that hangs, or whose machine vanished
without closing its connection, keeps them until `lease_until`; then any
worker takes them.
A feed's lease ends when its poll is recorded (`update_source_states`
clears it) or when the run ends (`release`).

Each due feed is polled once per window across the workers: a feed is
leased only if its `last_fetched_at` is still what the worker read when it
decided the feed was due, so a worker that read the state before another
polled the feed does not poll it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import psycopg

from warehouse.lake import KEYED_SCHEMA

_S = KEYED_SCHEMA


def lease_feeds(dsn: str, due: Sequence[tuple[str, datetime | None]], *, owner: str, lease_s: float,
                limit: int) -> list[str]:
    """Lease up to `limit` of the `due` feeds (name, the last_fetched_at the
    worker read), in their order, skipping those leased by a live worker and
    those polled since. Returns the names leased."""
    if not due or limit <= 0:
        return []
    with psycopg.connect(dsn, autocommit=True) as pg:
        rows = pg.execute(f"""
            WITH want AS (
                SELECT * FROM unnest(%s::text[], %s::timestamptz[]) WITH ORDINALITY AS w(name, fetched_at, pos)
            ), pick AS (
                SELECT s.name, w.pos FROM {_S}.sources s JOIN want w ON w.name = s.name
                WHERE (s.lease_until IS NULL OR s.lease_until < clock_timestamp())
                  AND s.last_fetched_at IS NOT DISTINCT FROM w.fetched_at
                ORDER BY w.pos LIMIT %s
                FOR UPDATE OF s SKIP LOCKED
            )
            UPDATE {_S}.sources s SET lease_owner = %s,
                                      lease_until = clock_timestamp() + %s * interval '1 second'
            FROM pick WHERE s.name = pick.name
            RETURNING s.name, pick.pos
        """, [[n for n, _ in due], [t for _, t in due], limit, owner, lease_s]).fetchall()
    return [name for name, _ in sorted(rows, key=lambda r: r[1])]


def release_feeds(dsn: str, owner: str) -> int:
    """End the owner's feed leases that no recorded poll ended (the run
    stopped early, or failed)."""
    with psycopg.connect(dsn, autocommit=True) as pg:
        return pg.execute(f"UPDATE {_S}.sources SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s",
                          [owner]).rowcount


def release_runs(dsn: str, run_ids: Sequence[str]) -> None:
    """Free what dead runs held: feed and WARC file leases, host slots and send turns."""
    with psycopg.connect(dsn, autocommit=True) as pg, pg.transaction():
        for run_id in run_ids:
            owner = "% " + run_id
            pg.execute(f"UPDATE {_S}.sources SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE %s",
                       [owner])
            pg.execute(f"UPDATE {_S}.warc_files SET lease_owner = NULL, lease_until = NULL "
                       "WHERE lease_owner LIKE %s AND done_at IS NULL", [owner])
            pg.execute(f"UPDATE {_S}.host_slots SET holder = NULL, held_until = NULL WHERE holder LIKE %s", [owner])
            pg.execute(f"UPDATE {_S}.host_turns SET pending_by = NULL, pending_until = NULL "
                       "WHERE pending_by LIKE %s", [owner + " %"])


def reclaim_dead(dsn: str) -> int:
    """Free what the dead runs among the current holders of leases, slots
    and send turns held (a worker under way meets them before any run
    starts and abandons them). Returns how many runs were dead."""
    from warehouse.twophase import alive

    with psycopg.connect(dsn, autocommit=True) as pg:
        owners = [r[0] for r in pg.execute(f"""
            SELECT lease_owner FROM {_S}.sources WHERE lease_until > clock_timestamp()
            UNION SELECT lease_owner FROM {_S}.warc_files WHERE lease_until > clock_timestamp() AND done_at IS NULL
            UNION SELECT holder FROM {_S}.host_slots WHERE held_until > clock_timestamp()
            UNION SELECT left(pending_by, length(pending_by) - 13) FROM {_S}.host_turns
                  WHERE pending_until > clock_timestamp()
        """).fetchall() if r[0]]
    runs = sorted({owner.rsplit(" ", 1)[-1] for owner in owners})
    dead = sorted(set(runs) - alive(dsn, runs)) if runs else []
    if dead:
        release_runs(dsn, dead)
    return len(dead)


def register_files(dsn: str, files: Sequence[tuple[str, int]]) -> None:
    """The files of a backfill (path, bytes); a file registered before keeps its state."""
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"""
            INSERT INTO {_S}.warc_files (path, bytes)
            SELECT * FROM unnest(%s::text[], %s::bigint[]) ON CONFLICT (path) DO NOTHING
        """, [[p for p, _ in files], [b for _, b in files]])


def lease_file(dsn: str, paths: Sequence[str], *, owner: str, lease_s: float) -> str | None:
    """One of `paths` not done and not leased by a live worker, or None."""
    with psycopg.connect(dsn, autocommit=True) as pg:
        row = pg.execute(f"""
            UPDATE {_S}.warc_files f SET lease_owner = %s,
                                         lease_until = clock_timestamp() + %s * interval '1 second'
            FROM (SELECT path FROM {_S}.warc_files
                  WHERE path = ANY(%s) AND done_at IS NULL
                    AND (lease_until IS NULL OR lease_until < clock_timestamp())
                  ORDER BY path LIMIT 1 FOR UPDATE SKIP LOCKED) pick
            WHERE f.path = pick.path RETURNING f.path
        """, [owner, lease_s, list(paths)]).fetchone()
    return row[0] if row else None


def finish_file(dsn: str, path: str, *, owner: str, run_id: str, records: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"UPDATE {_S}.warc_files SET done_at = clock_timestamp(), run_id = %s, records = %s, "
                   "lease_owner = NULL, lease_until = NULL WHERE path = %s AND lease_owner = %s",
                   [run_id, records, path, owner])


def release_files(dsn: str, owner: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"UPDATE {_S}.warc_files SET lease_owner = NULL, lease_until = NULL "
                   "WHERE lease_owner = %s AND done_at IS NULL", [owner])

