"""Where a command's memory goes over time: a profile for peak-RSS questions.

    python benchmarks/memory_timeline.py [--every 0.25] -- newsdesk ingest --db ...

Runs the command and samples /proc every `--every` seconds: for each process
of its tree (named by its place: cli, forkserver, worker N, ...), resident
anonymous memory (heap, DuckDB's buffer pool, tantivy's writer arena) and
resident file pages (memory-mapped files such as the search index's
segments, shared libraries). Prints the command's output lines and a memory
line whenever a process's figures moved by more than 10 MB, each stamped with
seconds since the start, then each process's peak. Prefect's log lines carry
the stage the flow is in, so set PREFECT_LOGGING_LEVEL=INFO to see them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import _child_label, _children  # noqa: E402


def _status(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) in bytes."""
    anon = file = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:"):
                file = int(line.split()[1]) * 1024
    return anon, file


def _tree(root: int) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    stack = [(root, "cli")]
    while stack:
        pid, label = stack.pop()
        try:
            out[label] = _status(pid)
        except OSError:
            continue
        stack.extend((kid, _child_label(label, kid, n)) for n, kid in enumerate(_children(pid), 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.25)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(f"{time.perf_counter() - started:7.2f}  {text}", flush=True)

    def relay() -> None:
        for line in proc.stdout:
            say("| " + line.rstrip())

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    last: dict[str, tuple[int, int]] = {}
    peaks: dict[str, tuple[int, int, int, float]] = {}  # label -> (anon + file, anon, file, at)
    tree_peak = (0, 0.0)
    while proc.poll() is None:
        now = _tree(proc.pid)
        at = time.perf_counter() - started
        total = sum(a + f for a, f in now.values())
        if total > tree_peak[0]:
            tree_peak = (total, at)
        moved = [name for name, (a, f) in now.items()
                 if name not in last or abs(a - last[name][0]) + abs(f - last[name][1]) > 10_000_000]
        for name, (a, f) in now.items():
            if a + f > peaks.get(name, (0,))[0]:
                peaks[name] = (a + f, a, f, at)
        if moved:
            last.update({name: now[name] for name in moved})
            say("  ".join(f"{name}: anon {now[name][0] / 1e6:.0f} file {now[name][1] / 1e6:.0f} MB"
                          for name in sorted(moved)) + f"   (tree {total / 1e6:.0f} MB)")
        time.sleep(args.every)
    reader.join(timeout=5)
    print(f"\ntree peak {tree_peak[0] / 1e6:.0f} MB at {tree_peak[1]:.2f} s; each process's own peak:")
    for name, (both, a, f, at) in sorted(peaks.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:>18}: {both / 1e6:6.0f} MB (anon {a / 1e6:.0f}, file {f / 1e6:.0f}) at {at:.2f} s")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
