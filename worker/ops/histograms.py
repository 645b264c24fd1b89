"""The histograms' buckets of the worker's metrics, and a bulk observe that fills one like many observes."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client import Histogram

__all__ = [
    "BATCH_DURATION_BUCKETS",
    "BATCH_SIZE_BUCKETS",
    "DECISION_LATENCY_BUCKETS",
    "E2E_LATENCY_BUCKETS",
    "observe_many",
]

# Deciding one claim is pure CPU work: microseconds, with a tail up to 10 ms.
DECISION_LATENCY_BUCKETS = (
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
)
# Event time to result publish: milliseconds when caught up, up to a minute when behind.
E2E_LATENCY_BUCKETS = (0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
BATCH_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """Observe ``amounts`` in ``histogram``: the same buckets and sum as one ``observe`` per value.

    prometheus_client's ``observe`` takes two locks per value; this counts the buckets first and then
    takes one lock per bucket touched and one for the sum (a batch of 500 claims: a few instead of 1000).
    """
    if not amounts:
        return
    bounds = histogram._upper_bounds  # noqa: SLF001 - prometheus_client has no bulk observe
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += (
            1  # the first bound >= amount, as observe's ``amount <= bound``
        )
    histogram._sum.inc(sum(amounts))  # noqa: SLF001
    for i, n in enumerate(counts):
        if n:
            histogram._buckets[i].inc(n)  # noqa: SLF001
