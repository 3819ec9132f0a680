"""End-to-end throughput of `newsdesk ingest` against plain trafilatura.

    python benchmarks/run.py [--pages 1500] [--small 150] [--workers N]

1. Builds a corpus of distinct pages from the 120 real pages of
   tests/data/extraction: variant v of a page gets a marker appended to
   every text node, so each variant extracts to a different body (no exact
   duplicates) at the cost of the real page.
2. Serves them from 127.0.0.1 as 10 RSS feeds (a threaded stdlib server in
   this process).
3. Starts a real `prefect server` (warm before anything is timed) and runs,
   each as a fresh `newsdesk ingest` process pointed at it:
   - a cold run of the whole corpus into an empty warehouse,
   - a rerun (feeds unchanged: 304s, no page fetched),
   - a cold run of a small corpus (--small pages), for the memory ratio,
   - empty runs (one feed with no items) in one warm process, for the fixed
     per-run overhead of the flow itself.
4. Runs plain `trafilatura.extract` with the same options over the same pages
   in a process pool of the same size: the ceiling.

Peak RSS is the largest sum of RSS over the process tree (the CLI, its
forkserver and extraction workers), sampled every 20 ms from /proc.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.settings import PipelineSettings  # noqa: E402
from tests.httpserver import LocalServer, Reply, Request  # noqa: E402

EXTRACTION = ROOT / "tests" / "data" / "extraction"
FEEDS = 10
_TEXT_NODE = re.compile(rb">([^<]{40,})<")


def build_corpus(n: int) -> list[tuple[str, bytes]]:
    truth = json.loads((EXTRACTION / "ground-truth.json").read_text(encoding="utf-8"))
    originals = [(key, gzip.decompress((EXTRACTION / "html" / f"{key}.html.gz").read_bytes())) for key in sorted(truth)]
    pages = []
    for i in range(n):
        key, html = originals[i % len(originals)]
        variant = i // len(originals)
        marker = f" [v{variant}]".encode()
        body = html if variant == 0 else _TEXT_NODE.sub(lambda m: b">" + m.group(1) + marker + b"<", html)
        pages.append((f"/site{i % FEEDS}/{key[:16]}-{variant}.html", body))
    return pages


def serve(server: LocalServer, pages: list[tuple[str, bytes]], prefix: str) -> list[tuple[str, str]]:
    items: dict[int, list[str]] = {f: [] for f in range(FEEDS)}
    for n, (path, body) in enumerate(pages):
        url = server.route(f"/{prefix}{path}", body, content_type="text/html")
        items[n % FEEDS].append(f"<item><title>page {n}</title><link>{url}</link><guid>{prefix}-{n}</guid></item>")
    feeds = []
    for f in range(FEEDS):
        xml = f'<rss version="2.0"><channel><title>{prefix} {f}</title>{"".join(items[f])}</channel></rss>'
        feeds.append((f"{prefix}-{f}", server.route(f"/{prefix}/feed{f}.xml", _conditional(xml, f'"{prefix}-{f}"'))))
    return feeds


def _conditional(xml: str, etag: str):
    """A feed that answers 304 to a request carrying its ETag, as most publishers' feeds do."""
    body = xml.encode("utf-8")

    def reply(request: Request) -> Reply:
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"Content-Type": "application/rss+xml", "ETag": etag})

    return reply


def write_sources(path: Path, feeds: list[tuple[str, str]], workers: int, batch_size: int = 64) -> Path:
    lines = ["[fetch]", 'allow_private_networks = ["127.0.0.0/8"]', "per_host_delay_s = 0",
             "per_host_concurrency = 16", "max_concurrency = 32",
             'user_agent = "newsdesk-benchmark/1.0 (+https://example.invalid/newsdesk)"',
             "", "[pipeline]", f"workers = {workers}", f"batch_size = {batch_size}"]
    for name, url in feeds:
        lines += ["", "[[feeds]]", f'name = "{name}"', f'url = "{url}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- process-tree RSS -----------------------------------------------------------------------------


_PAGE = os.sysconf("SC_PAGE_SIZE")
_LABELS: dict[int, str] = {}  # pid -> its name in the tree, read once


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task.name}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return sorted(kids)


def _tree_rss(root: int, per_process: dict[str, int] | None = None) -> int:
    """RSS of `root` and its descendants; with `per_process`, also keeps each
    process's own peak under a short label (cli, forkserver, worker N). Walks
    the tree from `root` through /proc/PID/task/TID/children rather than
    reading every process on the machine: the sampler runs every 20 ms and
    must not take the CPU it measures."""
    total, stack = 0, [(root, "cli")]
    while stack:
        pid, label = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        if per_process is not None:
            per_process[label] = max(per_process.get(label, 0), rss)
        for n, kid in enumerate(_children(pid), 1):
            if kid not in _LABELS:
                _LABELS[kid] = _child_label(label, kid, n)
            stack.append((kid, _LABELS[kid]))
    return total


def _child_label(parent: str, pid: int, n: int) -> str:
    """Workers are forked from the forkserver and share its command line, so
    a process is named by where it sits in the tree."""
    if parent == "forkserver":
        return f"worker {n}"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        text = ""
    for name in ("forkserver", "resource_tracker", "reaper"):
        if name in text:
            return name.replace("_", " ")
    return f"{parent} child {n}"


CPU: dict[str, tuple[float, float]] = {}  # label -> (CPU s of this process, i.e. the HTTP server; of the command)


def _cpu() -> tuple[float, float]:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def run_measured(cmd: list[str], env: dict[str, str], label: str = "",
                 per_process: dict[str, int] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS of the process tree, and stdout of one command.
    `per_process` receives each process's own peak RSS (they need not peak
    at the same moment, so they may add up to more than the tree's peak)."""
    cpu_before = _cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid, per_process))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}\n{err}")
    cpu_after = _cpu()
    if label:
        CPU[label] = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
    return wall, peak, out


# -- Prefect server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect(home: Path, wait_s: float = 120) -> tuple[subprocess.Popen, str, dict[str, str]]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_API_PORT": str(port), "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api"
    import httpx

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return proc, api, {**env, "PREFECT_API_URL": api}
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"prefect server did not become healthy in {wait_s:g} s")


# -- plain trafilatura ceiling -----------------------------------------------------------------------


def _plain(args: tuple[bytes, str]) -> int:
    import trafilatura

    from transforms.articles import EXTRACT_OPTIONS

    text = trafilatura.extract(args[0], url=args[1], **EXTRACT_OPTIONS)
    return len(text or "")


def _warm(_: int) -> None:
    import trafilatura  # noqa: F401


def plain_ceiling(pages: list[tuple[str, bytes]], workers: int) -> tuple[float, int]:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, range(workers)))  # workers up and trafilatura imported before timing
        started = time.perf_counter()
        extracted = sum(n > 0 for n in pool.map(_plain, [(b, f"https://bench.example{p}") for p, b in pages],
                                                  chunksize=8))
        return time.perf_counter() - started, extracted


# -- empty runs in one warm process ---------------------------------------------------------------------


EMPTY_CHILD = """
import asyncio, json, sys, time
from flows.ingest import ingest
walls = []
for i in range(int(sys.argv[3])):
    t = time.perf_counter()
    asyncio.run(ingest(sources=sys.argv[1], db=sys.argv[2]))
    walls.append(time.perf_counter() - t)
print(json.dumps(walls))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="newsdesk end-to-end throughput benchmark")
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--small", type=int, default=150)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=None, help="[pipeline] batch_size (default: the setting's)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="newsdesk-bench-"))
    pages = build_corpus(args.pages)
    small = build_corpus(args.small)
    print(f"batch_size {args.batch_size or PipelineSettings().batch_size}; corpus: {len(pages)} pages ({sum(len(b) for _, b in pages) / 1e6:.0f} MB of HTML) in {FEEDS} feeds; "
          f"small corpus {len(small)} pages; workers {args.workers}; {os.cpu_count()} CPUs")

    server = LocalServer()
    server.__enter__()
    prefect, api, env = start_prefect(tmp / "prefect-home")
    cli = [str(Path(sys.executable).parent / "newsdesk"), "ingest", "--quiet"]
    try:
        batch = args.batch_size or PipelineSettings().batch_size
        big = write_sources(tmp / "big.toml", serve(server, pages, "big"), args.workers, batch)
        little = write_sources(tmp / "small.toml", serve(server, small, "small"), args.workers, batch)
        server.route("/empty/feed.xml", _conditional('<rss version="2.0"><channel><title>empty</title></channel></rss>',
                                                     '"empty"'))
        empty = write_sources(tmp / "empty.toml", [("empty", server.url("/empty/feed.xml"))], args.workers)

        # Prefect's first flow run on a fresh server creates the flow: do it before timing.
        subprocess.run([*cli, "--sources", str(empty), "--db", str(tmp / "warmup.duckdb")], env=env, check=True,
                       capture_output=True, cwd=ROOT)

        results = {}
        db = tmp / "big.duckdb"
        results["cold"] = run_measured([*cli, "--sources", str(big), "--db", str(db)], env, "cold")
        results["rerun"] = run_measured([*cli, "--sources", str(big), "--db", str(db)], env)
        results["small"] = run_measured([*cli, "--sources", str(little), "--db", str(tmp / "small.duckdb")], env)
        import_wall, _, _ = run_measured([sys.executable, "-c", "import flows.cli, flows.ingest"], {**env, "PYTHONPATH": str(ROOT)})
        empty_walls = json.loads(subprocess.run(
            [sys.executable, "-c", EMPTY_CHILD, str(empty), str(tmp / "empty.duckdb"), "4"], env={**env, "PYTHONPATH": str(ROOT)}, check=True,
            capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1])
        from warehouse.connection import connect

        with connect(db, read_only=True) as con:
            runs = con.execute("""
                SELECT articles_new, pages_fetched, feeds_not_modified, epoch(finished_at - started_at),
                       fetch_s, parse_s, extract_s, dedupe_s, load_s
                FROM runs ORDER BY started_at""").fetchall()
            rows = con.execute("SELECT count(*) FROM articles").fetchone()[0]
        ceiling_wall, ceiling_n = plain_ceiling(pages, args.workers)
    finally:
        prefect.terminate()
        prefect.wait(timeout=30)
        server.__exit__(None, None, None)

    cold, rerun = runs[0], runs[1]
    requests_in_rerun = rerun[1]
    n = len(pages)
    print(f"\nwarehouse rows: {rows} articles from {n} pages; cold run: {cold[0]} new, {cold[1]} pages fetched; "
          f"rerun: {rerun[0]} new, {requests_in_rerun} pages fetched, {rerun[2]}/{FEEDS} feeds unchanged (304)")
    print(f"\n{'':34} {'wall s':>8} {'articles/s':>11} {'peak RSS MB':>12}")
    cw, cp, _ = results["cold"]
    print(f"{'newsdesk ingest, cold (process)':34} {cw:>8.2f} {n / cw:>11.1f} {cp / 1e6:>12.0f}")
    print(f"{'   of which the flow run':34} {cold[3]:>8.2f} {n / cold[3]:>11.1f}")
    print(f"{'plain trafilatura, process pool':34} {ceiling_wall:>8.2f} {ceiling_n / ceiling_wall:>11.1f}")
    rw, rp, _ = results["rerun"]
    print(f"{'newsdesk ingest, rerun (process)':34} {rw:>8.2f} {'':>11} {rp / 1e6:>12.0f}")
    print(f"{'   of which the flow run':34} {rerun[3]:>8.2f}")
    sw, sp, _ = results["small"]
    print(f"{f'newsdesk ingest, cold, {len(small)} pages':34} {sw:>8.2f} {len(small) / sw:>11.1f} {sp / 1e6:>12.0f}")
    print(f"{'python -c import flows.cli':34} {import_wall:>8.2f}")
    print(f"{'empty run, warm process (each)':34} " + " ".join(f"{w:.2f}" for w in empty_walls))
    print(f"\nstage seconds, cold run: fetch {cold[4]:.2f}, parse {cold[5]:.2f}, extract {cold[6]:.2f} "
          f"(CPU in the workers), dedupe {cold[7]:.2f}, load {cold[8]:.2f}; fetch overlaps extract")
    print(f"stage seconds, rerun: fetch {rerun[4]:.2f}, parse {rerun[5]:.2f}, extract {rerun[6]:.2f}, "
          f"dedupe {rerun[7]:.2f}, load {rerun[8]:.2f}")
    server_cpu, ingest_cpu = CPU["cold"]
    print(f"CPU seconds during the cold run: newsdesk process tree {ingest_cpu:.1f} (of which extraction workers "
          f"{cold[6]:.1f}), the benchmark's HTTP server {server_cpu:.1f}; plain trafilatura pool "
          f"{2 * ceiling_wall:.1f} core-seconds of wall at most")
    print("\ntargets:")
    ratio_process = (n / cw) / (ceiling_n / ceiling_wall)
    ratio_flow = (n / cold[3]) / (ceiling_n / ceiling_wall)
    print(f"  end-to-end / ceiling: {ratio_process:.2f} for the whole process, {ratio_flow:.2f} for the flow run "
          f"(target >= 0.8)")
    print(f"  empty run in a warm process: {min(empty_walls[1:]):.2f} s best, {max(empty_walls[1:]):.2f} s worst "
          f"after the first (target <= 1 s)")
    print(f"  rerun / cold: {rw / cw:.1%} of the process wall, {rerun[3] / cold[3]:.1%} of the flow run; "
          f"{requests_in_rerun} page fetches (target <= 5 %, 0 fetches)")
    print(f"  peak RSS {n} pages / {len(small)} pages: {cp / sp:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
