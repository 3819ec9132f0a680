"""Extraction quality of the whole pipeline on real news pages.

The 120 pages of tests/data/extraction are served from 127.0.0.1 as one
feed and ingested by the real flow; the bodies that land in DuckDB are scored
with the Zyte benchmark metric against the ground truth, and compared with
plain `trafilatura.extract` on the same pages."""

import gzip
import json

import pytest
import trafilatura

from tests.conftest import EXTRACTION
from tests.flows.helpers import query, run_ingest, write_sources
from tests.zyte_metric import score

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow
def test_pipeline_extracts_at_least_as_well_as_plain_trafilatura(server, tmp_path, capsys):
    truth = json.loads((EXTRACTION / "ground-truth.json").read_text(encoding="utf-8"))
    pages = {key: gzip.decompress((EXTRACTION / "html" / f"{key}.html.gz").read_bytes()) for key in truth}
    items = []
    for key, html in pages.items():
        url = server.route(f"/p/{key}.html", html, content_type="text/html")
        items.append(f"<item><link>{url}</link><guid>{key}</guid></item>")
    server.route("/feed.xml", '<rss version="2.0"><channel><title>corpus</title>' + "".join(items) + "</channel></rss>",
                 content_type="application/rss+xml")
    sources = write_sources(tmp_path / "s.toml", [("corpus", server.url("/feed.xml"))], per_host_concurrency=8)
    db = tmp_path / "wh.duckdb"

    summary = run_ingest(sources, db)
    rows = query(db, "SELECT s.guid, a.body, a.body_source FROM articles a JOIN article_sightings s USING (article_id)")
    assert summary["entries_seen"] == len(truth)
    assert len(rows) == len(truth), "every page lands as one article"
    assert all(source == "page" for _, _, source in rows)
    pipeline = score({guid: body for guid, body, _ in rows}, {k: v["articleBody"] for k, v in truth.items()})

    plain_bodies = {key: trafilatura.extract(pages[key], url=truth[key]["url"]) or "" for key in truth}
    plain = score(plain_bodies, {k: v["articleBody"] for k, v in truth.items()})
    with capsys.disabled():
        print(f"\nextraction on {len(truth)} pages: pipeline P {pipeline[0]:.3f} R {pipeline[1]:.3f} F1 {pipeline[2]:.3f}; "
              f"plain trafilatura.extract P {plain[0]:.3f} R {plain[1]:.3f} F1 {plain[2]:.3f}")
    assert pipeline[2] >= plain[2]
    assert pipeline[2] > 0.9
