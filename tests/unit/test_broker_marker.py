"""The kafka marker guard: an unmarked test that needs the broker fails collection, and `-m "not kafka"` starts no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for tests/conftest.py: the broker fixture leaves a file behind when it starts, and
# `topics` reaches it only through another fixture, as the integration fixtures do.
_CONFTEST = """
from pathlib import Path

import pytest

pytest_plugins = ["tests.broker_marker"]


@pytest.fixture(scope="session")
def kafka_bootstrap():
    Path("broker-started").touch()  # the run's working directory is the pytester folder
    return "127.0.0.1:9"


@pytest.fixture
def make_topics(kafka_bootstrap):
    return kafka_bootstrap


@pytest.fixture
def topics(make_topics):
    return make_topics
"""

_MARKED = """
import pytest

pytestmark = [pytest.mark.kafka]


def test_on_the_broker(topics):
    assert topics
"""

_PLAIN = """
def test_without_the_broker():
    assert True
"""

_UNMARKED = """
def test_forgot_the_marker(topics):
    assert topics


def test_needs_nothing():
    assert True
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A tiny suite wired to the guard, with a `kafka` marker declared as pyproject declares it."""
    pytester.makeini("[pytest]\nmarkers =\n    kafka: needs a real Kafka broker\n")
    pytester.makeconftest(_CONFTEST)
    return pytester


def _broker_started(pytester: pytest.Pytester) -> bool:
    return (pytester.path / "broker-started").exists()


def test_an_unmarked_test_that_reaches_the_broker_through_a_fixture_fails_collection(suite):
    """A test without the kafka mark whose fixtures lead to kafka_bootstrap stops the run with a usage error naming it."""
    suite.makepyfile(test_marked=_MARKED, test_plain=_PLAIN, test_unmarked=_UNMARKED)
    result = suite.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not marked kafka*test_unmarked.py::test_forgot_the_marker*"])
    assert "test_needs_nothing" not in result.stderr.str()
    assert "test_on_the_broker" not in result.stderr.str()


def test_the_guard_sees_every_collected_test_even_when_a_mark_expression_would_drop_it(suite):
    """`-m kafka` would deselect the unmarked test, yet the guard still refuses it (it runs before deselection)."""
    suite.makepyfile(test_unmarked=_UNMARKED)
    result = suite.runpytest("-m", "kafka")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_not_kafka_runs_the_unmarked_tests_and_never_starts_the_broker(suite):
    """With every broker test marked, `-m "not kafka"` runs the rest and never sets the broker fixture up."""
    suite.makepyfile(test_marked=_MARKED, test_plain=_PLAIN)
    result = suite.runpytest("-m", "not kafka")
    result.assert_outcomes(passed=1, deselected=1)
    assert not _broker_started(suite)
    result = suite.runpytest("-m", "kafka")
    result.assert_outcomes(passed=1, deselected=1)
    assert _broker_started(suite)


def test_the_project_suite_selects_no_broker_test_under_not_kafka():
    """Collecting the real integration tier with `-m "not kafka"` passes the guard and selects no test at all."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/integration",
            "--collect-only",
            "-q",
            "-m",
            "not kafka",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, run.stdout[-2000:] + run.stderr[-2000:]
    assert "deselected" in run.stdout
