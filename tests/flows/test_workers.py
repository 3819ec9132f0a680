"""Workers of one lake share the feeds (flows/polls.py:poll_due,
warehouse/leases.py) and each host's politeness (warehouse/host_turns.py):
each due feed is polled once across them, a worker killed with SIGKILL
loses its leases to another after `[workers] lease_s`, and, measured at
the servers, no host sees more than `per_host_concurrency` requests at once
or two starts closer than `per_host_delay_s`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.helpers import query, story_page, write_sources
from tests.flows.send_log import log_sends, shortest_send_gap
from tests.httpserver import LocalServer, Reply
from warehouse.target import parse_target

pytestmark = [pytest.mark.slow, pytest.mark.server]

NEWSDESK = Path(sys.executable).with_name("newsdesk")
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
FEEDS_PER_HOST, ITEMS = 6, 2
CONCURRENCY, DELAY_S, SERVE_S = 2, 0.2, 0.5  # a response outlasts two gaps: the slots limit it



def _slow(reply: Reply):
    def handler(req):
        time.sleep(SERVE_S)  # a response takes a while: requests would pile up without the shared gate
        return reply
    return handler


@pytest.fixture
def hosts():
    servers = [LocalServer(host=h) for h in HOSTS]
    for s in servers:
        s.__enter__()
    yield servers
    for s in servers:
        s.__exit__(None, None, None)


def _serve(servers) -> list[tuple[str, str]]:
    feeds = []
    for h, server in enumerate(servers):
        for f in range(FEEDS_PER_HOST):
            items = ""
            for i in range(ITEMS):
                story = f"h{h}f{f}i{i}"
                page = Reply(200, story_page(story), {"Content-Type": "text/html"})
                link = server.route(f"/s/{story}.html", _slow(page))
                items += f"<item><title>Story {story}</title><link>{link}</link></item>"
            body = f'<rss version="2.0"><channel><title>Feed {h}.{f}</title>{items}</channel></rss>'.encode()
            url = server.route(f"/feeds/{f}.xml", _slow(Reply(200, body, {"Content-Type": "application/rss+xml"})))
            feeds.append((f"h{h}-f{f}", url))
    return feeds


def _sources(path: Path, feeds, lease_s: float = 900) -> Path:
    # Each feed polled once per window: the schedule's own (every_run=False).
    sources = write_sources(path, feeds, every_run=False, per_host_concurrency=CONCURRENCY, per_host_delay_s=DELAY_S)
    with sources.open("a") as f:
        f.write(f"\n[pipeline]\nbatch_size = 4\nworkers = 1\n\n[archive]\nenabled = false\n\n"
                f"[workers]\nfeeds_per_lease = 5\nlease_s = {lease_s}\n")
    return sources


def _start(sources: Path, lake: str, env: dict, tmp_path: Path, name: str, **extra_env) -> subprocess.Popen:
    return subprocess.Popen(
        [str(NEWSDESK), "ingest", "--sources", str(sources), "--db", lake, "--quiet"],
        # As on machines of their own: a search index each, and a name.
        env={**env, "NEWSDESK_SEARCH_DIR": str(tmp_path / f"search-{name}"), "NEWSDESK_WORKER": name, **extra_env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _feed_hits(servers) -> dict[str, int]:
    hits: dict[str, int] = {}
    for h, server in enumerate(servers):
        for r in server.requests:
            if r.path.startswith("/feeds/"):
                name = f"h{h}-f{r.path.split('/')[-1].split('.')[0]}"
                hits[name] = hits.get(name, 0) + 1
    return hits


def politeness(servers) -> list[tuple[int, float]]:
    """Per host, as its server saw it: the most requests at once, and the
    shortest gap between two request starts."""
    out = []
    for server in servers:
        starts = sorted(r.started for r in server.requests)
        out.append((server.max_in_flight, min(b - a for a, b in zip(starts, starts[1:]))))
    return out


def test_three_workers_poll_each_due_feed_once_and_keep_each_hosts_limits(hosts, prefect_server, tmp_path, make_lake):
    feeds = _serve(hosts)
    lake = make_lake("workers")
    dsn = parse_target(lake).dsn
    log_sends(dsn)
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    sources = _sources(tmp_path / "s.toml", feeds)
    workers = [_start(sources, lake, env, tmp_path, f"w{i}") for i in range(3)]
    results = [(w.wait(timeout=900), w.stderr.read()) for w in workers]
    for code, err in results:
        assert code == 0, err[-3000:]

    assert _feed_hits(hosts) == {name: 1 for name, _ in feeds}  # each due feed once, across the workers
    runs = query(lake, "SELECT worker, status, feeds_total, feeds_ok, feeds_elsewhere, feeds_not_due, articles_new "
                       "FROM runs ORDER BY worker")
    assert [r[:3] for r in runs] == [("w0", "completed", 24), ("w1", "completed", 24), ("w2", "completed", 24)]
    assert sum(r[3] for r in runs) == 24  # polled: once each
    for _, _, total, ok, elsewhere, not_due, _ in runs:  # each feed is polled here, elsewhere, or was not due
        assert ok + elsewhere + not_due == total
    assert sum(r[6] for r in runs) == 48
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(48, 48)]
    assert query(lake, "SELECT count(*) FROM sources WHERE lease_owner IS NOT NULL") == [(0,)]
    # Each page fetched once: a worker works the entries it queued, not another live worker's.
    pages = [r.path for s in hosts for r in s.requests if r.path.startswith("/s/")]
    assert len(pages) == len(set(pages)) == 48
    measured = politeness(hosts)
    sends, shortest = shortest_send_gap(dsn)
    print("\nper host (most at once, shortest gap between starts in s):",
          [(n, round(gap, 3)) for n, gap in measured], f"\nsends stamped: {sends}, shortest gap {shortest:.4f} s",
          "\nruns (worker, status, feeds, polled, elsewhere, not due, new):", runs)
    # Between two sends to one host, as the workers stamped them in PostgreSQL: the delay, exactly.
    assert sends == sum(len(s.requests) for s in hosts) and shortest >= DELAY_S
    for most, gap in measured:
        assert most <= CONCURRENCY
        # As the servers saw them: a request is stamped when the server's thread
        # reads it, late by however long two busy cores keep it waiting.
        assert gap >= DELAY_S / 2  # a per-process gate alone would show gaps near 0


def test_a_hung_workers_leases_pass_to_another_after_the_lease(hosts, prefect_server, tmp_path, make_lake):
    """A worker that hangs (SIGSTOP: alive, its connections and locks held)
    keeps its leases until `lease_s`; a killed one loses them at once
    (test_crash_recovery: the rerun after a kill at feeds_fetched)."""
    feeds = _serve(hosts)
    lake = make_lake("takeover")
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    sources = _sources(tmp_path / "s.toml", feeds, lease_s=20)

    hung = _start(sources, lake, env, tmp_path, "hung", NEWSDESK_FREEZE_AT="feeds_leased")
    try:
        deadline = time.monotonic() + 300
        while Path(f"/proc/{hung.pid}/stat").read_text().split(")")[1].split()[0] != "T":
            assert hung.poll() is None and time.monotonic() < deadline, hung.stderr.read()[-3000:]
            time.sleep(0.1)
        held = query(lake, "SELECT name FROM sources WHERE lease_owner LIKE 'hung %' ORDER BY name")
        assert len(held) == 5 and not _feed_hits(hosts)  # leased, then hung before fetching

        # While its leases last, another worker polls all but those.
        second = _start(sources, lake, env, tmp_path, "second")
        assert second.wait(timeout=600) == 0, second.stderr.read()[-3000:]
        hits = _feed_hits(hosts)
        assert len(hits) == 19 and not set(hits) & {n for (n,) in held}

        # After the lease, the next worker takes them over.
        left = query(lake, "SELECT max(lease_until) - now() FROM sources")[0][0]
        time.sleep(max(0.0, left.total_seconds()) + 0.5)
        third = _start(sources, lake, env, tmp_path, "third")
        assert third.wait(timeout=600) == 0, third.stderr.read()[-3000:]
    finally:
        hung.kill()
        hung.wait(timeout=60)
    assert _feed_hits(hosts) == {name: 1 for name, _ in feeds}
    runs = query(lake, "SELECT worker, status, feeds_ok, feeds_elsewhere, feeds_not_due FROM runs ORDER BY started_at")
    assert runs == [("hung", "running", None, None, None), ("second", "completed", 19, 5, 0),
                    ("third", "completed", 5, 0, 19)], runs
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(48, 48)]
    print("\na worker hung after leasing 5 feeds:", runs)


def test_a_worker_under_way_takes_over_the_feeds_of_one_killed_beside_it(hosts, prefect_server, tmp_path,
                                                                          make_lake):
    """Killed after leasing its second batch: the worker running beside it
    finds the dead run's leases when its own run dry, and polls those feeds
    too; no later run is needed, nothing is polled twice."""
    feeds = _serve(hosts)
    lake = make_lake("beside")
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    sources = _sources(tmp_path / "s.toml", feeds)
    killed = _start(sources, lake, env, tmp_path, "killed", NEWSDESK_KILL_AT="feeds_leased:2")
    beside = _start(sources, lake, env, tmp_path, "beside")
    assert killed.wait(timeout=600) == -9, killed.stderr.read()[-3000:]
    assert beside.wait(timeout=600) == 0, beside.stderr.read()[-3000:]
    assert _feed_hits(hosts) == {name: 1 for name, _ in feeds}
    (polled_by_killed,) = query(lake, "SELECT count(*) FROM feed_polls p JOIN runs r USING (run_id) "
                                      "WHERE r.worker = 'killed'")[0]
    assert query(lake, "SELECT feeds_ok, feeds_elsewhere FROM runs WHERE worker = 'beside'") == [
        (24 - polled_by_killed, polled_by_killed)]
    assert query(lake, "SELECT count(*) FROM sources WHERE lease_owner IS NOT NULL") == [(0,)]
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(48, 48)]


def test_a_process_work_pool_with_two_workers_runs_leased_batches(hosts, prefect_server, tmp_path, make_lake):
    """prefect.yaml's ingest/newsdesk-lake on a process work pool, two
    `prefect worker start --limit 1` on this machine: two flow runs at once,
    one on each worker, share the feeds; both are in the API (the UI's
    data), each with its run report."""
    from tests.flows.test_deployment import PatientClient

    feeds = _serve(hosts)
    lake = make_lake("pool")
    sources = _sources(tmp_path / "s.toml", feeds)
    repo = Path(__file__).resolve().parents[2]
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "home")}
    prefect = [sys.executable, "-m", "prefect"]
    done = subprocess.run(prefect + ["work-pool", "create", "newsdesk", "--type", "process", "--overwrite"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(prefect + ["--no-prompt", "deploy", "--name", "newsdesk-lake"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers = [subprocess.Popen(
        prefect + ["worker", "start", "--pool", "newsdesk", "--limit", "1", "--name", name],
        env={**env, "NEWSDESK_DB": lake, "NEWSDESK_SOURCES": str(sources), "NEWSDESK_WORKER": name,
             "NEWSDESK_SEARCH_DIR": str(tmp_path / f"search-{name}"), "PREFECT_WORKER_QUERY_SECONDS": "1"},
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in ("wa", "wb")]
    try:
        with PatientClient(base_url=prefect_server.api, timeout=30) as api:
            deployment = api.get("/deployments/name/ingest/newsdesk-lake").json()
            assert len(deployment["schedules"]) == 2 and deployment["work_pool_name"] == "newsdesk"
            runs = [api.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).json()["id"]
                    for _ in range(2)]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                states = [api.get(f"/flow_runs/{r}").json()["state"]["type"] for r in runs]
                if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states):
                    break
                time.sleep(2)
            assert states == ["COMPLETED", "COMPLETED"], states
            artifacts = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["newsdesk-run"]}}}).json()
            assert {a["flow_run_id"] for a in artifacts} >= set(runs)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()

    rows = query(lake, "SELECT worker, status, flow_run_id, feeds_ok FROM runs ORDER BY worker")
    assert [(w, s) for w, s, _, _ in rows] == [("wa", "completed"), ("wb", "completed")], rows
    assert {str(f) for _, _, f, _ in rows} == set(runs)
    assert _feed_hits(hosts) == {name: 1 for name, _ in feeds}
    assert sum(r[3] for r in rows) == 24
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(48, 48)]
    print("\nwork pool, two workers (worker, status, flow run, feeds polled):", rows)
