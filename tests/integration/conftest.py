"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def topics(make_topics, unique):
    """Fresh claims/results/dead-letter topics (2 partitions) and a fresh group for one test."""
    names = {
        "claims": f"claims-{unique}",
        "results": f"results-{unique}",
        "dead_letter": f"dlq-{unique}",
        "group": f"grp-{unique}",
    }
    make_topics(names["claims"], names["results"], names["dead_letter"], partitions=2)
    return names


@pytest.fixture(scope="session")
def secured(tmp_path_factory):
    """The session's secured broker (tests/integration/secure_broker.py), started on first use."""
    from tests.integration.secure_broker import start_secured  # noqa: PLC0415 - only for the security tests

    yield from start_secured(tmp_path_factory)
