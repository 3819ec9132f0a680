"""A backfill's WARC files shared by the workers of a lake
(flows/ingest.py:_backfill, warehouse/leases.py): a file done is not read
again, and the file of a worker killed with SIGKILL passes to the next
worker (which finds the run dead), whose run loads the records the dead
one had not, and none twice. Two workers at once each take their own file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.helpers import query, story_page, write_sources

pytestmark = [pytest.mark.slow, pytest.mark.server]

NEWSDESK = Path(sys.executable).with_name("newsdesk")
PAGES = 8



def _warcs(tmp_path: Path) -> list[str]:
    from flows.archive import WarcArchive
    from flows.fetch import Response

    files = []
    for name in ("alpha", "beta"):
        archive = WarcArchive(tmp_path / name, tmp_path)
        for i in range(PAGES):
            url = f"http://{name}.example/story/{i}"
            path, _ = archive.write(Response(url, url, 200, {"content-type": "text/html"}, story_page(f"{name}{i}")))
        files.append(str(tmp_path / path))
    return files


def _run(files, lake, env, tmp_path, name, **extra) -> subprocess.Popen:
    args = [str(NEWSDESK), "ingest", "--db", lake, "--quiet"] + [a for f in files for a in ("--from-warc", f)]
    return subprocess.Popen(args, env={**env, "NEWSDESK_WORKER": name, "NEWSDESK_SEARCH_DIR": str(tmp_path / name),
                                       **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _setup(prefect_server, tmp_path, make_lake) -> tuple[list[str], str, dict]:
    """Two WARC files, a new lake, and the environment of workers on it."""
    sources = write_sources(tmp_path / "s.toml", [])
    sources.write_text(sources.read_text() + "\n[pipeline]\nbatch_size = 2\nworkers = 1\n\n[archive]\nenabled = false\n")
    env = {**prefect_server.client_env, "PREFECT_HOME": str(tmp_path / "home"), "NEWSDESK_SOURCES": str(sources)}
    return _warcs(tmp_path), make_lake("backfill"), env


def test_a_killed_workers_warc_file_passes_to_another_and_no_record_loads_twice(prefect_server, tmp_path, make_lake):
    files, lake, env = _setup(prefect_server, tmp_path, make_lake)

    killed = _run(files, lake, env, tmp_path, "killed", NEWSDESK_KILL_AT="loading:3")
    assert killed.wait(timeout=600) == -9, killed.stderr.read()[-3000:]
    state = query(lake, "SELECT path, done_at IS NOT NULL, coalesce(lease_owner LIKE 'killed %', false) FROM warc_files "
                        "ORDER BY path")
    assert state == [(files[0], False, True), (files[1], False, False)]
    loaded = query(lake, "SELECT count(*) FROM articles")[0][0]
    assert 0 < loaded < PAGES  # part of its first file

    # The killed run is found dead (its PostgreSQL lock is gone): its file is free at once.
    second = _run(files, lake, env, tmp_path, "second")
    assert second.wait(timeout=600) == 0, second.stderr.read()[-3000:]
    assert query(lake, "SELECT path, done_at IS NOT NULL, records FROM warc_files ORDER BY path") == [
        (files[0], True, PAGES), (files[1], True, PAGES)]
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(2 * PAGES, 2 * PAGES)]
    runs = query(lake, "SELECT worker, status, entries_seen, articles_new, entries_known + duplicates FROM runs "
                       "ORDER BY started_at")
    # The second run met the records the killed one had loaded as known, and loaded only the rest.
    assert runs[0][:2] == ("killed", "abandoned")
    assert runs[1:] == [("second", "completed", 2 * PAGES, 2 * PAGES - loaded, loaded)], runs
    # A third worker finds every file done: it reads none.
    third = _run(files, lake, env, tmp_path, "third")
    assert third.wait(timeout=600) == 0, third.stderr.read()[-3000:]
    assert query(lake, "SELECT entries_seen, articles_new FROM runs WHERE worker = 'third'") == [(0, 0)]
    print(f"\nkilled after {loaded} of {PAGES} records of its file; runs:", runs)


def test_two_workers_given_the_same_files_each_take_their_own(prefect_server, tmp_path, make_lake):
    files, lake, env = _setup(prefect_server, tmp_path, make_lake)
    workers = [_run(files, lake, env, tmp_path, f"w{i}") for i in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, w.stderr.read()[-3000:]
    assert query(lake, "SELECT count(*), count(DISTINCT url) FROM articles") == [(2 * PAGES, 2 * PAGES)]
    assert query(lake, "SELECT count(*) FROM warc_files WHERE done_at IS NOT NULL") == [(2,)]
    seen = query(lake, "SELECT worker, entries_seen, articles_new FROM runs ORDER BY worker")
    # Each file read by one worker only: 16 records seen in all, none twice.
    assert sum(s for _, s, _ in seen) == 2 * PAGES and sum(n for _, _, n in seen) == 2 * PAGES, seen
