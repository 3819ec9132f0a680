"""Workers sharing a lake: one polling window of many feeds on many hosts.

    python benchmarks/workers.py [--feeds 10000] [--hosts 20] [--workers 1,2,4]
                                 [--busy 0.03] [--delay 0.02] [--concurrency 2]

`--feeds` feeds on `--hosts` loopback hosts (127.0.0.10, .11, ...), served
by one process of stdlib HTTP servers. The lake is primed as after a day of
polling (every feed has an ETag, every feed is due); in the window measured,
most feeds answer 304 and a `--busy` share answers 200 with two new items,
whose pages are fetched, extracted and loaded. For each worker count, a new
lake gets the feeds by `newsdesk feeds import` of an OPML list, then that
many `newsdesk ingest` processes start at once against one `prefect server`.

Printed per worker count: the window's wall time (first start to last
exit), requests per host per second and, measured at the servers, the most
requests in flight at one host and the gaps between two starts at one host
(against `per_host_concurrency` and `per_host_delay_s`); the same gaps as
the workers stamped the sends in PostgreSQL (a trigger the benchmark adds
logs them); pages loaded per second, and PostgreSQL statements per feed
polled (from the server's statement log).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NEWSDESK = [sys.executable, "-m", "flows.cli"]


def _host(i: int) -> str:
    return f"127.0.0.{10 + i}"


def _busy(feed: int, share: float) -> bool:
    return (feed * 7919) % 1000 < share * 1000



def serve(hosts: int, busy: float, ready, stop, out: str) -> None:
    """All hosts' servers, in this process; the request log to `out` at the end."""
    from tests.flows.helpers import story_page

    log: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def handler_for(host: str):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                started = time.monotonic()
                m = re.match(r"/f/(\d+)\.xml$", self.path)
                if m:
                    feed = int(m[1])
                    if _busy(feed, busy):
                        items = "".join(f"<item><title>Story {feed}-{k}</title>"
                                        f"<link>http://{host}:{self.server.server_port}/p/{feed}-{k}.html</link></item>"
                                        for k in range(2))
                        status, body, kind = 200, (f'<rss version="2.0"><channel><title>Feed {feed}</title>{items}'
                                                   '</channel></rss>').encode(), "application/rss+xml"
                    elif self.headers.get("If-None-Match") == '"v1"':
                        status, body, kind = 304, b"", None
                    else:
                        status, body, kind = 200, b'<rss version="2.0"><channel><title>x</title></channel></rss>', \
                            "application/rss+xml"
                elif self.path.startswith("/p/"):
                    status, body, kind = 200, story_page(self.path[3:-5]), "text/html"
                else:
                    status, body, kind = 404, b"not found", "text/plain"
                self.send_response(status)
                if kind:
                    self.send_header("Content-Type", kind)
                    self.send_header("ETag", '"v2"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)
                with lock:
                    log.append((host, started, time.monotonic()))
        return Handler

    servers = []
    port = None
    for i in range(hosts):
        server = ThreadingHTTPServer((_host(i), port or 0), handler_for(_host(i)))
        server.daemon_threads = True
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    ready.put(port)
    stop.wait()
    for server in servers:
        server.shutdown()
    Path(out).write_text(json.dumps(log))


def politeness(log: list) -> dict:
    per_host: dict[str, list[tuple[float, float]]] = {}
    for host, start, end in log:
        per_host.setdefault(host, []).append((start, end))
    most, gap, rates, gaps = 0, float("inf"), [], []
    for spans in per_host.values():
        spans.sort()
        events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
        now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        starts = [s for s, _ in spans]
        gaps += [b - a for a, b in zip(starts, starts[1:])]
        if len(starts) > 1:
            rates.append(len(starts) / (starts[-1] - starts[0]))
    gaps.sort()
    return {"most_in_flight": most, "min_gap_s": gaps[0] if gaps else gap, "p01_gap_s": gaps[len(gaps) // 100] if gaps else gap,
            "gaps": gaps, "req_per_host_s": sum(rates) / len(rates) if rates else 0, "requests": len(log)}


def _opml(feeds: int, hosts: int, port: int) -> str:
    lines = ['<?xml version="1.0"?><opml version="2.0"><head><title>bench</title></head><body>']
    lines += [f'<outline text="f{i}" xmlUrl="http://{_host(i % hosts)}:{port}/f/{i}.xml"/>' for i in range(feeds)]
    return "\n".join(lines + ["</body></opml>"])


def window(n_workers: int, args, port: int, pg, prefect, tmp: Path) -> dict:
    import psycopg

    from tests.flows.send_log import log_sends, shortest_send_gap
    from warehouse.lake import KEYED_SCHEMA

    dsn = pg.create_database(f"workers_{n_workers}_{uuid.uuid4().hex[:6]}")
    lake = f"ducklake:postgres:{dsn}"
    sources = tmp / "sources.toml"
    sources.write_text(
        f'[fetch]\nallow_private_networks = ["127.0.0.0/8"]\nper_host_delay_s = {args.delay}\n'
        f"per_host_concurrency = {args.concurrency}\nmax_concurrency = 32\ntimeout_s = 30\ntotal_timeout_s = 120\n"
        "user_agent = \"newsdesk-bench/1.0 (+https://example.invalid)\"\n\n"
        f"[workers]\nfeeds_per_lease = {args.lease}\n\n[archive]\nenabled = false\n\n[pipeline]\nbatch_size = 64\n")
    opml = tmp / "feeds.opml"
    opml.write_text(_opml(args.feeds, args.hosts, port))
    env = {**prefect.client_env, "NEWSDESK_SOURCES": str(sources), "PREFECT_HOME": str(tmp / "home")}
    done = subprocess.run(NEWSDESK + ["feeds", "import", str(opml), "--db", lake, "--data-path",
                                      str(tmp / f"lake-{n_workers}")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    log_sends(dsn)  # the sends as the workers stamp them, beside what the servers see
    with psycopg.connect(dsn, autocommit=True) as con:  # as after a day of polls: validators, all due
        con.execute(f"UPDATE {KEYED_SCHEMA}.sources SET etag = '\"v1\"', last_status = 200, "
                    "last_fetched_at = now() - interval '2 days', last_success_at = now() - interval '2 days', "
                    "next_poll_at = now() - interval '1 minute', poll_interval_s = 3600, poll_reason = 'primed'")
    log_at = (pg.root / "server.log").stat().st_size
    with psycopg.connect(pg.dsn(), autocommit=True) as con:
        con.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        con.execute("SELECT pg_reload_conf()")
    clock = time.perf_counter()
    procs = [subprocess.Popen(NEWSDESK + ["ingest", "--db", lake, "--quiet"], cwd=ROOT,
                              env={**env, "NEWSDESK_WORKER": f"w{i}", "NEWSDESK_SEARCH_DIR": str(tmp / f"s{n_workers}-{i}")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n_workers)]
    codes = [(p.wait(), p.stderr.read()) for p in procs]
    wall = time.perf_counter() - clock
    with psycopg.connect(pg.dsn(), autocommit=True) as con:
        con.execute("ALTER SYSTEM RESET log_min_duration_statement")
        con.execute("SELECT pg_reload_conf()")
    for code, err in codes:
        if code not in (0, 3):
            raise SystemExit(f"a worker failed ({code}): {err[-3000:]}")
    with open(pg.root / "server.log", errors="replace") as f:
        f.seek(log_at)
        statements = sum(1 for line in f if re.search(r"LOG:\s+duration: [0-9.]+ ms\s+(statement|execute)", line))
    from warehouse.connection import connect

    with connect(lake, read_only=True) as con:
        runs = con.execute("SELECT worker, feeds_ok, feeds_not_modified, feeds_elsewhere, pages_fetched, articles_new, "
                           "epoch(finished_at - started_at) FROM runs ORDER BY worker").fetchall()
    polled = sum(r[1] for r in runs)
    sends, send_gap = shortest_send_gap(dsn)
    return {"sends": sends, "send_gap_s": send_gap, "workers": n_workers, "wall_s": wall, "runs": runs, "polled": polled,
            "not_modified": sum(r[2] for r in runs), "articles": sum(r[5] for r in runs),
            "pages_fetched": sum(r[4] for r in runs), "statements": statements}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--busy", type=float, default=0.03)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--lease", type=int, default=500)
    args = parser.parse_args()
    from tests.postgres import PostgresServer
    from tests.prefect_server import PrefectServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "prefect").mkdir()
        pg = PostgresServer()
        prefect = PrefectServer(tmp / "prefect")
        results = []
        try:
            for n in [int(x) for x in args.workers.split(",")]:
                ctx = multiprocessing.get_context("spawn")
                ready, stop = ctx.Queue(), ctx.Event()
                out = tmp / f"requests-{n}.json"
                server = ctx.Process(target=serve, args=(args.hosts, args.busy, ready, stop, str(out)))
                server.start()
                port = ready.get(timeout=60)
                try:
                    result = window(n, args, port, pg, prefect, tmp)
                finally:
                    stop.set()
                    server.join(timeout=60)
                result.update(politeness(json.loads(out.read_text())))
                results.append(result)
                r = result
                print(f"{n} worker(s): window {r['wall_s']:.1f} s; feeds polled {r['polled']:,} "
                      f"({r['not_modified']:,} unchanged), pages {r['pages_fetched']:,}, articles {r['articles']:,} "
                      f"({r['articles'] / r['wall_s']:.1f}/s); requests {r['requests']:,}, "
                      f"{r['req_per_host_s']:.1f}/s per host; at one host: at most {r['most_in_flight']} at once "
                      f"(limit {args.concurrency}), gaps between starts: shortest {r['min_gap_s'] * 1000:.1f} ms, "
                      f"1st percentile {r['p01_gap_s'] * 1000:.1f} ms, "
                      f"{sum(g < args.delay for g in r['gaps'])} under the limit of {args.delay * 1000:.0f} ms; "
                      f"as stamped by the workers: shortest {r['send_gap_s'] * 1000:.1f} ms over {r['sends']:,} sends; "
                      f"PostgreSQL statements {r['statements']:,} "
                      f"({r['statements'] / max(r['polled'], 1):.1f} per feed polled)", flush=True)
                for run in r["runs"]:
                    print(f"    {run[0]}: polled {run[1]:,} ({run[2]:,} unchanged), left to others {run[3]:,}, "
                          f"pages {run[4]:,}, new {run[5]:,}, run {run[6]:.1f} s", flush=True)
        finally:
            prefect.stop()
            pg.stop()
        print(json.dumps([{k: v for k, v in r.items() if k not in ("runs", "gaps")} for r in results]))


if __name__ == "__main__":
    main()
