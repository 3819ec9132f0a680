"""The type checker (pyproject's [tool.mypy]) passes on flows, transforms
and warehouse: `.ci/run` runs pytest, so a change that breaks it fails CI.
Its cache goes to the test's own folder, so that a clean clone checks all
and runs do not share one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # ~30 s: mypy checks the three packages from scratch
def test_mypy_finds_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
