"""Helper processes die with the run that started them, even on SIGKILL.

A `newsdesk ingest` starts processes of its own: Prefect's temporary API
server (a uvicorn process), the extraction forkserver and workers, and
multiprocessing's resource tracker. The workers watch the run themselves
(`flows.extraction`); the others do not, and a run killed with SIGKILL (cron's
timeout, the OOM killer, a user) would leave them running for good. So the
CLI starts one small watcher process: it notes the run's children once a
second and, as soon as the run's process has ended (however it ended), sends
each of them SIGTERM, then SIGKILL to any still there 8 s later.

Linux only (it reads /proc and waits on a pidfd); elsewhere it does nothing.
Imports nothing but the standard library: the watcher starts in ~50 ms.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

_GRACE_S = 8.0


_watcher: subprocess.Popen | None = None


def reap_children_on_exit() -> subprocess.Popen | None:
    """Start the watcher for this process, once. Returns it (None where unsupported)."""
    global _watcher
    if _watcher is not None and _watcher.poll() is None:
        return _watcher
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return None
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); " \
           f"from flows.reaper import watch; watch({os.getpid()})"
    _watcher = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True)
    return _watcher


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    out.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/pid/stat): with the pid,
    it names one process, so a pid reused later is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _signal(procs: dict[int, str], sig: int) -> dict[int, str]:
    alive = {}
    for pid, started in procs.items():
        if _started(pid) == started:
            try:
                os.kill(pid, sig)
                alive[pid] = started
            except ProcessLookupError:
                pass
    return alive


def watch(pid: int) -> None:
    """Run in the watcher process: wait for `pid` to end, then end its children."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    me = os.getpid()
    seen: dict[int, str] = {}
    while not select.select([fd], [], [], 1.0)[0]:
        for child in _children(pid) - {me} - seen.keys():
            started = _started(child)
            if started is not None:
                seen[child] = started
    alive = _signal(seen, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {p: s for p, s in alive.items() if _started(p) == s}
    _signal(alive, signal.SIGKILL)
