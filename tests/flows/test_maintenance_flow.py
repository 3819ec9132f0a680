"""The Prefect flow `maintain` (prefect.yaml's daily deployment) on a real
lake, under the session's Prefect harness: it does what `newsdesk maintain`
does, and fails, naming why, while another maintenance holds the lake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.maintenance_flow import maintain
from tests.warehouse.test_maintenance import BOUND, _contents, _lake_with_runs
from warehouse.lake import connect_lake
from warehouse.maintenance import hold_maintenance
from warehouse.target import parse_target

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_maintain_flow_maintains_a_lake(lake):
    db, data = lake
    _lake_with_runs(db, data, 8)
    with connect_lake(parse_target(db)) as con:
        before = _contents(con)
    state = maintain(db=db, grace_hours=0, return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert report["target"] == db and report["lines"][0] == f"maintained {db}:"
    assert report["files_before"]["articles"] > BOUND >= max(report["files_after"].values())
    assert report["deleted"] > 0 and report["expired"] == 0
    with connect_lake(parse_target(db)) as con:
        assert _contents(con) == before
    with hold_maintenance(parse_target(db).dsn):
        busy = maintain(db=db, return_state=True)
    assert busy.is_failed() and "another `newsdesk maintain` is running" in busy.message


def test_prefect_yaml_deploys_it_daily_one_run_at_a_time():
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    entry = deployments["newsdesk-maintain"]
    module, name = entry["entrypoint"].split(":")
    assert module == "flows/maintenance_flow.py" and name == "maintain"
    assert entry["concurrency_limit"]["limit"] == 1
    assert len(entry["schedules"]) == 1 and entry["schedules"][0]["cron"].split()[2:] == ["*", "*", "*"]
    assert set(entry["parameters"]) <= set(maintain.parameters.properties)
