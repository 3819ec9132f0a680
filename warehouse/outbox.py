"""Entries waiting for their page: the outbox of entries polls queued
(entry_outbox) and the pages pending a retry (page_attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import duckdb
import pyarrow as pa

from transforms.records import FeedEntry, PageAttempt
from warehouse.arrow_rows import ENTRY_COLUMNS
from warehouse.rows import named_rows, record_of
from warehouse.scopes import registered

# Upserting page_attempts rows: a page tried again keeps its row, with the
# new outcome, and the article its entry was sighted under (both backends).
ATTEMPT_UPSERT = """
    ON CONFLICT (source, canonical_link) DO UPDATE SET
        status = excluded.status, attempts = excluded.attempts, last_reason = excluded.last_reason,
        last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at,
        next_attempt_at = excluded.next_attempt_at,
        article_id = coalesce(excluded.article_id, page_attempts.article_id)"""


def select_outbox(con: duckdb.DuckDBPyConnection) -> list[tuple[FeedEntry, str]]:
    """Every queued entry with the run that queued it, in the order found."""
    rows = named_rows(con.execute(f"SELECT {ENTRY_COLUMNS}, run_id FROM entry_outbox ORDER BY queued_at, position"))
    return [(record_of(FeedEntry, r), r["run_id"]) for r in rows]


def select_due_attempts(con: duckdb.DuckDBPyConnection, now: datetime, limit: int = 10_000) -> list[PageAttempt]:
    """Pending pages whose next attempt has come, oldest first."""
    rows = named_rows(con.execute(f"""
        SELECT {ENTRY_COLUMNS}, article_id, status, attempts, last_reason, last_error, first_failed_at,
               last_attempt_at, next_attempt_at
        FROM page_attempts WHERE status = 'pending' AND next_attempt_at <= ?
        ORDER BY next_attempt_at LIMIT ?
    """, [now, limit]))
    return [record_of(PageAttempt, r, entry=record_of(FeedEntry, r)) for r in rows]


def delete_keys(con: duckdb.DuckDBPyConnection, table: str, keys: Sequence[tuple[str, str]]) -> None:
    """Delete the rows of these (source, canonical_link) keys from `table`:
    entry_outbox (entries dequeued) or page_attempts (pages settled), in the
    file or, prefixed, in a lake's keyed schema."""
    if not keys:
        return
    done = pa.table({"source": [s for s, _ in keys], "link": [c for _, c in keys]})
    with registered(con, "_done", done):
        con.execute(f"DELETE FROM {table} t USING _done d WHERE t.source = d.source AND t.canonical_link = d.link")
