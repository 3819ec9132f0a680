"""A run polls only the feeds that are due (transforms/schedule.py); the
warehouse shows each feed's interval and why, on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from tests.httpserver import Reply

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _rss(server, name: str, items: int, every_h: float, extra: str = "") -> str:
    now = datetime.now(timezone.utc)
    body = "".join(
        f"<item><title>{name} {i}</title><link>{server.url(f'/{name}/{i}.html')}</link>"
        f"<description>Story {i} of {name}, told in a few words for the feed.</description>"
        f"<pubDate>{format_datetime(now - timedelta(hours=every_h * i), usegmt=True)}</pubDate></item>"
        for i in range(items))
    return f'<rss version="2.0"><channel><title>{name}</title>{extra}{body}</channel></rss>'


def test_a_second_run_polls_only_the_due_feeds_and_all_feeds_polls_every_one(server, tmp_path, make_db):
    hits = {"busy": 0, "quiet": 0, "ttl": 0, "cached": 0}

    def feed(name, text, headers=None):
        def reply(req):
            hits[name] += 1
            return Reply(200, text.encode(), {"Content-Type": "application/rss+xml", **(headers or {})})
        return server.route(f"/feeds/{name}.xml", reply)

    feeds = [
        ("busy", feed("busy", _rss(server, "busy", 30, 1))),  # 30 entries in 29 h: every 58 min
        ("quiet", feed("quiet", _rss(server, "quiet", 3, 50))),  # 3 in 100 h: 33 h, lowered to 24 h
        ("ttl", feed("ttl", _rss(server, "ttl", 30, 1, "<ttl>180</ttl>"))),  # asks for 3 h
        ("cached", feed("cached", _rss(server, "cached", 30, 1), {"Cache-Control": "max-age=7200"})),
    ]
    sources = write_sources(tmp_path / "s.toml", feeds, every_run=False)
    db = make_db("sched")
    first = run_ingest(sources, db)
    assert first["feeds_ok"] == 4 and first["feeds_not_due"] == 0
    assert_accounting(first)
    health = {r[0]: r[1:] for r in query(db, "SELECT source, poll_interval_min, poll_reason, "
                                             "next_poll_at > now() FROM feed_health")}
    assert health == {
        "busy": (pytest.approx(58.0, abs=0.2), "30 entries in 29 h", True),  # the run starts seconds later
        "quiet": (1440.0, "3 entries in 4 days, lowered to max_interval_min", True),
        "ttl": (180.0, "<ttl> 180 min (would be 30 entries in 29 h)", True),
        "cached": (120.0, "Cache-Control max-age 7200 s (would be 30 entries in 29 h)", True),
    }, health
    assert hits == {"busy": 1, "quiet": 1, "ttl": 1, "cached": 1}

    second = run_ingest(sources, db)
    assert (second["feeds_ok"], second["feeds_not_due"], second["entries_seen"]) == (0, 4, 0)
    assert hits == {"busy": 1, "quiet": 1, "ttl": 1, "cached": 1}  # nothing fetched
    assert query(db, "SELECT feeds_not_due FROM runs ORDER BY started_at") == [(0,), (4,)]

    forced = run_ingest(sources, db, all_feeds=True)
    assert forced["feeds_ok"] == 4 and forced["feeds_not_due"] == 0 and forced["articles_new"] == 0
    assert hits == {"busy": 2, "quiet": 2, "ttl": 2, "cached": 2}
    assert_accounting(forced)
