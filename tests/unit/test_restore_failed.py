"""A failed state read-back is what its cause is, restarts, and checks the topics first (no exit 70)."""

from __future__ import annotations

import threading

import pytest
from kafka import errors as kerrors
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from tests.unit.fakes import CLAIMS, RESULTS, FakeCluster, FakeConsumer
from worker.config.settings import Settings
from worker.errors import ConfigError
from worker.kafka.failures import Kind, classify, describe
from worker.ops.logs import get_logger
from worker.ops.metrics import WorkerMetrics
from worker.runtime.partitions import PartitionState, RestoreFailed
from worker.state.dedupe import SeenEvents
from worker.state.store import Restored


def _settings() -> Settings:
    return Settings(KAFKA_BOOTSTRAP_SERVERS="broker:9092")


class _Reader:
    """The dedupe store's read-back: raises the queued errors first, then reads nothing."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.done = threading.Event()

    def __call__(self, partition: int, stop: threading.Event) -> Restored:  # noqa: ARG002 - reader signature
        self.calls += 1
        self.done.set()
        if self.errors:
            raise self.errors.pop(0)
        return Restored(partition, [])


def _state(
    cluster: FakeCluster, reader: _Reader, claims_partitions: int | None = 2
) -> tuple[PartitionState, FakeConsumer]:
    consumer = FakeConsumer(cluster)
    state = PartitionState(
        _settings(),
        consumer,
        (SeenEvents(10, reader=reader),),
        WorkerMetrics(CollectorRegistry()),
        get_logger("test"),
        claims_partitions=claims_partitions,
    )
    return state, consumer


def _settle_until(state: PartitionState, reader: _Reader, calls: int) -> None:
    """Settle until the reader has been called ``calls`` times and its outcome handed over."""
    while True:
        reader.done.wait(10)
        reader.done.clear()
        if reader.calls >= calls:
            break
    for _ in range(200):  # the restore thread hands its outcome to the queue right after the call
        if not state.restoring or state._done.qsize():
            break
        threading.Event().wait(0.01)


class TestRestoreFailed:
    """What a failed read-back becomes on the poll thread."""

    def test_is_classified_and_described_as_its_cause(self):
        """Timed out: transient (the outage clock); refused: exit 5 naming the topic; a bug: internal."""
        for cause, kind in (
            (kerrors.KafkaTimeoutError("read-back"), Kind.TRANSIENT),
            (kerrors.TopicAuthorizationFailedError({RESULTS}), Kind.NOT_AUTHORIZED),
            (TypeError("bug"), Kind.INTERNAL),
        ):
            exc = RestoreFailed("reading back partition 0's state failed")
            exc.__cause__ = cause
            assert classify(exc) is kind
            if kind is Kind.NOT_AUTHORIZED:
                assert RESULTS in describe(exc, _settings())

    def test_a_timed_out_read_back_is_restarted_and_raised_as_transient(self):
        """The partition's restore starts again (still paused) and the loop backs off on RestoreFailed."""
        reader = _Reader(kerrors.KafkaTimeoutError("read-back"))
        state, consumer = _state(FakeCluster(partitions=1), reader)
        state.assigned_now([TopicPartition(CLAIMS, 0)])
        _settle_until(state, reader, 1)
        with pytest.raises(RestoreFailed) as raised:
            state.settle()
        assert classify(raised.value) is Kind.TRANSIENT
        assert state.restoring == 1, "the restore was started again"
        _settle_until(state, reader, 2)
        state.settle()
        assert state.restoring == 0
        assert TopicPartition(CLAIMS, 0) not in consumer.paused_

    def test_a_results_topic_shrunk_under_the_read_back_is_exit_2_naming_it(self):
        """Results recreated with 1 partition where claims has 2: ConfigError names the topic and counts."""
        cluster = FakeCluster(partitions=2)
        reader = _Reader(kerrors.KafkaTimeoutError("read-back"), kerrors.KafkaTimeoutError("read-back"))
        state, _ = _state(cluster, reader)
        state.assigned_now([TopicPartition(CLAIMS, 1)])
        state._check_pending = False
        cluster.output_partitions = 1
        _settle_until(state, reader, 1)
        with pytest.raises(ConfigError, match=f"topic '{RESULTS}' has 1 partitions; it needs at least 2"):
            state.settle()


class TestTopicCheckWhileRunning:
    """A topic missing at an assignment's check: exit 2 at once the first time, the watch's to judge later."""

    def _missing_results(self, consumer: FakeConsumer) -> None:
        shown = consumer.partitions_for_topic
        consumer.partitions_for_topic = lambda topic: set() if topic == RESULTS else shown(topic)

    def test_the_first_check_fails_at_once(self):
        """Before any check passed (no start-up count handed in), a missing topic is exit 2, as at start."""
        state, consumer = _state(FakeCluster(partitions=1), _Reader(), claims_partitions=None)
        self._missing_results(consumer)
        state.assigned_now([TopicPartition(CLAIMS, 0)])
        with pytest.raises(ConfigError, match=f"topic '{RESULTS}' does not exist"):
            state.settle()

    def test_a_topic_deleted_between_the_start_up_check_and_the_first_assignment_waits_for_the_watch(self):
        """The start-up check passed (its count handed in): a deletion before the first assignment's check
        is the group watch's to name ("deleted while the worker ran"), not "does not exist"."""
        state, consumer = _state(FakeCluster(partitions=1), _Reader(), claims_partitions=1)
        self._missing_results(consumer)
        state.assigned_now([TopicPartition(CLAIMS, 0)])
        state.settle()
        assert state.claims_partitions == 1

    def test_a_topic_deleted_after_a_passed_check_waits_for_the_watch(self):
        """Deleted while running: the check passes it over (the sentinel's limit decides), counts unchanged."""
        state, consumer = _state(FakeCluster(partitions=1), _Reader())
        state.assigned_now([TopicPartition(CLAIMS, 0)])
        state.settle()
        self._missing_results(consumer)
        state.assigned_now([TopicPartition(CLAIMS, 1)])
        state.settle()
        assert state.claims_partitions == 1
