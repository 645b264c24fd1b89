"""The hashed lock files in requirements/ cover pyproject.toml, agree with each other and are what installs use.

`make lock` writes them with uv (docs/security.md, "Reproducible builds"); these checks fail when someone adds
a dependency to pyproject.toml without refreshing the lock, edits a pin by hand out of its range, or drops
the hashes that make pip refuse a substituted wheel.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"runtime": (), "dev": ("dev",), "bench": ("dev", "bench")}


def _pins(text: str) -> dict[str, tuple[str, int]]:
    """Return ``{name: (version, hashes)}`` of one uv/pip-tools lock file, continuation lines joined."""
    pins = {}
    for entry in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = entry.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert match, f"not an exact pin: {line[:80]}"
        pins[canonicalize_name(match[1])] = (match[2], line.count("--hash=sha256:"))
    return pins


def _lock(name: str) -> dict[str, tuple[str, int]]:
    return _pins((ROOT / "requirements" / f"{name}.txt").read_text())


def _wanted(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    build = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements" / "build.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    texts = [*project["dependencies"], *build]
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _missing(lock: dict[str, tuple[str, int]], wanted: list[Requirement]) -> list[str]:
    """Name every requirement the lock does not pin within its range (for this platform's markers)."""
    environment = default_environment()
    problems = []
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pin = lock.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(pin[0], prereleases=True):
            problems.append(f"{requirement.name}=={pin[0]} is outside {requirement.specifier}")
    return problems


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_each_lock_pins_every_requirement_of_its_set_within_range(name):
    """runtime, dev and bench each pin every requirement of pyproject.toml's set, inside its range."""
    assert _missing(_lock(name), _wanted(LOCKS[name])) == []


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_carries_its_hashes(name):
    """Every pinned file has at least one sha256 hash, so pip's --require-hashes mode accepts the lock."""
    unhashed = [package for package, (_, hashes) in _lock(name).items() if hashes == 0]
    assert unhashed == []


def test_the_sets_agree_on_every_shared_package():
    """A package in two locks has one version, so the tests run the versions the image ships."""
    runtime, dev, bench = _lock("runtime"), _lock("dev"), _lock("bench")
    assert {p: v for p, (v, _) in runtime.items()} == {p: dev[p][0] for p in runtime}
    assert {p: v for p, (v, _) in dev.items()} == {p: bench[p][0] for p in dev}


def test_the_range_check_names_a_dependency_added_without_a_new_lock():
    """The check above can fail: a requirement the lock lacks, or pins outside its range, is named."""
    lock = _lock("runtime")
    problems = _missing(lock, [Requirement("not-a-real-package>=1"), Requirement("fastavro<1")])
    assert problems == [
        "not-a-real-package is not in the lock",
        f"fastavro=={lock['fastavro'][0]} is outside <1",
    ]


def test_the_locks_name_no_index_host():
    """The lock files carry names, versions and hashes only: no index address (the house rule on host names)."""
    for path in (ROOT / "requirements").iterdir():
        assert "://" not in path.read_text(), path.name


def test_make_install_reads_the_lock_with_hashes_required():
    """`make install` and `make install-bench` install from the locks in pip's hash-checking mode."""
    makefile = (ROOT / "Makefile").read_text()
    assert "PIP_LOCKED := $(PY) -m pip install --quiet --require-hashes --no-deps -r" in makefile
    assert "$(PIP_LOCKED) $(LOCK_DEV)" in makefile
    assert "$(PIP_LOCKED) $(LOCK_BENCH)" in makefile
    installs = [line for line in makefile.splitlines() if "pip install" in line and "PIP_LOCKED" not in line]
    assert all("--no-deps" in line for line in installs), installs
