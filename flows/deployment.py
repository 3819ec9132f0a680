"""The Prefect deployment `ingest/newsdesk`, served by `newsdesk serve`."""

from __future__ import annotations

from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
)
from prefect.schedules import Cron

from flows.ingest import flow_for
from flows.settings import Settings

DEPLOYMENT = "newsdesk"  # shown as ingest/newsdesk


def serve(settings: Settings, sources: str | None, db: str) -> None:
    """Blocks, running scheduled and UI-triggered runs in this process.

    The concurrency limit of 1 with ENQUEUE is global to the deployment: a run
    that starts while another holds the slot waits in AwaitingConcurrencySlot
    and goes when the first finishes. (A cron `newsdesk ingest` on the same
    warehouse is kept out by the ingest lock instead.)"""
    flow = flow_for(settings)
    flow.serve(
        name=DEPLOYMENT,
        schedules=[Cron(settings.schedule.cron, timezone=settings.schedule.timezone)],
        parameters={"sources": sources, "db": db, "feeds": None},
        global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description="Fetch the feeds, extract new articles, load them into the DuckDB warehouse.",
        tags=["newsdesk"],
    )
