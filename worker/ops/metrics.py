"""Prometheus metrics for the worker: every label value comes from a closed set, every child bound once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, Info

from worker.contracts.codes import CriterionStatus, Outcome
from worker.contracts.results import REJECT_MESSAGES
from worker.errors import DeadLetterClass
from worker.ops.histograms import (
    BATCH_DURATION_BUCKETS,
    BATCH_SIZE_BUCKETS,
    DECISION_LATENCY_BUCKETS,
    E2E_LATENCY_BUCKETS,
    observe_many,
)
from worker.ops.labels import OTHER, RebalanceKind, TransactionResult, closed_set

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client import CollectorRegistry

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """The worker's metrics on one registry, with every labelled child bound at construction.

    ``criterion_ids`` and ``reason_codes`` are the closed sets the policy can emit; anything else is
    counted under ``OTHER``. The only label not drawn from a closed set at construction is the lag
    gauges' ``partition``: it is the partition number, so it is bounded by the input topic's
    partition count, and ``clear_lag`` removes a partition's series when it is revoked.
    """

    __slots__ = (
        "_assigned_partitions",
        "_batch_duration",
        "_batch_size",
        "_consumed",
        "_criteria",
        "_dead_letters",
        "_decision_latency",
        "_e2e_latency",
        "_heals",
        "_lag",
        "_lag_children",
        "_lag_seconds",
        "_lag_seconds_children",
        "_last_commit",
        "_policy_info",
        "_prescriber_verified",
        "_producer_recreations",
        "_reasons",
        "_rebalance_partitions",
        "_rebalances",
        "_rejects",
        "_restore_incomplete",
        "_results",
        "_start_time",
        "_transactions",
        "_unowned",
        "_up",
    )

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        criterion_ids: Sequence[str] = (),
        reason_codes: Sequence[str] = (),
        ncpdp_codes: Sequence[str] | None = None,
    ) -> None:
        criteria = closed_set(criterion_ids, "criterion_ids")
        reasons = closed_set(reason_codes, "reason_codes")
        codes = closed_set(REJECT_MESSAGES if ncpdp_codes is None else ncpdp_codes, "ncpdp_codes")

        self._consumed = Counter(
            "claims_worker_claims_consumed",
            "Claim records read from the input topic.",
            registry=registry,
        )

        results = Counter(
            "claims_worker_results",
            "Decisions published, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._results = {o: results.labels(outcome=o.value) for o in Outcome}

        evaluations = Counter(
            "claims_worker_criterion_evaluations",
            "Policy criteria evaluated, by criterion id and status.",
            ["criterion_id", "status"],
            registry=registry,
        )
        self._criteria = {
            (c, s): evaluations.labels(criterion_id=c, status=s.value)
            for c in criteria
            for s in CriterionStatus
        }

        non_approval = Counter(
            "claims_worker_non_approval_reasons",
            "Reason codes given for decisions other than approval.",
            ["reason_code"],
            registry=registry,
        )
        self._reasons = {r: non_approval.labels(reason_code=r) for r in reasons}

        rejects = Counter(
            "claims_worker_ncpdp_rejects",
            "NCPDP reject codes (511-FB) sent to pharmacies in committed results, by code.",
            ["reject_code"],
            registry=registry,
        )
        self._rejects = {c: rejects.labels(reject_code=c) for c in codes}

        dead_letters = Counter(
            "claims_worker_dead_letters",
            "Records sent to the dead-letter topic, by error class.",
            ["error_class"],
            registry=registry,
        )
        self._dead_letters = {c: dead_letters.labels(error_class=c.value) for c in DeadLetterClass}

        self._decision_latency = Histogram(
            "claims_worker_decision_latency_seconds",
            "Time to decide one claim (validated claim in, decision out).",
            buckets=DECISION_LATENCY_BUCKETS,
            registry=registry,
        )
        self._e2e_latency = Histogram(
            "claims_worker_end_to_end_latency_seconds",
            "Time from a claim's event time to the commit of its result.",
            buckets=E2E_LATENCY_BUCKETS,
            registry=registry,
        )
        self._batch_size = Histogram(
            "claims_worker_batch_size_records",
            "Records per polled batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self._batch_duration = Histogram(
            "claims_worker_batch_duration_seconds",
            "Time to process one batch, from poll return to transaction end.",
            buckets=BATCH_DURATION_BUCKETS,
            registry=registry,
        )

        transactions = Counter(
            "claims_worker_transactions",
            "Kafka transactions ended, by result.",
            ["result"],
            registry=registry,
        )
        self._transactions = {r: transactions.labels(result=r.value) for r in TransactionResult}

        self._restore_incomplete = Counter(
            "claims_worker_state_restore_incomplete",
            "Partition-state read-backs cut short (timeout or stop), by store (a closed set: dedupe).",
            ["store"],
            registry=registry,
        )

        self._producer_recreations = Counter(
            "claims_worker_producer_recreations",
            "Transactional producers rebuilt after a transaction with an indefinite outcome.",
            registry=registry,
        )

        rebalances = Counter(
            "claims_worker_rebalances",
            "Consumer rebalance callbacks, by kind.",
            ["kind"],
            registry=registry,
        )
        self._rebalances = {k: rebalances.labels(kind=k.value) for k in RebalanceKind}
        rebalance_partitions = Counter(
            "claims_worker_rebalance_partitions",
            "Partitions handed over in rebalance callbacks, by kind.",
            ["kind"],
            registry=registry,
        )
        self._rebalance_partitions = {k: rebalance_partitions.labels(kind=k.value) for k in RebalanceKind}

        self._assigned_partitions = Gauge(
            "claims_worker_assigned_partitions",
            "Input partitions currently assigned to this worker.",
            registry=registry,
        )
        self._lag = Gauge(
            "claims_worker_consumer_lag_records",
            "Records not yet processed in each assigned input partition (end offset minus position).",
            ["partition"],
            registry=registry,
        )
        self._lag_children: dict[int, Gauge] = {}
        self._lag_seconds = Gauge(
            "claims_worker_consumer_lag_seconds",
            "Age of the oldest record not yet decided in each assigned input partition (now minus its Kafka"
            " timestamp; 0 without lag). Definition: worker/runtime/waiting.py.",
            ["partition"],
            registry=registry,
        )
        self._lag_seconds_children: dict[int, Gauge] = {}

        self._last_commit = Gauge(
            "claims_worker_last_commit_timestamp_seconds",
            "Unix time of the last committed batch (construction time until the first commit).",
            registry=registry,
        )
        # Starting at construction time gives a fresh worker the same no-progress grace as a running one.
        self._last_commit.set(time.time())

        self._policy_info = Info(
            "claims_worker_policy",
            "The policy the worker decides with, and the worker's version.",
            registry=registry,
        )
        self._prescriber_verified = Gauge(
            "claims_worker_prescriber_identity_verified",
            "1 when a prescriber directory verifies every NPI a decision relies on; 0 when specialties are "
            "self-reported and identities unverified (no CLAIMS_DIRECTORY_PATH).",
            registry=registry,
        )
        self._up = Gauge(
            "claims_worker_up",
            "1 while the consume-decide-produce loop runs, 0 once it is stopping or has failed.",
            registry=registry,
        )
        # A restart on the same slot (static member id) keeps the scrape target but changes this value.
        self._start_time = Gauge(
            "claims_worker_start_time_seconds",
            "Unix time this worker process started: changes() over it counts restarts on the slot.",
            registry=registry,
        )
        self._start_time.set(time.time())
        self._unowned = Gauge(
            "claims_worker_group_unowned_partitions",
            "Claims partitions no member of the settled consumer group owns (0 when healthy).",
            registry=registry,
        )
        self._heals = Counter(
            "claims_worker_group_heals",
            "Times this worker removed its own static member to make the group rebalance unowned partitions.",
            registry=registry,
        )

    def record_consumed(self, n: int = 1) -> None:
        """Count ``n`` claim records read from the input topic."""
        self._consumed.inc(n)

    def record_outcome(self, outcome: Outcome, n: int = 1) -> None:
        """Count ``n`` published decisions with ``outcome``."""
        self._results[outcome].inc(n)

    def record_criterion(self, criterion_id: str, status: CriterionStatus, n: int = 1) -> None:
        """Count ``n`` criterion evaluations; an undeclared ``criterion_id`` counts as ``OTHER``."""
        child = self._criteria.get((criterion_id, status)) or self._criteria[(OTHER, status)]
        child.inc(n)

    def record_reason(self, reason_code: str, n: int = 1) -> None:
        """Count ``n`` non-approval reasons; an undeclared ``reason_code`` counts as ``OTHER``."""
        child = self._reasons.get(reason_code) or self._reasons[OTHER]
        child.inc(n)

    def record_reject(self, reject_code: str, n: int = 1) -> None:
        """Count ``n`` NCPDP reject codes sent; an undeclared code counts as ``OTHER``."""
        child = self._rejects.get(reject_code) or self._rejects[OTHER]
        child.inc(n)

    def record_dead_letter(self, error_class: DeadLetterClass, n: int = 1) -> None:
        """Count ``n`` records sent to the dead-letter topic."""
        self._dead_letters[error_class].inc(n)

    def state_restore_incomplete(self, store: str) -> None:
        """Count a partition-state read-back cut short (timed out or stopped): the state may miss ids."""
        self._restore_incomplete.labels(store=store).inc()

    def observe_decision_latency(self, seconds: float) -> None:
        """Record how long deciding one claim took."""
        self._decision_latency.observe(seconds)

    def observe_e2e_latency(self, seconds: float) -> None:
        """Record the time from a claim's event time to the commit of its result."""
        self._e2e_latency.observe(seconds)

    def observe_decision_latencies(self, seconds: Sequence[float]) -> None:
        """Record a batch's decision times at once (same histogram as ``observe_decision_latency``)."""
        observe_many(self._decision_latency, seconds)

    def observe_e2e_latencies(self, seconds: Sequence[float]) -> None:
        """Record a batch's event-time-to-commit times at once (as ``observe_e2e_latency``)."""
        observe_many(self._e2e_latency, seconds)

    def observe_batch(self, size: int, duration_s: float) -> None:
        """Record one batch's record count and processing time."""
        self._batch_size.observe(size)
        self._batch_duration.observe(duration_s)

    def transaction_committed(self) -> None:
        """Count a committed transaction and stamp the last-commit time with now."""
        self._transactions[TransactionResult.COMMITTED].inc()
        self._last_commit.set(time.time())

    def transaction_aborted(self) -> None:
        """Count an aborted transaction."""
        self._transactions[TransactionResult.ABORTED].inc()

    def producer_recreated(self) -> None:
        """Count a transactional producer rebuilt after an indefinite transaction outcome."""
        self._producer_recreations.inc()

    def rebalance(self, kind: RebalanceKind, n_partitions: int) -> None:
        """Count one rebalance callback of ``kind`` that handed over ``n_partitions`` partitions."""
        self._rebalances[kind].inc()
        self._rebalance_partitions[kind].inc(n_partitions)

    def set_assigned(self, n: int) -> None:
        """Set the number of input partitions currently assigned."""
        self._assigned_partitions.set(n)

    def set_lag(self, partition: int, lag: int) -> None:
        """Set one assigned partition's lag in records; a negative lag is recorded as 0.

        Raises ``ValueError`` for a negative partition number.
        """
        _partition_child(self._lag, self._lag_children, partition).set(max(lag, 0))

    def set_lag_seconds(self, partition: int, seconds: float) -> None:
        """Set one assigned partition's lag in seconds (oldest undecided record's age); negative is 0.

        Raises ``ValueError`` for a negative partition number.
        """
        _partition_child(self._lag_seconds, self._lag_seconds_children, partition).set(max(seconds, 0.0))

    def clear_lag(self, partition: int) -> None:
        """Remove one partition's lag series (on revoke or loss); unknown ones are ignored."""
        for gauge, children in (
            (self._lag, self._lag_children),
            (self._lag_seconds, self._lag_seconds_children),
        ):
            if children.pop(partition, None) is not None:
                gauge.remove(str(partition))

    def clear_all_lag(self) -> None:
        """Remove every partition's lag series."""
        for partition in {*self._lag_children, *self._lag_seconds_children}:
            self.clear_lag(partition)

    def set_policy_info(self, policy_id: str, policy_version: str, worker_version: str) -> None:
        """Publish which policy and worker version are running (one series, replaced on each call)."""
        self._policy_info.info(
            {"policy_id": policy_id, "policy_version": policy_version, "worker_version": worker_version}
        )

    def set_prescriber_verified(self, verified: bool) -> None:
        """Publish whether prescriber identities are verified through a directory (1) or not (0)."""
        self._prescriber_verified.set(1 if verified else 0)

    def set_unowned_partitions(self, n: int) -> None:
        """Publish how many claims partitions the settled group leaves without an owner."""
        self._unowned.set(n)

    def group_healed(self) -> None:
        """Count one removal of this worker's static member to rebalance unowned partitions."""
        self._heals.inc()

    def set_running(self, running: bool) -> None:
        """Set ``claims_worker_up`` to 1 while the loop runs and to 0 when it stops or fails."""
        self._up.set(1 if running else 0)


def _partition_child(gauge: Gauge, children: dict[int, Gauge], partition: int) -> Gauge:
    """Return ``gauge``'s child for ``partition``, bound on first use; ``ValueError`` for a negative one."""
    child = children.get(partition)
    if child is None:
        if partition < 0:
            msg = "partition must be >= 0"
            raise ValueError(msg)
        child = gauge.labels(partition=str(partition))
        children[partition] = child
    return child
