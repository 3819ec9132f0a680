"""Named points where the crash-injection tests kill a run.

`NEWSDESK_KILL_AT=name` (or `name:n`, the n-th time the run passes there)
makes the process SIGKILL itself at that point, exactly as `kill -9` from
outside would, but at a known place. Unset, `crash_point` is a dictionary
lookup. Points: feeds_fetched, feeds_parsed, polls_recorded, extracting,
loading (inside a batch's transaction, before commit), between_commits (on a
lake: after a batch's PostgreSQL commit, before its lake commit), indexing;
in `newsdesk export`: export_written (files complete in the staging folder,
none swapped in yet), export_swapped (after each day swapped into --out).
"""

from __future__ import annotations

import os
import signal

_passed: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get("NEWSDESK_KILL_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
