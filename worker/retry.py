"""Retry delays with jitter: one formula for the worker's Kafka backoff and the supervisor's restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

__all__ = ["decorrelated_jitter"]


def decorrelated_jitter(previous_s: float, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Return the next wait: drawn from [base_s, 3 x previous_s], at most cap_s ("decorrelated jitter").

    Workers that failed together (one broker restart, one outage) spread their retries instead of
    coming back in step, and no wait is shorter than ``base_s``, so a failing call never loops hot.
    See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/.
    """
    return float(min(cap_s, rng.uniform(base_s, max(base_s, 3 * previous_s))))
