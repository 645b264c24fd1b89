"""The pipeline's per-record step and batch bookkeeping, driven with small fakes (no broker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.unit.claims import make_claim
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.model import Outcome
from worker.errors import DeadLetterClass
from worker.ops.metrics import WorkerMetrics
from worker.policy import default_policy
from worker.runtime.kafka_io import EVENT_ID_HEADER, TopicPartition
from worker.runtime.pipeline import Pipeline, adjudicate
from worker.state.dedupe import SeenEvents

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
PHI = ("PHIMEMBER8675309", "ZZPHIFIRST", "ZZPHILAST", "1937-04-23")


@dataclass
class Rec:
    """A consumed record as the pipeline sees it."""

    value: bytes | None
    offset: int = 0
    partition: int = 1
    key: bytes | None = b"k"
    topic: str = "pharmacy.claims"
    headers: list = field(default_factory=list)
    leader_epoch: int = 0


class FakeProducer:
    """Records what a transactional producer was asked to do."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send(self, topic, value=None, key=None, partition=None, headers=None) -> None:
        self.sent.append((topic, partition, key, value, headers))

    def send_offsets_to_transaction(self, offsets, group_metadata) -> None:  # noqa: ARG002 - kafka-python's signature
        self.calls.append(f"offsets:{sorted((tp.partition, o.offset) for tp, o in offsets.items())}")

    def commit_transaction(self) -> None:
        self.calls.append("commit")

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self, timeout=None) -> None:  # noqa: ARG002 - kafka-python's signature
        self.calls.append("close")


class FakeConsumer:
    """Just enough consumer for ``Pipeline.process``."""

    def group_metadata(self) -> str:
        return "group"

    def highwater(self, tp) -> int:  # noqa: ARG002 - kafka-python's signature
        return 10

    def assignment(self) -> set:
        return set()


@pytest.fixture
def codec() -> Codec:
    """One codec for the module's tests."""
    return Codec()


def _phi_claim(**overrides):
    return make_claim(
        patient={
            "member_id": PHI[0],
            "first_name": PHI[1],
            "last_name": PHI[2],
            "date_of_birth": "1937-04-23",
        },
        **overrides,
    )


class TestAdjudicate:
    def test_good_claim_becomes_a_result_on_the_same_partition(self, codec):
        """A decodable claim yields a result keyed by claim id, on the input's partition, with the event id header."""
        claim = make_claim()
        out = adjudicate(
            Rec(codec.encode_claim(claim), partition=3),
            codec=codec,
            settings=SETTINGS,
            seen=SeenEvents(10),
            policy=None,
            decided_at=NOW,
        )
        assert (out.topic, out.partition, out.key) == (SETTINGS.results_topic, 3, claim.claim_id.encode())
        assert (EVENT_ID_HEADER, claim.event_id.encode()) in out.headers
        assert out.outcome is not None
        assert codec.decode_result(out.value)["source"] == {
            "topic": "pharmacy.claims",
            "partition": 3,
            "offset": 0,
        }

    def test_poison_becomes_a_dead_letter_with_original_bytes(self, codec):
        """Undecodable bytes go to the dead-letter topic untouched, with their error class."""
        out = adjudicate(
            Rec(b"garbage", key=b"orig"),
            codec=codec,
            settings=SETTINGS,
            seen=SeenEvents(10),
            policy=None,
            decided_at=NOW,
        )
        letter = codec.decode_dead_letter(out.value)
        assert out.topic == SETTINGS.dead_letter_topic
        assert (letter["original_key"], letter["original_value"]) == (b"orig", b"garbage")
        assert out.error_class is DeadLetterClass.NOT_AVRO

    def test_second_delivery_of_an_event_is_a_duplicate(self, codec):
        """The same event id on the same partition is dead-lettered as DUPLICATE_EVENT the second time."""
        seen = SeenEvents(10)
        value = codec.encode_claim(make_claim())
        first = adjudicate(Rec(value), codec=codec, settings=SETTINGS, seen=seen, policy=None, decided_at=NOW)
        second = adjudicate(
            Rec(value, offset=1), codec=codec, settings=SETTINGS, seen=seen, policy=None, decided_at=NOW
        )
        assert first.outcome is not None
        assert second.error_class is DeadLetterClass.DUPLICATE_EVENT


class TestProcess:
    def _pipeline(self, producer: FakeProducer) -> tuple[Pipeline, CollectorRegistry]:
        registry = CollectorRegistry()
        policy = default_policy()
        metrics = WorkerMetrics(
            registry, criterion_ids=policy.criterion_ids, reason_codes=policy.reason_codes
        )
        import structlog  # noqa: PLC0415

        pipeline = Pipeline(
            SETTINGS,
            FakeConsumer(),
            lambda: producer,
            Codec(),
            metrics,
            structlog.get_logger(),
            policy=policy,
            clock=lambda: NOW,
        )
        pipeline.producer = producer
        return pipeline, registry

    def test_one_transaction_per_batch_with_offsets_after_the_last_record(self, codec):
        """A batch is sent inside one transaction whose offsets point past each partition's last record."""
        producer = FakeProducer()
        pipeline, registry = self._pipeline(producer)
        tp = TopicPartition("pharmacy.claims", 1)
        batch = {
            tp: [
                Rec(codec.encode_claim(make_claim(event_id=f"e{i}", claim_id=f"c{i}")), offset=i)
                for i in range(3)
            ]
            + [Rec(b"junk", offset=3)]
        }
        report = pipeline.process(batch)
        assert report is not None
        assert producer.calls == ["begin", "offsets:[(1, 4)]", "commit"]
        assert len(producer.sent) == 4
        assert registry.get_sample_value("claims_worker_claims_consumed_total") == 4
        assert registry.get_sample_value("claims_worker_dead_letters_total", {"error_class": "NOT_AVRO"}) == 1

    def test_offsets_going_backwards_are_refused(self, codec):
        """Committing an offset below the last committed one is an invariant violation, not a silent rewind."""
        producer = FakeProducer()
        pipeline, _ = self._pipeline(producer)
        tp = TopicPartition("pharmacy.claims", 1)
        pipeline.process({tp: [Rec(codec.encode_claim(make_claim()), offset=5)]})
        with pytest.raises(Exception, match="offset went back"):
            pipeline.process({tp: [Rec(codec.encode_claim(make_claim(event_id="other")), offset=2)]})

    def test_no_phi_in_log_events_or_metric_labels(self, codec):
        """Sentinel PHI in every outcome's claims appears in no log event, no metric and no result."""
        producer = FakeProducer()
        pipeline, registry = self._pipeline(producer)
        tp = TopicPartition("pharmacy.claims", 1)
        claims = [
            _phi_claim(event_id="a", claim_id="a"),
            _phi_claim(event_id="b", claim_id="b", diagnoses=()),
            _phi_claim(event_id="c", claim_id="c", product={"product_id": "00093747489", "qualifier": "03"}),
            _phi_claim(
                event_id="d", claim_id="d", prescriber={"npi": "1234567893", "taxonomy": "207Q00000X"}
            ),
        ]
        bad = codec.encode_claim(
            {**_phi_claim().model_dump(), "prescriber": {"npi": "1234567890", "taxonomy": None}}
        )
        batch = {
            tp: [Rec(codec.encode_claim(c), offset=i) for i, c in enumerate(claims)]
            + [Rec(bad, offset=len(claims))]
        }
        with capture_logs() as events:
            assert pipeline.process(batch) is not None
        from prometheus_client import generate_latest  # noqa: PLC0415

        texts = [repr(e) for e in events] + [generate_latest(registry).decode()]
        texts += [
            repr(codec.decode_result(v)) for (t, _, _, v, _) in producer.sent if t == SETTINGS.results_topic
        ]
        texts += [
            codec.decode_dead_letter(v)["reason"]
            for (t, _, _, v, _) in producer.sent
            if t == SETTINGS.dead_letter_topic
        ]
        assert len(texts) >= 6
        for text in texts:
            for value in (*PHI, "19370423"):
                assert value not in text
        outcomes = {
            Outcome(codec.decode_result(v)["outcome"])
            for (t, _, _, v, _) in producer.sent
            if t == SETTINGS.results_topic
        }
        assert {Outcome.APPROVED, Outcome.PENDED, Outcome.NOT_APPLICABLE} <= outcomes


class SizeLimitedProducer(FakeProducer):
    """Refuses any value over ``limit`` bytes, as kafka-python does past max_request_size."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def send(self, topic, value=None, key=None, partition=None, headers=None) -> None:
        if value is not None and len(value) > self.limit:
            from kafka.errors import MessageSizeTooLargeError  # noqa: PLC0415

            raise MessageSizeTooLargeError
        super().send(topic, value=value, key=key, partition=partition, headers=headers)


class TestTooLarge:
    def test_an_output_too_large_to_send_becomes_a_small_dead_letter(self, codec):
        """A record whose dead letter exceeds the request size gets a TOO_LARGE dead letter and the batch commits."""
        producer = SizeLimitedProducer(limit=2_000)
        pipeline, registry = TestProcess()._pipeline(producer)
        tp = TopicPartition("pharmacy.claims", 0)
        huge = b"x" * 5_000  # not Avro, and its dead letter would carry all 5,000 bytes
        report = pipeline.process(
            {
                tp: [
                    Rec(huge, offset=0, partition=0),
                    Rec(codec.encode_claim(make_claim()), offset=1, partition=0),
                ]
            }
        )
        assert report is not None
        assert producer.calls[-1] == "commit"
        letters = [
            codec.decode_dead_letter(v)
            for (t, _, _, v, _) in producer.sent
            if t == SETTINGS.dead_letter_topic
        ]
        assert [d["error_class"] for d in letters] == ["TOO_LARGE"]
        assert letters[0]["original_value"] is None
        assert letters[0]["source"] == {"topic": "pharmacy.claims", "partition": 0, "offset": 0}
        assert (
            registry.get_sample_value("claims_worker_dead_letters_total", {"error_class": "TOO_LARGE"}) == 1
        )
        assert report.outcomes == {"APPROVED": 1}


class FlakyConsumer(FakeConsumer):
    """A consumer whose poll fails with a transient Kafka error ``failures`` times, then returns ``batches``."""

    def __init__(self, failures: int, batches: list) -> None:
        self.failures, self.batches, self.polls, self.stop = failures, batches, 0, None

    def subscribe(self, topics, listener=None) -> None:  # noqa: ARG002 - kafka-python's signature
        self.listener = listener

    def poll(self, timeout_ms=0, max_records=None) -> dict:  # noqa: ARG002 - kafka-python's signature
        from kafka.errors import KafkaTimeoutError  # noqa: PLC0415

        self.polls += 1
        if self.polls <= self.failures:
            raise KafkaTimeoutError
        if self.batches:
            return self.batches.pop(0)
        self.stop.set()
        return {}

    def close(self, autocommit=True) -> None:  # noqa: ARG002 - kafka-python's signature
        self.closed = True


def _run_until_drained(consumer, codec, outage_limit_s: str) -> tuple[int, list[FakeProducer]]:
    """Run a real Pipeline loop over ``consumer`` (which sets its ``stop`` when drained); return exit code and producers."""
    import threading  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    settings = load_settings(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_OUTAGE_LIMIT_S": outage_limit_s}
    )
    policy = default_policy()
    metrics = WorkerMetrics(
        CollectorRegistry(), criterion_ids=policy.criterion_ids, reason_codes=policy.reason_codes
    )
    producers: list[FakeProducer] = []

    def factory() -> FakeProducer:
        producers.append(FakeProducer())
        return producers[-1]

    consumer.stop = threading.Event()
    pipeline = Pipeline(settings, consumer, factory, codec, metrics, structlog.get_logger(), policy=policy)
    return pipeline.run(consumer.stop), producers


class TestTransientErrors:
    def _run(self, consumer, outage_limit_s: str) -> tuple[int, list[FakeProducer]]:
        return _run_until_drained(consumer, Codec(), outage_limit_s)

    def test_transient_errors_back_off_recover_and_go_on(self, codec):
        """Two timeouts in a row are retried with a fresh producer, then the batch is processed and committed."""
        tp = TopicPartition("pharmacy.claims", 0)
        batch = {tp: [Rec(codec.encode_claim(make_claim()), offset=0, partition=0)]}
        consumer = FlakyConsumer(failures=2, batches=[batch])
        code, producers = self._run(consumer, outage_limit_s="60")
        assert code == 0
        assert len(producers) == 3, "one producer at start, then a fresh one after each failed pass"
        assert producers[-1].calls[:3] == ["begin", "offsets:[(0, 1)]", "commit"]

    def test_an_outage_longer_than_the_limit_exits_4(self):
        """When the brokers stay unreachable past outage_limit_s the worker stops with exit code 4."""
        code, _ = self._run(FlakyConsumer(failures=10_000, batches=[]), outage_limit_s="1")
        assert code == 4


class TestReadiness:
    def _pipeline(self, connections):
        import structlog  # noqa: PLC0415

        consumer = FakeConsumer()
        consumer.metrics = lambda: {"consumer-metrics": {"connection-count": connections}}
        policy = default_policy()
        metrics = WorkerMetrics(
            CollectorRegistry(), criterion_ids=policy.criterion_ids, reason_codes=policy.reason_codes
        )
        return Pipeline(
            SETTINGS, consumer, FakeProducer, Codec(), metrics, structlog.get_logger(), policy=policy
        )

    def test_not_ready_without_partitions(self):
        """A worker with no assigned partitions is not ready."""
        assert self._pipeline(1.0).readiness()[0] is False

    def test_ready_with_partitions_recent_poll_and_a_connection(self):
        """Assigned partitions, a recent poll and an open broker connection make the worker ready."""
        import time  # noqa: PLC0415

        pipeline = self._pipeline(1.0)
        pipeline._assigned.add(TopicPartition("pharmacy.claims", 0))
        pipeline._last_poll_ok = time.monotonic()
        assert pipeline.readiness() == (True, "1 partitions assigned")

    def test_not_ready_when_no_broker_connection_is_open(self):
        """With every broker connection gone the worker reports not ready, naming why."""
        import time  # noqa: PLC0415

        pipeline = self._pipeline(0.0)
        pipeline._assigned.add(TopicPartition("pharmacy.claims", 0))
        pipeline._last_poll_ok = time.monotonic()
        assert pipeline.readiness() == (False, "no open connection to any broker")


class OutageCodec(Codec):
    """A codec whose schema registry is down for the first ``failures`` decodes."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def decode_claim(self, value):
        from worker.errors import RegistryUnavailable  # noqa: PLC0415

        if self.failures > 0:
            self.failures -= 1
            raise RegistryUnavailable("schema registry unreachable")
        return super().decode_claim(value)


class TestRegistryOutage:
    def _run(self, codec, batches, outage_limit_s):
        return _run_until_drained(FlakyConsumer(failures=0, batches=batches), codec, outage_limit_s)

    def test_a_registry_outage_is_retried_not_dead_lettered(self):
        """While the registry is down the batch is aborted and retried; the claim then gets a result, no dead letter."""
        codec = Codec()
        tp = TopicPartition("pharmacy.claims", 0)
        batch = {tp: [Rec(codec.encode_claim(make_claim()), offset=0, partition=0)]}
        code, producers = self._run(OutageCodec(failures=1), [batch, batch], outage_limit_s="60")
        assert code == 0
        sent = [t for p in producers for (t, *_rest) in p.sent]
        assert SETTINGS.dead_letter_topic not in sent
        assert "abort" in producers[0].calls
        assert producers[-1].calls[-2:] == ["commit", "close"]

    def test_a_registry_outage_past_the_limit_exits_4(self):
        """A registry that stays down past outage_limit_s stops the worker with exit code 4."""
        codec = Codec()
        tp = TopicPartition("pharmacy.claims", 0)
        batch = {tp: [Rec(codec.encode_claim(make_claim()), offset=0, partition=0)]}
        code, _ = self._run(OutageCodec(failures=10_000), [batch] * 100, outage_limit_s="1")
        assert code == 4
