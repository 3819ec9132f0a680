"""The Prefect deployment `ingest/newsdesk`, served by `newsdesk serve`.

Its runs are confined (flows/confine.py): whoever can reach the Prefect API
sets the parameters, so paths other than the served sources file and
warehouse must lie inside the directories named with --allow-dir."""

from __future__ import annotations

from typing import Sequence

from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
)
from prefect.schedules import Cron

from flows.confine import confine_runs
from flows.ingest import flow_for
from flows.settings import Settings

DEPLOYMENT = "newsdesk"  # shown as ingest/newsdesk


def serve(settings: Settings, sources: str, db: str, allow_dirs: Sequence[str] = ()) -> None:
    """Blocks, running scheduled and UI-triggered runs in this process.

    The concurrency limit of 1 with ENQUEUE is global to the deployment: a run
    that starts while another holds the slot waits in AwaitingConcurrencySlot
    and goes when the first finishes. (A cron `newsdesk ingest` on the same
    warehouse is kept out by the ingest lock instead.)"""
    confine_runs(sources, db, allow_dirs)  # before any run starts: they inherit it
    flow = flow_for(settings)
    flow.serve(
        name=DEPLOYMENT,
        schedules=[Cron(settings.schedule.cron, timezone=settings.schedule.timezone)],
        parameters={"sources": sources, "db": db, "feeds": None, "from_warc": None},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description="Fetch the feeds, extract new articles, load them into the DuckDB warehouse.",
        tags=["newsdesk"],
    )
