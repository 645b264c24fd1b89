"""A small mutation check: each mutant of the recovery code must make the unit tier fail.

Each mutant is applied to a copy of ``worker/`` and ``tests/`` in a temporary directory; only the
recovery tests run against it, in a subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MUTANTS = {
    "no rewind after an abort": (
        "worker/runtime/session.py",
        "        self.metrics.transaction_aborted()\n        rewind_to_committed(self.consumer)\n",
        "        self.metrics.transaction_aborted()\n",
    ),
    "no rewind after a producer replacement": (
        "worker/runtime/session.py",
        "            self._on_replaced()\n            rewind_to_committed(self.consumer)\n",
        "            self._on_replaced()\n",
    ),
    "an abort that keeps staged ids": (
        "worker/runtime/session.py",
        "        for store in self.stores:\n            store.abort()\n",
        "",
    ),
    "a replacement that keeps duplicate memory": (
        "worker/runtime/session.py",
        "        for store in self.stores:\n            store.forget_all()\n",
        "",
    ),
    "a revoke that forgets nothing": (
        "worker/runtime/partitions.py",
        "            for store in self.stores:\n                store.forget(tp.partition)\n",
        "",
    ),
}


def _copy(tmp: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "worker", tmp / "worker", ignore=ignore)
    shutil.copytree(ROOT / "tests", tmp / "tests", ignore=ignore)
    shutil.copytree(ROOT / "deploy", tmp / "deploy", ignore=ignore)  # tests/conftest.py's broker launcher
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")


def _unit_tier(tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/unit/test_pipeline_unit.py",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    return subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_unit_tier_kills_the_mutant(name, tmp_path):
    """With the mutant applied the recovery tests fail (and the copy really imports the mutated code)."""
    path, original, mutated = MUTANTS[name]
    _copy(tmp_path)
    source = (tmp_path / path).read_text()
    assert source.count(original) == 1, f"the mutant's target moved: update MUTANTS[{name!r}]"
    (tmp_path / path).write_text(source.replace(original, mutated))
    where = subprocess.run(
        [sys.executable, "-c", "import worker.runtime.session as m; print(m.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(tmp_path)), f"the copy imports {where}, not the mutant"
    result = _unit_tier(tmp_path)
    assert result.returncode == 1, f"mutant survived: {name}\n{result.stdout[-2000:]}"


def test_the_unmutated_copy_passes(tmp_path):
    """The same copy without a mutant passes, so a failure above is the mutant's doing."""
    _copy(tmp_path)
    result = _unit_tier(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
