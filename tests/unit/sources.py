"""The worker's Python sources, walked through every subpackage, for the tests that guard the code's shape."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT", "WORKER", "module_name", "python_sources"]

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"


def python_sources(package: Path = WORKER) -> list[Path]:
    """Return every ``*.py`` under ``package`` and all of its subpackages, sorted.

    A flat ``glob("*.py")`` loses nested packages such as ``policy/criteria/``; every guard walks this.
    """
    return sorted(path for path in package.rglob("*.py") if "__pycache__" not in path.parts)


def module_name(path: Path) -> str:
    """Return the dotted module name of a source under the checkout (``worker/policy/__init__.py`` -> ``worker.policy``)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
