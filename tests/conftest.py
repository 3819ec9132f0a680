"""Shared fixtures. Prefect gets a throw-away home before anything imports it,
and never phones home: these machines have no internet."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="newsdesk-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
# A lake's search index lives per machine under this folder (flows/search_index.py).
os.environ["NEWSDESK_SEARCH_DIR"] = tempfile.mkdtemp(prefix="newsdesk-search-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

from tests.httpserver import LocalServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SEEDS = REPO / "seeds"
SEED_DOCUMENT = DATA / "seed-documents" / "000_2683f6786eb8b0e7.txt"
EXTRACTION = DATA / "extraction"
FEEDS_CORPUS = DATA / "feeds"


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1, in a thread, for one test."""
    with LocalServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (~10 s, paid once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def seed_document() -> tuple[str, str]:
    """(date, body) of the seed document: `date YYYY-MM-DD` then the text."""
    text = SEED_DOCUMENT.read_text(encoding="utf-8").strip()
    head, date, body = text.split(" ", 2)
    assert head == "date"
    return date, body


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real `prefect server start` for the whole session, shared by the
    deployment, overlap and browser tests."""
    from tests.prefect_server import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL for the session (Debian's binaries, a free port on
    127.0.0.1, a temp folder): the lake's catalog and keyed state."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def lake(postgres, tmp_path):
    """A new, empty lake for one test: its own PostgreSQL database and data
    folder. Returns (the --db string, the data folder)."""
    import uuid

    dsn = postgres.create_database(f"lake_{uuid.uuid4().hex[:12]}")
    return f"ducklake:postgres:{dsn}", tmp_path / "lake-data"


def _new_lake(postgres, tmp_path, name: str) -> str:
    import uuid

    from warehouse.lake import connect_lake
    from warehouse.target import parse_target

    db = f"ducklake:postgres:{postgres.create_database(f'{name}_{uuid.uuid4().hex[:8]}'.lower())}"
    with connect_lake(parse_target(db, tmp_path / f"{name}-lake")):
        pass
    return db


@pytest.fixture
def make_lake(postgres, tmp_path):
    """`make_lake(name)`: a new lake (its own PostgreSQL database and data
    folder, created here so that later connects find it)."""
    return lambda name="wh": _new_lake(postgres, tmp_path, name)


@pytest.fixture(params=["file", "lake"])
def make_db(request, tmp_path):
    """Behaviour tests run on both backends: `make_db(name)` gives a new
    warehouse, a DuckDB file in tmp_path or a new lake."""
    if request.param == "file":
        return lambda name="wh": tmp_path / f"{name}.duckdb"
    postgres = request.getfixturevalue("postgres")
    return lambda name="wh": _new_lake(postgres, tmp_path, name)
