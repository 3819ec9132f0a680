"""The package boundaries of the design, checked on the syntax tree: imports
and calls. transforms stays pure (no file, clock, process, socket,
environment, random state or DuckDB), only warehouse runs SQL, warehouse
knows nothing of Prefect, imports point one way.

The checker is tested too, on small snippets, so that a rule that can no
longer fail shows up as a failing test rather than as silence."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

# Modules whose import alone means I/O, a clock, a process or a database.
IO_MODULES = {
    "prefect", "duckdb", "httpx", "requests", "urllib3", "aiohttp", "socket", "urllib.request", "http.client",
    "pyarrow", "subprocess", "os", "pathlib", "time", "random", "secrets", "shutil", "tempfile", "glob",
    "multiprocessing", "threading", "asyncio", "concurrent", "signal", "sqlite3", "ssl", "selectors", "ftplib",
    "smtplib",
}
# transforms may import the standard library and pure parsers, never the layers around it.
TRANSFORMS_FORBIDDEN_IMPORTS = IO_MODULES | {"flows", "warehouse"}
# Calls resolved through the module's imports (`from datetime import datetime`
# makes `datetime.now()` a call of `datetime.datetime.now`).
TRANSFORMS_FORBIDDEN_CALLS = {
    "open", "input", "__import__", "breakpoint",
    "io.open", "codecs.open", "importlib.import_module",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
    "uuid.uuid1", "uuid.uuid4",
}
# Method names that read a file or the clock whatever the receiver is (a
# Path, a datetime class reached through a parameter or an alias).
TRANSFORMS_FORBIDDEN_METHODS = {"now", "utcnow", "today", "read_text", "read_bytes", "write_text", "write_bytes", "open"}
# Method names that run SQL, on whatever connection: only warehouse calls them.
SQL_METHODS = {"execute", "executemany", "sql"}


class _Scan(ast.NodeVisitor):
    """Imports, calls (as dotted names, resolved through import aliases) and
    attribute reads of one module."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.imports: list[tuple[int, str]] = []
        self.calls: list[tuple[int, str, str | None]] = []  # (line, resolved dotted name, method name)
        self.attributes: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((node.lineno, alias.name))
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.imports.append((node.lineno, node.module))
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _dotted(self, node: ast.expr) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def visit_Call(self, node: ast.Call) -> None:
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        self.calls.append((node.lineno, self._dotted(node.func) or "", method))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._dotted(node)
        if dotted:
            self.attributes.append((node.lineno, dotted))
        self.generic_visit(node)


def _scan(source: str) -> _Scan:
    scan = _Scan()
    scan.visit(ast.parse(source))
    return scan


def _within(name: str, modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def violations(source: str, package: str) -> list[str]:
    """What in `source`, a module of `package`, breaks the package's rules:
    one 'line: what' string per finding."""
    scan = _scan(source)
    found = []
    if package == "transforms":
        found += [f"{line}: import {name}" for line, name in scan.imports
                  if _within(name, TRANSFORMS_FORBIDDEN_IMPORTS)]
        for line, name, method in scan.calls:
            if name in TRANSFORMS_FORBIDDEN_CALLS or _within(name, IO_MODULES):
                found.append(f"{line}: call {name}()")
            elif method in TRANSFORMS_FORBIDDEN_METHODS:
                found.append(f"{line}: call .{method}()")
        found += [f"{line}: reads {name}" for line, name in scan.attributes
                  if name in ("os.environ", "os.environb")]
    if package != "warehouse":
        # The database drivers: DuckDB, and PostgreSQL for a lake's keyed state.
        found += [f"{line}: import {name}" for line, name in scan.imports if _within(name, {"duckdb", "psycopg"})]
        found += [f"{line}: SQL outside warehouse: .{method}()" for line, _, method in scan.calls
                  if method in SQL_METHODS]
    if package == "warehouse":
        found += [f"{line}: import {name}" for line, name in scan.imports
                  if _within(name, {"prefect", "flows", "httpx", "requests"})]
        found += [f"{line}: import {name} (only transforms.records and .errors)" for line, name in scan.imports
                  if _within(name, {"transforms"}) and name not in ("transforms.records", "transforms.errors")]
    return sorted(set(found))


def _package_violations(package: str) -> list[str]:
    return [f"{path.relative_to(REPO)}:{v}"
            for path in sorted((REPO / package).rglob("*.py"))
            for v in violations(path.read_text(encoding="utf-8"), package)]


@pytest.mark.parametrize("package", ["transforms", "flows", "warehouse"])
def test_package_keeps_its_boundaries(package):
    assert _package_violations(package) == []


# The checker itself: each of these must be caught ...
CAUGHT = [
    ("flows", "import psycopg\nx = psycopg.connect('dbname=x')"),
    ("transforms", "from datetime import datetime\ndef f():\n    return datetime.now()"),
    ("transforms", "from datetime import datetime, timezone\nx = datetime.now(timezone.utc)"),
    ("transforms", "import datetime\nx = datetime.datetime.utcnow()"),
    ("transforms", "import datetime as dt\nx = dt.date.today()"),
    ("transforms", "from datetime import date\nx = date.today()"),
    ("transforms", "def f(clock):\n    return clock.now()"),
    ("transforms", "import time\nx = time.time()"),
    ("transforms", "from time import monotonic\nx = monotonic()"),
    ("transforms", "from time import perf_counter"),
    ("transforms", "def f():\n    return open('x').read()"),
    ("transforms", "def f(p):\n    return p.read_text()"),
    ("transforms", "def f(p):\n    p.write_bytes(b'')"),
    ("transforms", "def f(p):\n    with p.open() as fh:\n        return fh.read()"),
    ("transforms", "import io\nx = io.open('x')"),
    ("transforms", "import subprocess"),
    ("transforms", "from subprocess import run"),
    ("transforms", "import socket"),
    ("transforms", "import os\nx = os.environ['HOME']"),
    ("transforms", "from os import getenv"),
    ("transforms", "from os import environ"),
    ("transforms", "import random\nx = random.random()"),
    ("transforms", "import uuid\nx = uuid.uuid4()"),
    ("transforms", "from uuid import uuid1\nx = uuid1()"),
    ("transforms", "from pathlib import Path"),
    ("transforms", "import duckdb"),
    ("transforms", "import prefect"),
    ("transforms", "from prefect import task"),
    ("transforms", "import httpx"),
    ("transforms", "import requests"),
    ("transforms", "from warehouse.article_rows import load_batch"),
    ("transforms", "from flows.settings import Settings"),
    ("transforms", "def f(con):\n    return con.execute('SELECT 1')"),
    ("transforms", "def f(con):\n    return con.sql('SELECT 1')"),
    ("transforms", "x = __import__('subprocess')"),
    ("flows", "def f(con):\n    con.sql('x')"),
    ("flows", "def f(con):\n    con.execute('SELECT 1')"),
    ("flows", "def f(con):\n    con.executemany('INSERT', [])"),
    ("flows", "import duckdb"),
    ("flows", "import duckdb\nduckdb.connect('x')"),
    ("warehouse", "import prefect"),
    ("warehouse", "from prefect import get_run_logger"),
    ("warehouse", "from flows.settings import Settings"),
    ("warehouse", "from transforms.articles import extract_article"),
]

# ... and these must pass: pure code, and the look-alikes that are no clock or file.
CLEAN = [
    ("transforms", "from datetime import datetime, timedelta\ndef f(now: datetime):\n    return now + timedelta(1)"),
    ("transforms", "from datetime import time\nx = time(12, 0)"),
    ("transforms", "from datetime import datetime, timezone\nx = datetime(2024, 1, 1, tzinfo=timezone.utc)"),
    ("transforms", "import uuid\nx = uuid.uuid5(uuid.NAMESPACE_URL, 'https://example.org/')"),
    ("transforms", "import hashlib\nx = hashlib.sha256(b'x').hexdigest()"),
    ("transforms", "import io\nx = io.BytesIO(b'')"),
    ("transforms", "from transforms.records import Article"),
    ("transforms", "import feedparser\nx = feedparser.parse(b'<rss/>')"),
    ("flows", "import httpx\nfrom warehouse.article_rows import load_batch\ndef f(con):\n    load_batch(con)"),
    ("flows", "from prefect import flow, task"),
    ("warehouse", "import duckdb\ndef f(con):\n    return con.execute('SELECT 1').fetchall()"),
    ("warehouse", "import duckdb\ndef f(con):\n    return con.sql('SELECT 1')"),
    ("warehouse", "from transforms.records import Article"),
]


@pytest.mark.parametrize(("package", "source"), CAUGHT, ids=[s.splitlines()[-1].strip() for _, s in CAUGHT])
def test_checker_catches(package, source):
    assert violations(source, package), f"{package}: not caught:\n{source}"


@pytest.mark.parametrize(("package", "source"), CLEAN, ids=[s.splitlines()[-1].strip() for _, s in CLEAN])
def test_checker_passes_clean_code(package, source):
    assert violations(source, package) == []


@pytest.mark.parametrize("package", ["flows", "transforms", "warehouse"])
def test_every_module_says_what_it_does(package):
    for path in (REPO / package).rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path} has no module docstring"


def test_checker_reads_every_package_file():
    # A package moved or renamed would leave the boundary tests checking nothing.
    for package in ("flows", "transforms", "warehouse"):
        assert len(list((REPO / package).rglob("*.py"))) >= 3, package


def test_the_module_map_lists_every_module():
    """docs/architecture.md's module map names every module of the three
    packages under its package, and none that is gone."""
    import re

    block = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").split("## The module map", 1)[1]
    block = block.split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    package = None
    for line in block.splitlines():
        if head := re.match(r"^(flows|transforms|warehouse)/", line):
            package = head.group(1)
        elif re.match(r"^\S", line):
            package = None
        elif package and (name := re.match(r"^  (\w+\.py)\b", line)):
            listed.setdefault(package, set()).add(name.group(1))
    for package in ("flows", "transforms", "warehouse"):
        modules = {p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}
        assert (package, sorted(modules - listed.get(package, set())), sorted(listed.get(package, set()) - modules)) \
            == (package, [], [])
