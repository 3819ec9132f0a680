"""The counts of a run so far (`RunTally`): each unit of work returns its
`RunCounts`, the loop over the units adds them here as each unit ends, so a
run that fails midway records what it had done. The `runs` row stores them,
the CLI prints them, the flow returns them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from transforms.records import RunCounts


class RunTally:
    def __init__(self, run_id: str, db: str) -> None:
        self.run_id = run_id
        self.db = db
        self.counts = RunCounts()

    def add(self, counts: RunCounts) -> None:
        self.counts += counts

    def as_dict(self) -> dict[str, Any]:
        """The run's summary as the flow returns it: its id, its warehouse, its counts."""
        return {"run_id": self.run_id, "db": self.db, **asdict(self.counts)}
