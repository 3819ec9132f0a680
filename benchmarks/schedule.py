"""What the per-feed schedule costs a run, at many feeds (file warehouse).

    python benchmarks/schedule.py [--feeds 100000] [--entries 30]

1. Registering the feeds of a sources file (`feed_registry.upsert_sources`).
2. Reading every feed's state (`feed_registry.select_feed_state`) and deciding
   which are due (`transforms.schedule.due_feeds`), with a tenth due.
3. Scheduling the polled feeds: `transforms.polls.triage_polls` over parsed
   feeds of `--entries` dated entries each (the interval per feed), then
   storing their state and next poll (`feed_registry.update_source_states`).
Feeds and entries are synthetic; nothing is fetched.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transforms.polls import PolledFeed, triage_polls  # noqa: E402
from transforms.records import FeedEntry, ParsedFeed  # noqa: E402
from transforms.retries import RetryPolicy  # noqa: E402
from transforms.schedule import ScheduleRule, due_feeds  # noqa: E402
from warehouse import feed_registry  # noqa: E402
from warehouse.connection import connect  # noqa: E402
from warehouse.scopes import transaction  # noqa: E402


def _timed(label: str, fn):
    clock = time.perf_counter()
    out = fn()
    print(f"{label:<58} {time.perf_counter() - clock:8.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    names = [f"feed-{i:07d}" for i in range(args.feeds)]
    feeds = [{"name": n, "url": f"https://host{i % 997}.example/{n}.xml", "language": None, "tags": []}
             for i, n in enumerate(names)]
    policy = RetryPolicy(page_attempts=3, page_backoff_s=60, feed_backoff_s=600, max_backoff_s=86_400)
    with tempfile.TemporaryDirectory() as tmp, connect(Path(tmp) / "wh.duckdb") as con:
        print(f"{args.feeds:,} feeds, {args.entries} entries per polled feed")
        _timed("register the feeds (upsert_sources)", lambda: feed_registry.upsert_sources(con, feeds))

        # Every feed polled once, spread over the last day, each on its own interval.
        def polled(batch: list[str], at: datetime) -> list[PolledFeed]:
            out = []
            for name in batch:
                every_h = rng.choice([0.1, 1, 6, 24, 72])
                entries = tuple(FeedEntry(source=name, link=f"https://x.example/{name}/{k}",
                                          canonical_link=f"https://x.example/{name}/{k}", guid=None, title=None,
                                          author=None, published_at=at - timedelta(hours=every_h * k),
                                          feed_text="", language=None) for k in range(args.entries))
                out.append(PolledFeed(name, at - timedelta(minutes=rng.random() * 1_440), 200, False,
                                      parsed=ParsedFeed(source=name, url="", title=None, language=None,
                                                        entries=entries)))
            return out

        polls = _timed(f"build {args.feeds:,} parsed feeds (benchmark setup)", lambda: polled(names, now))
        triage = _timed("schedule them (triage_polls: interval per feed)",
                        lambda: triage_polls(polls, {}, run_id="bench", policy=policy, rule=ScheduleRule()))

        def store():
            with transaction(con):
                feed_registry.update_source_states(con, triage.states)
        _timed("store state and next poll (update_source_states)", store)

        state = _timed("read every feed's state (select_feed_state)", lambda: feed_registry.select_feed_state(con))
        later = now + timedelta(minutes=30)
        due = _timed("decide which are due in 30 min (due_feeds)", lambda: due_feeds(
            names, {n: s.next_attempt_at for n, s in state.items()}, {n: s.next_poll_at for n, s in state.items()},
            later))
        print(f"due in 30 min: {len(due.due):,} of {args.feeds:,}; not due {len(due.not_due):,}")
        intervals = sorted(s.poll_interval_s for s in triage.states)
        print("interval min / median / max, min:", intervals[0] // 60, intervals[len(intervals) // 2] // 60,
              intervals[-1] // 60)
        chosen = set(due.due)
        tenth = [p for p in polls if p.name in chosen][: args.feeds // 10]
        again = triage_polls(tenth, {}, run_id="bench2", policy=policy, rule=ScheduleRule())

        def store_tenth():
            with transaction(con):
                feed_registry.update_source_states(con, again.states)
        _timed(f"a run's update: {len(again.states):,} polled feeds' next poll", store_tenth)


if __name__ == "__main__":
    main()
