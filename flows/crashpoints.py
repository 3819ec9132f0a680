"""Named points where the crash-injection tests kill a run.

`NEWSDESK_KILL_AT=name` (or `name:n`, the n-th time the run passes there)
makes the process SIGKILL itself at that point, exactly as `kill -9` from
outside would, but at a known place. Unset, `crash_point` is a dictionary
lookup. Points: feeds_fetched, feeds_parsed, polls_recorded, extracting,
loading (inside a batch's transaction, before commit), between_commits (on a
lake: after a batch's PostgreSQL commit, before its lake commit), indexing;
in `newsdesk export`: export_written (files complete in the staging folder,
none swapped in yet), export_swapped (after each day swapped into --out);
for workers of a lake: feeds_leased (a batch of due feeds leased, none
fetched), warc_file_loaded.

`NEWSDESK_FREEZE_AT` is the same with SIGSTOP: the process stays alive (its
PostgreSQL connections and locks too) but does nothing, as a hung worker.
"""

from __future__ import annotations

import os
import signal

_passed: dict[str, int] = {}


def crash_point(name: str) -> None:
    for variable, sig in (("NEWSDESK_KILL_AT", signal.SIGKILL), ("NEWSDESK_FREEZE_AT", signal.SIGSTOP)):
        wanted = os.environ.get(variable)
        if not wanted:
            continue
        point, _, nth = wanted.partition(":")
        if point != name:
            continue
        _passed[name] = _passed.get(name, 0) + 1
        if _passed[name] >= int(nth or 1):
            os.kill(os.getpid(), sig)
