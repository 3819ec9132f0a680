"""One ingest per warehouse: an advisory lock file beside the DuckDB file.

DuckDB's own lock is held only for short load transactions, so that readers
get in between; it cannot keep two ingests (a cron job and a Prefect run,
say) from interleaving their batches. This lock is held for a whole run.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from transforms.errors import NewsdeskError


class IngestBusy(NewsdeskError):
    """Another ingest held the warehouse for longer than we would wait."""


@contextmanager
def ingest_lock(db: Path, wait_s: float) -> Iterator[float]:
    """Hold <db>.ingest.lock for the block; wait up to `wait_s` for it, with
    backoff. Yields the seconds spent waiting. The lock dies with the process."""
    def busy(holder: str, waited: float) -> Exception:
        return IngestBusy(f"another ingest ({holder}) is writing {db}; waited {waited:.0f} s "
                          f"(lock_wait_s = {wait_s:g}), giving up")

    with exclusive(Path(str(db) + ".ingest.lock"), wait_s, busy) as waited:
        yield waited


@contextmanager
def exclusive(path: Path, wait_s: float, busy: Callable[[str, float], Exception]) -> Iterator[float]:
    """Hold an flock on `path` for the block, waiting up to `wait_s` with
    backoff; past that, raise `busy(holder, waited)`. The file says which
    process holds it. Yields the seconds spent waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    started = time.monotonic()
    delay = 0.1
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited + delay > wait_s:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    raise busy(holder, waited) from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield time.monotonic() - started
    finally:
        os.close(fd)  # releases the lock
