"""The package boundaries of the design, checked on the source: transforms
stays pure, only warehouse talks to DuckDB, imports point one way."""

import ast

import pytest

from tests.conftest import REPO

IO_MODULES = {"prefect", "duckdb", "httpx", "requests", "urllib3", "aiohttp", "socket", "urllib.request", "http.client", "pyarrow"}


def _imports(package: str) -> dict[str, set[str]]:
    found = {}
    for path in (REPO / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def _hits(imports: dict[str, set[str]], forbidden: set[str]) -> list[str]:
    return sorted(f"{f}: {n}" for f, names in imports.items() for n in names
                  if any(n == m or n.startswith(m + ".") for m in forbidden))


def test_transforms_is_pure():
    assert _hits(_imports("transforms"), IO_MODULES | {"flows", "warehouse", "os", "pathlib", "time", "random"}) == []


def test_only_warehouse_imports_duckdb():
    assert _hits(_imports("flows"), {"duckdb"}) == []
    assert _hits(_imports("transforms"), {"duckdb"}) == []


def test_warehouse_uses_only_record_types_of_transforms():
    imports = _imports("warehouse")
    assert _hits(imports, {"prefect", "flows", "httpx"}) == []
    used = {n for names in imports.values() for n in names if n.startswith("transforms")}
    assert used <= {"transforms.records"}


def test_sql_lives_in_warehouse():
    for package in ("flows", "transforms"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert ".execute(" not in text and "duckdb.connect" not in text, path


@pytest.mark.parametrize("package", ["flows", "transforms", "warehouse"])
def test_every_module_says_what_it_does(package):
    for path in (REPO / package).rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path} has no module docstring"
