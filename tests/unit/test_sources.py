"""The source walk behind the architecture guards sees every subpackage, and no guard walks the sources flat."""

from __future__ import annotations

import ast

from tests.unit.sources import ROOT, WORKER, module_name, python_sources

TESTS = ROOT / "tests"


def test_the_walk_sees_the_nested_policy_criteria_package():
    """The worker walk holds policy/criteria/ (package and modules), which a flat glob of policy/ lost."""
    walked = {path.relative_to(WORKER).as_posix() for path in python_sources(WORKER)}
    assert {
        "policy/criteria/__init__.py",
        "policy/criteria/stage.py",
        "policy/criteria/specialist.py",
    } <= walked
    policy = {path.relative_to(WORKER).as_posix() for path in python_sources(WORKER / "policy")}
    assert "policy/criteria/stage.py" in policy


def test_the_walk_reaches_any_depth_and_skips_bytecode_caches(tmp_path):
    """A module three packages down is walked; a stray .py under __pycache__ is not a source."""
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", deep):
        (folder / "__init__.py").write_text('"""x."""\n')
    (deep / "leaf.py").write_text('"""x."""\n')
    (deep / "__pycache__").mkdir()
    (deep / "__pycache__" / "stale.py").write_text("")
    walked = [path.relative_to(tmp_path).as_posix() for path in python_sources(tmp_path)]
    assert "a/b/c/leaf.py" in walked
    assert not [name for name in walked if "__pycache__" in name]
    assert walked == sorted(walked)


def test_module_names_follow_the_package_path():
    """A package's __init__ is named after its folder and a nested module after its full dotted path."""
    assert module_name(WORKER / "policy" / "__init__.py") == "worker.policy"
    assert module_name(WORKER / "policy" / "criteria" / "stage.py") == "worker.policy.criteria.stage"


def _flat_python_globs(source: str, where: str) -> list[str]:
    """Return ``where:line`` of every ``.glob("*.py")`` call (a walk that stops at the first folder) in ``source``."""
    return [
        f"{where}:{node.lineno}"
        for node in ast.walk(ast.parse(source, where))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "glob"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).endswith(".py")
    ]


def test_no_test_walks_python_sources_with_a_flat_glob():
    """No test under tests/ globs ``*.py`` one folder deep: guards use python_sources, which recurses."""
    offenders = [
        where
        for path in python_sources(TESTS)
        for where in _flat_python_globs(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert offenders == []


def test_the_flat_glob_scan_sees_one():
    """The scan above finds a flat ``*.py`` glob and ignores recursive and non-Python globs, so its empty answer means something."""
    source = 'p.glob("*.py")\np.rglob("*.py")\np.glob("*.avsc")\nq.glob("x/*.py")\n'
    assert _flat_python_globs(source, "probe.py") == ["probe.py:1", "probe.py:4"]
