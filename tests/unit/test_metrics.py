"""WorkerMetrics on a fresh registry: each method moves its metric, and label values stay in closed sets."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from worker.contracts.codes import CriterionStatus, Outcome
from worker.contracts.results import REJECT_MESSAGES
from worker.errors import DeadLetterClass
from worker.ops.labels import OTHER, RebalanceKind
from worker.ops.metrics import WorkerMetrics

CRITERIA = ("A", "B")
REASONS = ("DX_NOT_COVERED", "NO_ONCOLOGY_CONSULT")


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of its own for each test, so metric names never clash."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> WorkerMetrics:
    """WorkerMetrics with two criteria and two reason codes declared."""
    return WorkerMetrics(registry, criterion_ids=CRITERIA, reason_codes=REASONS)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def _label_values(registry: CollectorRegistry, label: str) -> set[str]:
    return {s.labels[label] for fam in registry.collect() for s in fam.samples if label in s.labels}


class TestConstruction:
    """Children are bound up front, so every series exists at 0 before the first event."""

    @pytest.mark.usefixtures("metrics")
    def test_every_closed_set_child_exists_at_zero(self, registry):
        """Every outcome, criterion/status, reason, dead-letter class, result and kind is exposed at 0."""
        for o in Outcome:
            assert _value(registry, "claims_worker_results_total", outcome=o.value) == 0
        for c in (*CRITERIA, OTHER):
            for s in CriterionStatus:
                assert (
                    _value(
                        registry, "claims_worker_criterion_evaluations_total", criterion_id=c, status=s.value
                    )
                    == 0
                )
        for r in (*REASONS, OTHER):
            assert _value(registry, "claims_worker_non_approval_reasons_total", reason_code=r) == 0
        for d in DeadLetterClass:
            assert _value(registry, "claims_worker_dead_letters_total", error_class=d.value) == 0
        for result in ("committed", "aborted"):
            assert _value(registry, "claims_worker_transactions_total", result=result) == 0
        for k in RebalanceKind:
            assert _value(registry, "claims_worker_rebalances_total", kind=k.value) == 0
        for code in (*REJECT_MESSAGES, OTHER):
            assert _value(registry, "claims_worker_ncpdp_rejects_total", reject_code=code) == 0

    def test_label_values_come_only_from_closed_sets(self, registry, metrics):
        """After recording unknown codes, every label value is an enum value, a declared code or OTHER."""
        metrics.record_reason("free text that is not a code")
        metrics.record_criterion("Z", CriterionStatus.MET)
        assert _label_values(registry, "outcome") == {o.value for o in Outcome}
        assert _label_values(registry, "status") == {s.value for s in CriterionStatus}
        assert _label_values(registry, "criterion_id") == {*CRITERIA, OTHER}
        assert _label_values(registry, "reason_code") == {*REASONS, OTHER}
        assert _label_values(registry, "error_class") == {d.value for d in DeadLetterClass}
        assert _label_values(registry, "result") == {"committed", "aborted"}
        assert _label_values(registry, "kind") == {k.value for k in RebalanceKind}
        metrics.record_reject("not a known code")
        assert _label_values(registry, "reject_code") == {*REJECT_MESSAGES, OTHER}

    def test_declared_codes_must_look_like_codes(self, registry):
        """A declared reason code with spaces is rejected at construction."""
        with pytest.raises(ValueError, match="reason_codes"):
            WorkerMetrics(registry, reason_codes=("not a code",))

    @pytest.mark.usefixtures("metrics")
    def test_two_instances_on_one_registry_clash(self, registry):
        """Building a second WorkerMetrics on the same registry fails loudly, not silently."""
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            WorkerMetrics(registry)

    def test_slots_forbid_new_attributes(self, metrics):
        """WorkerMetrics has __slots__, so a typo'd attribute fails instead of creating state."""
        with pytest.raises(AttributeError):
            metrics.typo = 1  # type: ignore[attr-defined]


class TestCounters:
    """Each counting method moves exactly its own series."""

    def test_record_consumed(self, registry, metrics):
        """record_consumed adds n to the consumed counter."""
        metrics.record_consumed()
        metrics.record_consumed(4)
        assert _value(registry, "claims_worker_claims_consumed_total") == 5

    @pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.value)
    def test_record_outcome(self, registry, metrics, outcome):
        """record_outcome counts under its own outcome only."""
        metrics.record_outcome(outcome)
        for o in Outcome:
            expected = 1 if o is outcome else 0
            assert _value(registry, "claims_worker_results_total", outcome=o.value) == expected

    def test_record_criterion(self, registry, metrics):
        """record_criterion counts by criterion id and status."""
        metrics.record_criterion("A", CriterionStatus.MET)
        metrics.record_criterion("B", CriterionStatus.NOT_MET)
        metrics.record_criterion("B", CriterionStatus.NOT_MET)
        name = "claims_worker_criterion_evaluations_total"
        assert _value(registry, name, criterion_id="A", status="MET") == 1
        assert _value(registry, name, criterion_id="B", status="NOT_MET") == 2
        assert _value(registry, name, criterion_id="A", status="UNKNOWN") == 0

    def test_unknown_criterion_counts_as_other(self, registry, metrics):
        """An undeclared criterion id is counted under OTHER and creates no new series."""
        metrics.record_criterion("Z", CriterionStatus.UNKNOWN)
        name = "claims_worker_criterion_evaluations_total"
        assert _value(registry, name, criterion_id=OTHER, status="UNKNOWN") == 1
        assert _value(registry, name, criterion_id="Z", status="UNKNOWN") is None

    def test_record_reason(self, registry, metrics):
        """A declared reason code is counted under itself."""
        metrics.record_reason("DX_NOT_COVERED")
        assert _value(registry, "claims_worker_non_approval_reasons_total", reason_code="DX_NOT_COVERED") == 1

    def test_unknown_reason_counts_as_other(self, registry, metrics):
        """An undeclared reason code is counted under OTHER and creates no new series."""
        metrics.record_reason("SOMETHING_NEW")
        assert _value(registry, "claims_worker_non_approval_reasons_total", reason_code=OTHER) == 1
        assert (
            _value(registry, "claims_worker_non_approval_reasons_total", reason_code="SOMETHING_NEW") is None
        )

    def test_record_reject(self, registry, metrics):
        """A known NCPDP code counts under itself, an unknown one under OTHER."""
        metrics.record_reject("3W", 2)
        metrics.record_reject("ZZ9")
        assert _value(registry, "claims_worker_ncpdp_rejects_total", reject_code="3W") == 2
        assert _value(registry, "claims_worker_ncpdp_rejects_total", reject_code=OTHER) == 1

    @pytest.mark.parametrize("error_class", list(DeadLetterClass), ids=lambda c: c.value)
    def test_record_dead_letter(self, registry, metrics, error_class):
        """record_dead_letter counts under its error class."""
        metrics.record_dead_letter(error_class)
        assert _value(registry, "claims_worker_dead_letters_total", error_class=error_class.value) == 1

    def test_transactions(self, registry, metrics):
        """Committed and aborted transactions are counted apart."""
        metrics.transaction_committed()
        metrics.transaction_committed()
        metrics.transaction_aborted()
        assert _value(registry, "claims_worker_transactions_total", result="committed") == 2
        assert _value(registry, "claims_worker_transactions_total", result="aborted") == 1

    def test_producer_recreated(self, registry, metrics):
        """producer_recreated counts producer rebuilds."""
        metrics.producer_recreated()
        assert _value(registry, "claims_worker_producer_recreations_total") == 1

    def test_rebalance(self, registry, metrics):
        """rebalance counts the callback and the partitions it handed over, by kind."""
        metrics.rebalance(RebalanceKind.ASSIGNED, 3)
        metrics.rebalance(RebalanceKind.REVOKED, 2)
        assert _value(registry, "claims_worker_rebalances_total", kind="assigned") == 1
        assert _value(registry, "claims_worker_rebalance_partitions_total", kind="assigned") == 3
        assert _value(registry, "claims_worker_rebalances_total", kind="revoked") == 1
        assert _value(registry, "claims_worker_rebalance_partitions_total", kind="revoked") == 2
        assert _value(registry, "claims_worker_rebalances_total", kind="lost") == 0


class TestHistograms:
    """Each observing method lands in its histogram."""

    def test_observe_decision_latency(self, registry, metrics):
        """A 3 µs decision falls in the 5 µs bucket but not the 2.5 µs one."""
        metrics.observe_decision_latency(0.000_003)
        name = "claims_worker_decision_latency_seconds_bucket"
        assert _value(registry, name, le="2.5e-06") == 0
        assert _value(registry, name, le="5e-06") == 1
        assert _value(registry, "claims_worker_decision_latency_seconds_count") == 1

    def test_observe_e2e_latency(self, registry, metrics):
        """A 45 s end-to-end latency falls in the 60 s bucket but not the 30 s one."""
        metrics.observe_e2e_latency(45.0)
        name = "claims_worker_end_to_end_latency_seconds_bucket"
        assert _value(registry, name, le="30.0") == 0
        assert _value(registry, name, le="60.0") == 1
        assert _value(registry, "claims_worker_end_to_end_latency_seconds_sum") == 45.0

    def test_batch_observations_equal_one_observe_per_value(self):
        """observe_*_latencies gives every bucket, the count and the sum that one observe per value gives, edges included."""
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

        from worker.ops.histograms import DECISION_LATENCY_BUCKETS, E2E_LATENCY_BUCKETS  # noqa: PLC0415
        from worker.ops.metrics import WorkerMetrics  # noqa: PLC0415

        values = [0.0, 1e-7, *DECISION_LATENCY_BUCKETS, *E2E_LATENCY_BUCKETS, 0.000_003, 45.0, 1e9]
        values += [b * 1.0001 for b in DECISION_LATENCY_BUCKETS + E2E_LATENCY_BUCKETS]
        one, bulk = CollectorRegistry(), CollectorRegistry()
        each, batched = WorkerMetrics(one), WorkerMetrics(bulk)
        for v in values:
            each.observe_decision_latency(v)
            each.observe_e2e_latency(v)
        batched.observe_decision_latencies(values)
        batched.observe_e2e_latencies(values)
        batched.observe_e2e_latencies([])

        def histograms(registry):
            return [
                line
                for line in generate_latest(registry).decode().splitlines()
                if "latency_seconds" in line and "_created" not in line
            ]

        assert histograms(one) == histograms(bulk)
        assert any("decision_latency_seconds_count" in line for line in histograms(bulk))

    def test_observe_batch(self, registry, metrics):
        """observe_batch records both the batch size and its duration."""
        metrics.observe_batch(100, 0.2)
        assert _value(registry, "claims_worker_batch_size_records_sum") == 100
        assert _value(registry, "claims_worker_batch_size_records_bucket", le="100.0") == 1
        assert _value(registry, "claims_worker_batch_duration_seconds_sum") == pytest.approx(0.2)
        assert _value(registry, "claims_worker_batch_duration_seconds_count") == 1


class TestGauges:
    """Gauges are set, and lag series come and go with partitions."""

    def test_set_assigned(self, registry, metrics):
        """set_assigned sets the assigned-partitions gauge."""
        metrics.set_assigned(6)
        assert _value(registry, "claims_worker_assigned_partitions") == 6

    def test_set_and_clear_lag(self, registry, metrics):
        """set_lag creates one series per partition number and clear_lag removes it."""
        metrics.set_lag(0, 10)
        metrics.set_lag(3, 7)
        metrics.set_lag(0, 12)
        name = "claims_worker_consumer_lag_records"
        assert _value(registry, name, partition="0") == 12
        assert _value(registry, name, partition="3") == 7
        metrics.clear_lag(3)
        metrics.clear_lag(99)
        assert _value(registry, name, partition="3") is None
        assert _label_values(registry, "partition") == {"0"}
        metrics.clear_all_lag()
        assert _label_values(registry, "partition") == set()

    def test_lag_seconds_series_come_and_go_with_the_records_series(self, registry, metrics):
        """set_lag_seconds sets one series per partition; a negative age is 0; clear_lag removes both series."""
        metrics.set_lag(2, 5)
        metrics.set_lag_seconds(2, 42.5)
        metrics.set_lag_seconds(4, -3.0)
        name = "claims_worker_consumer_lag_seconds"
        assert _value(registry, name, partition="2") == 42.5
        assert _value(registry, name, partition="4") == 0
        metrics.clear_lag(2)
        assert _value(registry, name, partition="2") is None
        assert _value(registry, "claims_worker_consumer_lag_records", partition="2") is None
        metrics.clear_all_lag()
        assert _label_values(registry, "partition") == set()

    def test_negative_lag_is_zero(self, registry, metrics):
        """A negative lag (offsets read at different moments) is recorded as 0."""
        metrics.set_lag(1, -5)
        assert _value(registry, "claims_worker_consumer_lag_records", partition="1") == 0

    def test_negative_partition_is_rejected(self, metrics):
        """A negative partition number is a caller bug and raises ValueError."""
        with pytest.raises(ValueError, match="partition"):
            metrics.set_lag(-1, 5)

    def test_last_commit_starts_at_construction_and_moves_on_commit(self, monkeypatch):
        """The last-commit timestamp starts at construction time and is restamped on each commit."""
        now = [1_000.0]
        monkeypatch.setattr(time, "time", lambda: now[0])
        registry = CollectorRegistry()
        metrics = WorkerMetrics(registry)
        assert _value(registry, "claims_worker_last_commit_timestamp_seconds") == 1_000.0
        now[0] = 1_060.0
        metrics.transaction_aborted()
        assert _value(registry, "claims_worker_last_commit_timestamp_seconds") == 1_000.0
        metrics.transaction_committed()
        assert _value(registry, "claims_worker_last_commit_timestamp_seconds") == 1_060.0

    def test_start_time_is_the_construction_time(self, registry):
        """claims_worker_start_time_seconds is set once, to the time the metrics were built (a restart moves it)."""
        before = time.time()
        WorkerMetrics(registry)
        value = _value(registry, "claims_worker_start_time_seconds")
        assert value is not None
        assert before <= value <= time.time()

    def test_set_running(self, registry, metrics):
        """set_running flips claims_worker_up between 1 and 0."""
        assert _value(registry, "claims_worker_up") == 0
        metrics.set_running(True)
        assert _value(registry, "claims_worker_up") == 1
        metrics.set_running(False)
        assert _value(registry, "claims_worker_up") == 0

    def test_set_policy_info(self, registry, metrics):
        """set_policy_info exposes one info series and replaces it on the next call."""
        metrics.set_policy_info("IXEMPRA-PA", "1", "0.1.0")
        metrics.set_policy_info("IXEMPRA-PA", "2", "0.1.0")
        name = "claims_worker_policy_info"
        assert _value(registry, name, policy_id="IXEMPRA-PA", policy_version="2", worker_version="0.1.0") == 1
        assert (
            _value(registry, name, policy_id="IXEMPRA-PA", policy_version="1", worker_version="0.1.0") is None
        )


class TestPrescriberVerification:
    def test_the_gauge_says_whether_identities_are_verified(self, metrics, registry):
        """claims_worker_prescriber_identity_verified is 0 without a directory and 1 with one."""
        metrics.set_prescriber_verified(False)
        assert _value(registry, "claims_worker_prescriber_identity_verified") == 0
        metrics.set_prescriber_verified(True)
        assert _value(registry, "claims_worker_prescriber_identity_verified") == 1
