"""Writers of one lake race for the same rows (overlapping feeds, the same
story in two feeds): a unit of work that lost is worked out again against
what the winner stored, never failed (warehouse/twophase.py says which
errors are such a race)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from warehouse.twophase import retryable

T = TypeVar("T")

ATTEMPTS = 8


def retrying(unit: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run `unit` (a read, then a write of the warehouse) again, with
    backoff, while it loses races; any other error goes through at once."""
    for attempt in range(attempts):
        try:
            return unit()
        except Exception as exc:
            if not retryable(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")
