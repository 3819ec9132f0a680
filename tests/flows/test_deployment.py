"""`newsdesk serve` against a real Prefect server: runs triggered through the
API as the UI's Run button does, and two runs at once that must not overlap."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.flows.helpers import query, serve_seeds, write_sources

NEWSDESK = Path(sys.executable).with_name("newsdesk")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TEST_CRON = "0 3 29 2 *"  # 03:00 on February 29th


@pytest.fixture
def served(prefect_server, server, tmp_path):
    """The seeds on a local HTTP server, and `newsdesk serve` on them."""
    sources = write_sources(tmp_path / "s.toml", serve_seeds(server))
    # A schedule that never fires during a test (a */30 one did, once, and added a run).
    sources.write_text(sources.read_text() + f'\n[schedule]\ncron = "{TEST_CRON}"\ntimezone = "Europe/Paris"\n')
    db = tmp_path / "wh.duckdb"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(NEWSDESK), "serve", "--sources", str(sources), "--db", str(db)],
                            env=prefect_server.client_env, stdout=log, stderr=subprocess.STDOUT)
    api = PatientClient(base_url=prefect_server.api, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            resp = api.get("/deployments/name/ingest/newsdesk")
            # The deployment outlives a test: wait until this test's serve has upserted it.
            if resp.status_code == 200 and resp.json()["parameters"].get("db") == str(db.resolve()):
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("the deployment never appeared: " + (tmp_path / "serve.log").read_text()[-3000:])
        yield api, resp.json(), sources, db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        api.close()


class PatientClient(httpx.Client):
    """The Prefect server answers 503 while its SQLite database is busy (seen
    on a fresh server under load): retry those, as the UI's user would."""

    def send(self, request, **kwargs):
        for attempt in range(12):
            response = super().send(request, **kwargs)
            if response.status_code != 503:
                return response
            time.sleep(min(0.25 * 2 ** attempt, 3))
        return response


def trigger(api: httpx.Client, deployment_id: str, parameters: dict) -> str:
    resp = api.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def wait(api: httpx.Client, run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = api.get(f"/flow_runs/{run_id}")
        run = resp.json() if resp.status_code == 200 else {"state": {"type": f"HTTP {resp.status_code}"}}
        if run["state"]["type"] in TERMINAL:
            return run
        time.sleep(0.3)
    pytest.fail(f"flow run {run_id} did not finish: {run['state']}")


@pytest.mark.slow
@pytest.mark.server
def test_served_deployment_runs_from_the_api_with_parameters(served, capsys):
    api, deployment, sources, db = served
    assert deployment["name"] == "newsdesk"
    schedule = deployment["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == (TEST_CRON, "Europe/Paris")  # from the sources file
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["parameters"]["db"] == str(db.resolve())

    started = time.monotonic()
    run = wait(api, trigger(api, deployment["id"], {"sources": str(sources), "db": str(db),
                                                     "feeds": ["world-desk"]}))
    elapsed = time.monotonic() - started
    assert run["state"]["type"] == "COMPLETED", run["state"]
    with capsys.disabled():
        print(f"\ntrigger to COMPLETED: {elapsed:.1f} s")
    # Only the feed asked for in the run form was ingested.
    assert query(db, "SELECT DISTINCT source FROM articles") == [("world-desk",)]
    assert query(db, "SELECT flow_run_id, status FROM runs") == [(run["id"], "completed")]
    # The run's report was published as a markdown artifact.
    artifacts = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["newsdesk-run"]}}}).json()
    report = next(a for a in artifacts if a["flow_run_id"] == run["id"])
    assert "| world-desk |" in report["data"] and "**total**" in report["data"]

    # A bad parameter fails the run with a message that says what is wrong.
    bad = wait(api, trigger(api, deployment["id"], {"sources": str(sources), "db": str(db), "feeds": ["nope"]}))
    assert bad["state"]["type"] == "FAILED"
    assert "no feed is named or tagged 'nope'" in bad["state"]["message"]


@pytest.mark.slow
@pytest.mark.server
def test_two_runs_at_once_do_not_overlap(served, capsys):
    api, deployment, sources, db = served
    params = {"sources": str(sources), "db": str(db)}
    ids = [trigger(api, deployment["id"], params), trigger(api, deployment["id"], params)]
    runs = [wait(api, i) for i in ids]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert first["end_time"] <= second["start_time"], "the second run started before the first ended"
    history = api.get("/flow_run_states/", params={"flow_run_id": second["id"]}).json()
    assert "AwaitingConcurrencySlot" in {s["name"] for s in history}
    with capsys.disabled():
        print(f"\nfirst run {first['start_time']} .. {first['end_time']}; second run {second['start_time']} .. "
              f"{second['end_time']}; second's states: {' > '.join(s['name'] for s in sorted(history, key=lambda s: s['timestamp']))}")
    # Exactly the rows of one run: the second found nothing new.
    assert query(db, "SELECT count(*) FROM articles") == [(15,)]
    assert sorted(query(db, "SELECT articles_new FROM runs")) == [(0,), (15,)]


@pytest.mark.slow
@pytest.mark.server
def test_prefect_deploy_all_creates_the_worker_deployment(prefect_server, tmp_path):
    """prefect.yaml, for teams with workers: `prefect deploy --all` against the server."""
    repo = Path(__file__).resolve().parents[2]
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "home")}
    pool = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "newsdesk", "--type", "process"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    with PatientClient(base_url=prefect_server.api, timeout=30) as api:
        resp = api.get("/deployments/name/ingest/newsdesk-worker")
        assert resp.status_code == 200, resp.text
        deployment = resp.json()
    assert deployment["work_pool_name"] == "newsdesk"
    assert deployment["entrypoint"] == "flows/ingest.py:ingest"
    assert deployment["schedules"][0]["schedule"]["cron"] == "*/30 * * * *"
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"


@pytest.mark.slow
def test_a_second_ingest_waits_for_the_first_then_gives_up_clearly(tmp_path):
    """A cron `newsdesk ingest` that finds another ingest writing the warehouse."""
    from flows.locks import ingest_lock

    db = tmp_path / "wh.duckdb"
    sources = tmp_path / "s.toml"
    sources.write_text((Path(__file__).resolve().parents[2] / "seeds" / "sources.toml").read_text()
                       .replace('url = "file:', f'url = "file:{Path(__file__).resolve().parents[2] / "seeds"}/')
                       + "\n[pipeline]\nlock_wait_s = 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with ingest_lock(db, 0):
        started = time.monotonic()
        run = subprocess.run([str(NEWSDESK), "ingest", "--sources", str(sources), "--db", str(db), "--quiet"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 1
        assert "another ingest" in run.stderr and "lock_wait_s = 2" in run.stderr
    assert not db.exists() or query(db, "SELECT count(*) FROM runs") == [(0,)]  # nothing half-loaded
    assert time.monotonic() - started >= 2


def test_sql_waits_for_a_load_to_release_the_file(tmp_path):
    import threading

    import duckdb

    from warehouse.connection import connect

    db = tmp_path / "wh.duckdb"
    with connect(db):
        pass
    writer = duckdb.connect(str(db))  # another process would hold it like this while loading a batch
    release = threading.Timer(1.5, writer.close)
    release.start()
    started = time.monotonic()
    out = subprocess.run([str(NEWSDESK), "sql", "select count(*) as n from articles", "--db", str(db), "-f", "csv"],
                         capture_output=True, text=True, timeout=120)
    release.join()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["n", "0"]
    assert time.monotonic() - started >= 1.0


CHROMIUM = "/usr/bin/chromium"  # Debian's package: no browser can be downloaded here


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.browser
def test_quick_run_from_the_prefect_ui_in_a_real_browser(served, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    api, deployment, sources, db = served
    ui = str(api.base_url).removesuffix("/api/").removesuffix("/api")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            runs_of = {"deployments": {"id": {"any_": [deployment["id"]]}}}
            earlier = {r["id"] for r in api.post("/flow_runs/filter", json=runs_of).json()}  # other tests' runs
            page.goto(f"{ui}/deployments/deployment/{deployment['id']}", wait_until="networkidle")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Quick run").first.click()
            started = time.monotonic()
            run = None
            while time.monotonic() - started < 240:
                runs = [r for r in api.post("/flow_runs/filter", json=runs_of).json() if r["id"] not in earlier]
                if runs and runs[0]["state"]["type"] in TERMINAL:
                    run = runs[0]
                    break
                time.sleep(0.5)
            assert run is not None, "no run was started from the UI"
            page.goto(f"{ui}/runs/flow-run/{run['id']}", wait_until="networkidle")
            page.get_by_text("Completed").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "flow-run.png"), full_page=True)
        finally:
            browser.close()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert query(db, "SELECT count(*) FROM articles") == [(15,)]
    assert (tmp_path / "flow-run.png").stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nUI quick run: COMPLETED {time.monotonic() - started:.1f} s after the click; "
              f"screenshot {tmp_path / 'flow-run.png'}")
