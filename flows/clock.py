"""The run's clock. Decisions in `transforms` take the time as an argument;
`flows` reads it here, in one place."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
