"""Packaging: the running worker needs only its runtime dependencies and ships its data files."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

from tests.unit.sources import python_sources

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
TEST_ONLY = {"testcontainers", "packaging", "pytest", "hypothesis", "docker"}


def _name(requirement: str) -> str:
    """Return the distribution name of a PEP 508 requirement string."""
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


def test_test_only_tools_are_not_runtime_dependencies():
    """testcontainers, packaging and the test runners are in the dev extra, not in the runtime list."""
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not runtime & TEST_ONLY
    assert {"testcontainers", "packaging"} <= dev


def test_worker_imports_no_test_only_module():
    """No module under worker/ imports a test-only distribution, so the wheel runs without the dev extra."""
    offenders = []
    for path in python_sources(ROOT / "worker"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in TEST_ONLY]
    assert offenders == []


def test_worker_imports_no_developer_tool():
    """No module under worker/ imports deploy/ (broker launcher, demo) or tests/ (fault hook): none ships in the wheel."""
    offenders = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in {"deploy", "tests"}
            ]
    assert offenders == []
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["worker*"]


def test_every_data_file_is_declared_package_data():
    """Each schema and policy file under worker/ matches a package-data pattern, so the wheel holds it."""
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    data_files = [p for p in (ROOT / "worker").rglob("*") if p.is_file() and p.suffix in {".avsc", ".json"}]
    assert data_files
    for path in data_files:
        package_dir = next(
            (pkg for pkg in declared if path.is_relative_to(ROOT / pkg.replace(".", "/"))), None
        )
        assert package_dir is not None, path
        inside = path.relative_to(ROOT / package_dir.replace(".", "/")).as_posix()
        assert any(fnmatch.fnmatch(inside, pattern) for pattern in declared[package_dir]), path


def test_top_level_schemas_is_a_link_into_the_package():
    """The checkout's schemas/ is only a link to worker/contracts/schemas, so there is one copy."""
    link = ROOT / "schemas"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "worker" / "contracts" / "schemas").resolve()
