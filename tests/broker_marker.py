"""Collection guard: a test that needs the session broker, directly or through another fixture, is marked kafka."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["BROKER_FIXTURE", "pytest_collection_modifyitems", "unmarked_broker_tests"]

# Every broker-backed fixture (make_topics, topics, own_broker, ...) requests this one, so it is
# in the fixture closure of every test that would start the broker.
BROKER_FIXTURE = "kafka_bootstrap"


def unmarked_broker_tests(items: Iterable[pytest.Item]) -> list[str]:
    """Return the node ids of the tests whose fixture closure holds the broker but that lack the kafka mark."""
    return [
        item.nodeid
        for item in items
        if BROKER_FIXTURE in getattr(item, "fixturenames", ()) and item.get_closest_marker("kafka") is None
    ]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything: every collected test is checked
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse the run when a test would start the broker without the kafka mark (so `-m "not kafka"` could not skip it).

    Raises ``pytest.UsageError`` naming the offending tests.
    """
    offenders = unmarked_broker_tests(items)
    if offenders:
        msg = (
            f"these tests request the {BROKER_FIXTURE} fixture but are not marked kafka "
            f"(add `pytestmark = [pytest.mark.kafka]` to their module): {', '.join(offenders)}"
        )
        raise pytest.UsageError(msg)
