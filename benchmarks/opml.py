"""Importing and exporting a large OPML list (file warehouse and lake).

    python benchmarks/opml.py [--feeds 100000] [--no-lake]

Writes an OPML file of `--feeds` outlines in 200 folders (a tenth with a
category attribute, 1% listed twice, 1% without xmlUrl), then times, as
whole `newsdesk` processes: `feeds import` into a new warehouse, the same
import again (everything already registered), `feeds export`, and
`feeds list --format csv`. The lake runs on a PostgreSQL of its own
(tests/postgres.py) on a loopback port. Nothing is fetched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NEWSDESK = [sys.executable, "-m", "flows.cli"]


def _opml(n: int) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<opml version="2.0"><head><title>bench</title></head><body>']
    per_folder = max(1, n // 200)
    for i in range(n):
        if i % per_folder == 0:
            if i:
                lines.append("</outline>")
            lines.append(f'<outline text="Folder {i // per_folder}">')
        extra = ' category="/World/Europe,Daily"' if i % 10 == 0 else ""
        lines.append(f'<outline type="rss" text="Feed {i} of host {i % 997}" '
                     f'xmlUrl="https://host{i % 997}.example/feeds/{i}.xml" htmlUrl="https://host{i % 997}.example/"'
                     f'{extra}/>')
        if i % 100 == 1:
            lines.append(f'<outline text="again" xmlUrl="https://host{i % 997}.example/feeds/{i}.xml"/>')
        if i % 100 == 2:
            lines.append('<outline text="a bookmark"/>')
    lines.append("</outline></body></opml>")
    return "\n".join(lines).encode()


def _timed(label: str, args: list[str], env: dict) -> str:
    clock = time.perf_counter()
    done = subprocess.run(NEWSDESK + args, env=env, cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - clock
    if done.returncode:
        raise SystemExit(f"{label} failed ({done.returncode}): {done.stderr[-2000:]}")
    first = (done.stdout.strip().splitlines() or [""])[0] if "import" in label else f"{len(done.stdout):,} bytes"
    print(f"  {label:<36} {took:7.2f} s   {first[:110]}", flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=100_000)
    parser.add_argument("--no-lake", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opml = tmp / "list.opml"
        opml.write_bytes(_opml(args.feeds))
        empty = tmp / "sources.toml"
        empty.write_text("")
        env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "NEWSDESK_SOURCES": str(empty)}
        print(f"{args.feeds:,} feed outlines, {opml.stat().st_size / 1e6:.1f} MB of OPML")
        targets = [("file", str(tmp / "wh.duckdb"), None)]
        postgres = None
        if not args.no_lake:
            from tests.postgres import PostgresServer

            postgres = PostgresServer()
            dsn = postgres.create_database(f"opml_{uuid.uuid4().hex[:6]}")
            targets.append(("lake", f"ducklake:postgres:{dsn}", str(tmp / "lake-data")))
        try:
            for kind, db, data in targets:
                print(kind)
                extra = ["--data-path", data] if data else []
                _timed("feeds import (new warehouse)", ["feeds", "import", str(opml), "--db", db, *extra], env)
                _timed("feeds import again (all known)", ["feeds", "import", str(opml), "--db", db], env)
                _timed("feeds export", ["feeds", "export", "--db", db], env)
                _timed("feeds list --format csv", ["feeds", "list", "--db", db, "--format", "csv"], env)
        finally:
            if postgres is not None:
                postgres.stop()


if __name__ == "__main__":
    main()
