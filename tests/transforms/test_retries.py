from datetime import datetime, timedelta, timezone

from transforms.retries import (
    RetryPolicy,
    backoff,
    next_feed_attempt,
    next_page_attempt,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
POLICY = RetryPolicy(page_attempts=3, page_backoff_s=60, feed_backoff_s=600, max_backoff_s=86_400)


def test_backoff_doubles_and_caps():
    assert [backoff(60, n, 1000).total_seconds() for n in range(6)] == [0, 60, 120, 240, 480, 960]
    assert backoff(600, 40, 86_400) == timedelta(hours=24)


def test_page_retries_transient_until_given_up():
    assert next_page_attempt(True, 1, NOW, POLICY) == ("pending", NOW + timedelta(seconds=60))
    assert next_page_attempt(True, 2, NOW, POLICY) == ("pending", NOW + timedelta(seconds=120))
    assert next_page_attempt(True, 3, NOW, POLICY) == ("given_up", None)
    assert next_page_attempt(False, 1, NOW, POLICY) == ("failed", None)


def test_dead_feed_is_polled_less_often_but_at_least_daily():
    assert next_feed_attempt(0, NOW, POLICY) is None
    assert next_feed_attempt(1, NOW, POLICY) == NOW + timedelta(minutes=10)
    assert next_feed_attempt(3, NOW, POLICY) == NOW + timedelta(minutes=40)
    assert next_feed_attempt(50, NOW, POLICY) == NOW + timedelta(hours=24)
