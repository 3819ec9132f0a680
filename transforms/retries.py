"""Retry decisions across runs, for pages and for feeds. Pure: the current
time comes in as an argument.

A transient failure (timeout, connection error, 408/429, 5xx) earns another
attempt in a later run after a growing delay, up to a number of attempts; a
permanent one (404, not_html, too_large, blocked, robots) is recorded once and
not retried on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Defaults and limits: `flows.settings.RetrySettings`, which builds this."""

    page_attempts: int  # fetches of one page, across runs, before giving up
    page_backoff_s: float  # delay before the 2nd attempt; doubles each time
    feed_backoff_s: float  # delay after a feed's 1st failure; doubles each time
    max_backoff_s: float  # a dead feed is polled at least this often


def backoff(base_s: float, failures: int, cap_s: float) -> timedelta:
    """base, 2×base, 4×base ... after 1, 2, 3 ... failures, capped."""
    if failures <= 0:
        return timedelta(0)
    return timedelta(seconds=min(cap_s, base_s * (2 ** min(failures - 1, 30))))


def next_page_attempt(transient: bool, attempts: int, now: datetime, policy: RetryPolicy) -> tuple[str, datetime | None]:
    """(status, next attempt) after `attempts` failed fetches of one page:
    'pending' with a time, or 'given_up' / 'failed' with none."""
    if not transient:
        return "failed", None
    if attempts >= policy.page_attempts:
        return "given_up", None
    return "pending", now + backoff(policy.page_backoff_s, attempts, policy.max_backoff_s)


def next_feed_attempt(consecutive_failures: int, now: datetime, policy: RetryPolicy, *,
                      retry_after_s: float | None = None) -> datetime | None:
    """When to poll a failing feed again; None polls it on the next run. No
    sooner than the server's Retry-After (a 429 or 503), up to max_backoff_s."""
    if consecutive_failures <= 0:
        return None
    wait = backoff(policy.feed_backoff_s, consecutive_failures, policy.max_backoff_s)
    if retry_after_s:
        wait = max(wait, timedelta(seconds=min(retry_after_s, policy.max_backoff_s)))
    return now + wait
