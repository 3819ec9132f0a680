"""Nothing lost when a run dies or meets poison: real processes, a real
DuckDB file and a real HTTP server on 127.0.0.1.

Poison entries fail alone, generic feed teasers stay apart, a killed run
leaves no process behind and is marked abandoned by the next, the exit code
says what a run did, an export that fails loses nothing, and a WARC with a
bad record loads what it can."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from tests.httpserver import Reply

NEWSDESK = Path(sys.executable).with_name("newsdesk")
ARTICLE = ("<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>"
           + "{word} is what this sentence of the story is about. " * 40 + "</p></article></body></html>")


def page(title: str, word: str) -> bytes:
    return ARTICLE.format(title=title, word=word).encode()


def rss(items: list[str], title: str = "Test feed") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
            + "".join(items) + "</channel></rss>").encode()


def item(link: str, title: str, text: str = "", guid: str | None = None, date: str = "Mon, 02 Mar 2026 10:00:00 GMT") -> str:
    guid_tag = f"<guid isPermaLink=\"false\">{guid}</guid>" if guid else ""
    return (f"<item><title>{title}</title><link>{link}</link>{guid_tag}<pubDate>{date}</pubDate>"
            f"<description>{text}</description></item>")


def cli_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def with_pipeline(sources: Path, **pipeline) -> Path:
    lines = ["", "[pipeline]"] + [f"{k} = {v}" for k, v in pipeline.items()]
    text = sources.read_text()
    # [pipeline] must come before the [[feeds]] array of tables.
    head, sep, feeds = text.partition("\n[[feeds]]")
    sources.write_text(head + "\n".join(lines) + "\n" + sep + feeds)
    return sources


# -- orphans -------------------------------------------------------------------


def _session(sid: int) -> dict[int, str]:
    """pid -> command line of every process in this session."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_process_of_a_killed_run_is_alive_15_s_later(server, tmp_path):
    def slow(req):
        time.sleep(0.3)
        return Reply(200, page("Slow", "Slowness"), {"Content-Type": "text/html"})

    items = []
    for i in range(80):
        server.route(f"/slow/{i}.html", slow)
        items.append(item(server.url(f"/slow/{i}.html"), f"Slow {i}", "teaser", guid=f"s{i}"))
    feed = server.route("/slow.rss", rss(items), content_type="application/rss+xml")
    sources = with_pipeline(write_sources(tmp_path / "sources.toml", [("slow", feed)]), workers=2, batch_size=8)
    log = (tmp_path / "ingest.log").open("w")
    proc = subprocess.Popen([str(NEWSDESK), "ingest", "--sources", str(sources), "--db", str(tmp_path / "w.duckdb")],
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:  # until the forkserver and both extraction workers are up
            running = _session(proc.pid)
            if sum("multiprocessing.forkserver" in c for c in running.values()) >= 3:
                break
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()[-2000:]
            assert time.monotonic() < deadline, running
            time.sleep(0.2)
        assert any("resource_tracker" in c for c in running.values())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while _session(proc.pid) and time.monotonic() - killed < 15:
            time.sleep(0.5)
        left = _session(proc.pid)
        assert left == {}, f"alive {time.monotonic() - killed:.0f} s after the kill: {left}"
    finally:
        for pid in _session(proc.pid):  # only what this test started: the killed run's session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
