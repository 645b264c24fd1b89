"""What an open transaction holds and what a committed one did: its tally, counted once per commit.

The loop (``worker.runtime.pipeline``) adds each poll's published records to the open transaction
(``tally``) and lets the records go; on commit, ``record_counts`` adds the counts to the metrics, one
call per label value, and ``BatchReport`` feeds the batch log line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.contracts.codes import CriterionStatus, Outcome
from worker.contracts.wire import NOT_APPROVED
from worker.errors import DeadLetterClass

if TYPE_CHECKING:
    from datetime import datetime

    from worker.kafka.io import OffsetAndMetadata, TopicPartition
    from worker.ops.metrics import WorkerMetrics
    from worker.runtime.route import Outgoing

__all__ = ["BatchReport", "OpenTransaction", "record_counts", "tally"]


@dataclass
class OpenTransaction:
    """The transaction open over one or more polls: what it sent, from where, and the offsets it commits."""

    started: float  # perf_counter when it opened
    opened: float  # monotonic, for the commit interval
    offsets: dict[TopicPartition, OffsetAndMetadata] = field(default_factory=dict)
    first: dict[TopicPartition, int] = field(default_factory=dict)
    # What it published, tallied per poll (the outgoing records themselves are let go at once: kept for
    # the whole interval they would be promoted through the collector's generations and scanned again).
    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    criteria: Counter[tuple[str, CriterionStatus]] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    decide_s: list[float] = field(default_factory=list)
    event_times: list[datetime] = field(default_factory=list)
    not_approved: list[tuple[str | None, str, tuple[str, ...]]] = field(default_factory=list)


@dataclass
class BatchReport:
    """What one committed transaction (one or more polls) did, for the batch log line and tests."""

    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    duration_s: float = 0.0


def tally(outgoing: list[Outgoing], open_: OpenTransaction) -> None:
    """Add one poll's published records to the open transaction's counts (counted in metrics on commit)."""
    open_.records += len(outgoing)
    for out in outgoing:
        if out.outcome is not None:
            open_.outcomes[out.outcome.value] += 1
            open_.decide_s.append(out.decide_s)
            # Counter.update is Python code: skipped for the empty tuples of most results.
            if out.criteria:
                open_.criteria.update(out.criteria)
            if out.reason_codes:
                open_.reasons.update(out.reason_codes)
            if out.reject_codes:
                open_.rejects.update(out.reject_codes)
            if out.event_time is not None:
                open_.event_times.append(out.event_time)
            if out.outcome in NOT_APPROVED:
                open_.not_approved.append((out.claim_id, out.outcome.value, out.reason_codes))
        elif out.error_class is not None:
            open_.dead_letters[out.error_class.value] += 1


def record_counts(
    metrics: WorkerMetrics,
    report: BatchReport,
    criteria: Counter[tuple[str, CriterionStatus]],
    reasons: Counter[str],
    rejects: Counter[str],
) -> None:
    """Add a committed batch's counts to the metrics: one call per label value."""
    for outcome, n in report.outcomes.items():
        metrics.record_outcome(Outcome(outcome), n)
    for error_class, n in report.dead_letters.items():
        metrics.record_dead_letter(DeadLetterClass(error_class), n)
    for (criterion_id, status), n in criteria.items():
        metrics.record_criterion(criterion_id, status, n)
    for reason, n in reasons.items():
        metrics.record_reason(reason, n)
    for code, n in rejects.items():
        metrics.record_reject(code, n)
