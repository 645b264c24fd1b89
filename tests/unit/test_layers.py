"""The import layers of worker/ (pyproject's import-linter contracts) hold, and the check catches a breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(where / "pyproject.toml"), "--no-cache"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy(tmp: Path) -> Path:
    shutil.copytree(ROOT / "worker", tmp / "worker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def test_the_contracts_are_kept():
    """The tree as it is keeps every contract: the layers, the one door to kafka-python, the pure policy."""
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        pytest.param(
            "worker/policy/decision.py",
            "import kafka.errors",
            "Only worker.kafka imports",
            id="kafka-outside-its-door",
        ),
        pytest.param(
            "worker/state/dedupe.py",
            "import worker.runtime.judge",
            "Layers",
            id="a-lower-layer-imports-a-higher",
        ),
        pytest.param(
            "worker/policy/window.py", "import structlog", "The policy is pure", id="logging-in-the-policy"
        ),
    ],
)
def test_a_breach_is_caught(tmp_path, module, line, contract):
    """One import against a contract, added to a copy of the tree, breaks that contract (the check can fail)."""
    where = _copy(tmp_path)
    path = where / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(where)
    assert result.returncode == 1, result.stdout[-3000:]
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout[-3000:]
