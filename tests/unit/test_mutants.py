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
RECOVERY_TESTS = "tests/unit/test_pipeline_unit.py::TestRecovery"

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
    """Run the recovery tests (every mutant above is killed by them) in the copy.

    Only TestRecovery runs: each mutant fails at least one of its tests (checked when this was narrowed
    from the whole file), and the rest of the file took 60% of the time. The hypothesis plugin is not
    loaded because these tests use none of it (its import alone is ~1 s). No bytecode is written, so a
    mutated module's cache can never outlive the mutant in the shared copy.
    """
    command = [
        sys.executable,
        "-B",
        "-m",
        "pytest",
        RECOVERY_TESTS,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
    ]
    return subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of worker/ and tests/ for the module; each mutant is applied to it and taken back."""
    tmp = tmp_path_factory.mktemp("mutants")
    _copy(tmp)
    return tmp


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_unit_tier_kills_the_mutant(name, checkout_copy):
    """With the mutant applied the recovery tests fail (and the copy really imports the mutated code)."""
    path, original, mutated = MUTANTS[name]
    target = checkout_copy / path
    source = target.read_text()
    assert source.count(original) == 1, f"the mutant's target moved: update MUTANTS[{name!r}]"
    module = path.removesuffix(".py").replace("/", ".")
    target.write_text(source.replace(original, mutated))
    try:
        where = subprocess.run(
            [sys.executable, "-B", "-c", f"import {module} as m; print(m.__file__)"],
            cwd=checkout_copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert where == str(target), f"the copy imports {where}, not the mutant"
        result = _unit_tier(checkout_copy)
    finally:
        target.write_text(source)
    assert result.returncode == 1, f"mutant survived: {name}\n{result.stdout[-2000:]}"


def test_the_unmutated_copy_passes(checkout_copy):
    """The same copy without a mutant passes, so a failure above is the mutant's doing."""
    assert all(
        (checkout_copy / path).read_text().count(original) == 1 for path, original, _ in MUTANTS.values()
    )
    result = _unit_tier(checkout_copy)
    assert result.returncode == 0, result.stdout[-3000:]
