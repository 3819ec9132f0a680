"""One error root: every exception class newsdesk defines derives from
`transforms.errors.NewsdeskError`, whose class gives the CLI its exit code
(so `flows/cli.py` keeps no list of types)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from transforms.errors import InputError, NewsdeskError, NoWarehouse, ParseError
from transforms.opml import OpmlError


def _our_exception_classes() -> list[type]:
    found = []
    for package in ("transforms", "warehouse", "flows"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__, package + "."):
            module = importlib.import_module(info.name)
            found += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                      if issubclass(obj, BaseException) and obj.__module__ == module.__name__]
    return found


def test_every_error_class_derives_from_the_root():
    classes = _our_exception_classes()
    assert len(classes) >= 20  # the walk found them (a broken walk would pass the next line)
    assert [c.__qualname__ for c in classes if not issubclass(c, NewsdeskError)] == []


@pytest.mark.parametrize(("error", "code"), [
    (NewsdeskError("failed"), 1), (InputError("wrong"), 2), (NoWarehouse("no warehouse at x"), 2),
    (ParseError("https://x.example/", "malformed_feed"), 1), (OpmlError("f.opml", "not_opml"), 2),
    (FileNotFoundError("no such file"), 2), (RuntimeError("a bug"), 1),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_the_cli_takes_the_exit_code_from_the_class(error, code):
    import typer

    from flows.cli import _reporting

    with pytest.raises(typer.Exit) as caught:
        with _reporting():
            raise error
    assert caught.value.exit_code == code
    with pytest.raises(typer.Exit) as caught:  # a run that failed: 1, whatever the error
        with _reporting(run=True):
            raise error
    assert caught.value.exit_code == 1


def test_no_warehouse_is_still_a_missing_file():
    # Callers and users of the library catch a missing warehouse as the OS names it.
    assert issubclass(NoWarehouse, FileNotFoundError)


def test_no_error_class_hides_inside_a_function():
    """The walk above sees module-level classes only: an exception class
    defined inside a function (or a class) would escape it, so none is."""
    import ast

    from tests.conftest import REPO

    nested = []
    for package in ("transforms", "warehouse", "flows"):
        for path in sorted((REPO / package).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            top = {id(node) for node in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and id(node) not in top and any(
                        isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in ("Exit",))
                        for b in node.bases):
                    nested.append(f"{path.name}:{node.lineno} {node.name}")
    assert nested == []
