"""The worker's parts and its loop, driven over an in-memory Kafka that models offsets and transactions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import ClassVar

import pytest
import structlog
from kafka import errors as kerrors
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from tests.unit.claims import make_claim
from tests.unit.fakes import CLAIMS, DLQ, RESULTS, FakeCluster, FakeConsumer, FakeProducer, Rec
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import Outcome
from worker.contracts.wire import EVENT_ID_HEADER
from worker.errors import DeadLetterClass, MalformedClaim, RegistryUnavailable
from worker.kafka.failures import ExitCode
from worker.kafka.io import IndefiniteOutcome, Membership, TopicPartition
from worker.ops.metrics import WorkerMetrics
from worker.policy import default_policy
from worker.policy.facts import Facts
from worker.runtime.compose import build_worker
from worker.runtime.judge import Decider, judge
from worker.runtime.route import route
from worker.runtime.session import send_within_limit
from worker.state.dedupe import SeenEvents

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
PHI = ("PHIMEMBER8675309", "ZZPHIFIRST", "ZZPHILAST", "1937-04-23")
CODEC = Codec()
POLICY = default_policy()


def _value(n: int, **overrides) -> bytes:
    return CODEC.encode_claim(make_claim(event_id=f"e{n}", claim_id=f"c{n}", **overrides))


class Harness:
    """A worker built by the composition root over a ``FakeCluster``; ``run`` drives it until drained."""

    def __init__(self, cluster: FakeCluster, fault=None, **env: str) -> None:
        self.cluster = cluster
        self.settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env})
        self.stop = threading.Event()
        self.consumer = FakeConsumer(cluster, self.stop, fetch_records=self.settings.batch_max_records)
        self.producers: list[FakeProducer] = []
        self.faults: list[dict] = []  # per producer, in creation order
        self.registry = CollectorRegistry()
        # What the group coordinator answers when asked whether the slot is still ours, one per ask
        # (the last one repeats); the worker asks before replacing its producer and when it is fenced.
        self.membership: list[Membership] = [Membership.OURS]
        self.membership_asked = 0
        self.worker = build_worker(
            self.settings,
            consumer=self.consumer,
            producer_factory=self._producer,
            codec=CODEC,
            registry=self.registry,
            log=structlog.get_logger(),
            readback=cluster.read_back,
            clock=lambda: NOW,
            claims_partitions=len(cluster.logs),
            membership=self._membership,
            fault=fault,
        )
        self.worker.backoff_s = (0.01, 0.05)

    def _membership(self) -> Membership:
        self.membership_asked += 1
        return self.membership.pop(0) if len(self.membership) > 1 else self.membership[0]

    def _producer(self) -> FakeProducer:
        faults = self.faults[len(self.producers)] if len(self.producers) < len(self.faults) else {}
        producer = FakeProducer(self.cluster, faults)
        self.producers.append(producer)
        return producer

    def run(self, limit_s: float = 10.0) -> int:
        """Run the worker until the cluster is drained; fail (not hang) if it never drains."""
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.setdefault("code", self.worker.run(self.stop)))
        thread.start()
        thread.join(limit_s)
        if thread.is_alive():
            self.stop.set()
            thread.join()
            pytest.fail("the worker never drained the input (records lost or stuck)")
        return result["code"]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def _exactly_once(cluster: FakeCluster) -> list[tuple[int, int]]:
    """Assert every input record has exactly one committed output; return the (partition, offset) list."""
    sources = []
    for out in cluster.published:
        decoded = (
            CODEC.decode_result(out.value) if out.topic == RESULTS else CODEC.decode_dead_letter(out.value)
        )
        sources.append((decoded["source"]["partition"], decoded["source"]["offset"]))
    expected = [(p, r.offset) for p, log in cluster.logs.items() for r in log]
    assert sorted(sources) == sorted(expected), "every input once, none twice"
    return sources


def _dead_letter_classes(cluster: FakeCluster) -> list[str]:
    return [CODEC.decode_dead_letter(d.value)["error_class"] for d in cluster.dead_letters()]


class TestJudgeAndRoute:
    def test_good_claim_becomes_a_result_on_the_same_partition(self):
        """A decodable claim yields a result keyed by claim id, on the input's partition, with the event id header."""
        claim = make_claim()
        judgement = judge(
            Rec(CODEC.encode_claim(claim), partition=3),
            codec=CODEC,
            seen=SeenEvents(10),
            decided_at=NOW,
            decider=Decider(POLICY),
        )
        out = route(judgement, codec=CODEC, settings=SETTINGS, at=NOW)
        assert (out.topic, out.partition, out.key) == (SETTINGS.results_topic, 3, claim.claim_id.encode())
        assert (EVENT_ID_HEADER, claim.event_id.encode()) in out.headers
        assert out.event_id == claim.event_id
        assert CODEC.decode_result(out.value)["source"] == {"topic": CLAIMS, "partition": 3, "offset": 0}

    def test_poison_becomes_a_dead_letter_with_original_bytes(self):
        """Undecodable bytes go to the dead-letter topic untouched, with their error class and no event id."""
        judgement = judge(
            Rec(b"garbage", key=b"orig"),
            codec=CODEC,
            seen=SeenEvents(10),
            decided_at=NOW,
            decider=Decider(POLICY),
        )
        out = route(judgement, codec=CODEC, settings=SETTINGS, at=NOW)
        letter = CODEC.decode_dead_letter(out.value)
        assert out.topic == SETTINGS.dead_letter_topic
        assert (letter["original_key"], letter["original_value"]) == (b"orig", b"garbage")
        assert (out.error_class, out.event_id) == (DeadLetterClass.NOT_AVRO, None)

    def test_judge_reads_the_filter_but_never_stages(self):
        """judge is pure: a staged id makes a duplicate, but judging itself stages nothing."""
        seen = SeenEvents(10)
        value = CODEC.encode_claim(make_claim())
        first = judge(Rec(value), codec=CODEC, seen=seen, decided_at=NOW, decider=Decider(POLICY))
        assert first.error is None
        assert seen.snapshot(0) == []
        seen.stage(0, make_claim().event_id)
        second = judge(Rec(value, offset=1), codec=CODEC, seen=seen, decided_at=NOW, decider=Decider(POLICY))
        assert second.error is not None
        assert second.error.error_class is DeadLetterClass.DUPLICATE_EVENT

    def test_facts_are_looked_up_once_per_claim(self):
        """judge asks lookup_facts for each decodable claim (the seam for the prescriber directory)."""
        asked = []

        def lookup(claim):
            asked.append(claim.claim_id)
            return Facts()

        judge(
            Rec(_value(1)),
            codec=CODEC,
            seen=SeenEvents(10),
            decided_at=NOW,
            decider=Decider(POLICY, lookup_facts=lookup),
        )
        judge(
            Rec(b"junk"),
            codec=CODEC,
            seen=SeenEvents(10),
            decided_at=NOW,
            decider=Decider(POLICY, lookup_facts=lookup),
        )
        assert asked == ["c1"]

    def test_malformed_claim_is_answered_with_a_rejected_result(self):
        """A MalformedClaim naming its claim id becomes a REJECTED result (reject 25) on the results topic."""
        from worker.runtime.judge import Judgement  # noqa: PLC0415

        error = MalformedClaim(
            "prescriber.npi: bad check digit",
            claim_id="c1",
            event_id="e1",
            transaction_code="B1",
            fields=("prescriber.npi",),
            reject_codes=("25",),
        )
        out = route(Judgement(Rec(b"x"), error=error, policy=POLICY), codec=CODEC, settings=SETTINGS, at=NOW)
        assert (out.topic, out.outcome, out.event_id) == (SETTINGS.results_topic, Outcome.REJECTED, "e1")
        assert CODEC.decode_result(out.value)["reject_codes"] == ["25"]


class TestBatches:
    def test_one_transaction_per_batch_with_offsets_after_the_last_record(self):
        """A batch is sent inside one transaction whose offsets point past each partition's last record."""
        cluster = FakeCluster()
        for i in range(3):
            cluster.append(0, _value(i))
        cluster.append(0, b"junk")
        h = Harness(cluster)
        assert h.run() == ExitCode.OK
        assert h.producers[0].calls.count("commit") == 1
        assert cluster.committed[TopicPartition(CLAIMS, 0)] == 4
        _exactly_once(cluster)
        assert h.metric("claims_worker_claims_consumed_total") == 4
        assert h.metric("claims_worker_dead_letters_total", error_class="NOT_AVRO") == 1

    def test_duplicates_in_a_batch_and_across_batches_are_dead_lettered(self):
        """The same event id twice in a batch, and again in a later batch, gets one result and two dead letters."""
        cluster = FakeCluster()
        for _ in range(3):
            cluster.append(0, _value(7))
        h = Harness(cluster, CLAIMS_BATCH_MAX_RECORDS="2")
        assert h.run() == ExitCode.OK
        _exactly_once(cluster)
        assert len(cluster.results()) == 1
        assert _dead_letter_classes(cluster) == ["DUPLICATE_EVENT", "DUPLICATE_EVENT"]

    def test_no_phi_in_log_events_or_metric_labels(self):
        """Sentinel PHI in every outcome's claims appears in no log event, no metric and no result."""
        patient = {"member_id": PHI[0], "first_name": PHI[1], "last_name": PHI[2], "date_of_birth": PHI[3]}
        claims = [
            make_claim(event_id="a", claim_id="a", patient=patient),
            make_claim(event_id="b", claim_id="b", patient=patient, dx=()),
            make_claim(event_id="c", claim_id="c", patient=patient, ndc="00093747489"),
            make_claim(event_id="d", claim_id="d", patient=patient, taxonomy="207Q00000X"),
        ]
        cluster = FakeCluster()
        for claim in claims:
            cluster.append(0, CODEC.encode_claim(claim))
        bad = {
            **make_claim(patient=patient).model_dump(),
            "prescriber": {"npi": "1234567890", "taxonomy": None},
        }
        cluster.append(0, CODEC.encode_claim(bad))
        h = Harness(cluster, CLAIMS_LOG_LEVEL="DEBUG")
        with capture_logs() as events:
            assert h.run() == ExitCode.OK
        texts = [repr(e) for e in events] + [generate_latest(h.registry).decode()]
        texts += [repr(CODEC.decode_result(r.value)) for r in cluster.results()]
        texts += [CODEC.decode_dead_letter(d.value)["reason"] for d in cluster.dead_letters()]
        assert len(texts) >= 6
        for text in texts:
            for value in (*PHI, "19370423"):
                assert value not in text
        outcomes = {Outcome(CODEC.decode_result(r.value)["outcome"]) for r in cluster.results()}
        assert {Outcome.APPROVED, Outcome.PENDED, Outcome.NOT_APPLICABLE} <= outcomes

    def test_metrics_are_counted_per_batch(self):
        """Outcome counters add up over a batch: three approvals in one batch count 3."""
        cluster = FakeCluster()
        for i in range(3):
            cluster.append(0, _value(i))
        h = Harness(cluster)
        assert h.run() == ExitCode.OK
        assert h.metric("claims_worker_results_total", outcome="APPROVED") == 3
        assert h.metric("claims_worker_transactions_total", result="committed") == 1

    def test_lag_seconds_is_the_age_of_the_oldest_undecided_record_and_0_once_drained(self, monkeypatch):
        """Polled: the first record's age; after a commit with records left: the last decided one's; drained: 0."""
        cluster = FakeCluster()
        now_ms = int(NOW.timestamp() * 1000)
        for i, waited_s in enumerate((120, 90, 60, 30)):
            cluster.append(0, _value(i), timestamp=now_ms - waited_s * 1000)
        seen: list[float] = []
        original = WorkerMetrics.set_lag_seconds

        def spy(metrics: WorkerMetrics, partition: int, seconds: float) -> None:
            seen.append(seconds)
            original(metrics, partition, seconds)

        monkeypatch.setattr(WorkerMetrics, "set_lag_seconds", spy)
        h = Harness(cluster, CLAIMS_BATCH_MAX_RECORDS="2", CLAIMS_COMMIT_INTERVAL_MS="0")
        # The gauges are refreshed at most once a second on a pass (and after every commit): refresh on
        # every pass here, so the sequence does not depend on how fast the machine is.
        h.consumer.on_poll = lambda _consumer: setattr(h.worker, "_lag_updated", 0.0)
        assert h.run() == ExitCode.OK
        shown = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
        # 120: records 0-1 polled, not committed; 90: they are committed, record 1 the last decided;
        # 60: records 2-3 polled; 0: drained. Before the first poll nothing is known: no value at all.
        assert shown == [120, 90, 60, 0], seen
        assert h.metric("claims_worker_consumer_lag_seconds", partition="0") == 0

    def test_ncpdp_reject_codes_are_counted_per_code(self):
        """A PENDED claim (no diagnosis) and a REJECTED one (bad NPI) add their 511-FB codes to the reject counter."""
        cluster = FakeCluster()
        cluster.append(0, _value(1, diagnoses=[]))
        bad = make_claim(event_id="e2", claim_id="c2").model_dump()
        bad["prescriber"]["npi"] = "1234567890"
        cluster.append(0, CODEC.encode_claim(bad))
        h = Harness(cluster)
        assert h.run() == ExitCode.OK
        results = {CODEC.decode_result(r.value)["claim_id"]: r for r in cluster.results()}
        sent = [code for r in results.values() for code in CODEC.decode_result(r.value)["reject_codes"]]
        assert "25" in sent
        assert len(sent) >= 2
        for code in set(sent):
            assert h.metric("claims_worker_ncpdp_rejects_total", reject_code=code) == sent.count(code), code
        assert h.metric("claims_worker_ncpdp_rejects_total", reject_code="OTHER") == 0


class TestTooLarge:
    def test_an_output_too_large_to_send_becomes_a_small_dead_letter_and_is_not_remembered(self):
        """A result too large to send becomes a TOO_LARGE dead letter; its event id does not enter the filter."""
        cluster = FakeCluster()
        cluster.append(0, _value(1))
        cluster.append(0, _value(2))
        h = Harness(cluster)
        h.faults = [{}]
        limit = {"n": 0}

        def on_poll(consumer):
            if limit["n"] == 0 and h.producers:
                h.producers[0].limit = 300  # a result is ~460 bytes; the small dead letter fits
                limit["n"] = 1

        h.consumer.on_poll = on_poll
        assert h.run() == ExitCode.OK
        _exactly_once(cluster)
        letters = [CODEC.decode_dead_letter(d.value) for d in cluster.dead_letters()]
        assert {d["error_class"] for d in letters} == {"TOO_LARGE"}
        assert all(d["original_value"] is None for d in letters)
        assert not h.worker.seen.seen(0, "e1")
        assert not h.worker.seen.seen(0, "e2")

    def test_send_within_limit_adds_the_callers_headers_and_passes_other_errors_on(self):
        """The shared send: too large becomes the dead letter (with the given headers); any other send error is raised."""
        settings = load_settings({})
        record = Rec(b"\x00" * 2000, offset=7)
        big = route(
            judge(record, codec=CODEC, seen=SeenEvents(0), decided_at=NOW, decider=Decider(default_policy())),
            codec=CODEC,
            settings=settings,
            at=NOW,
        )
        sent: list = []

        def send(out):
            if len(out.value) > 1500:
                raise kerrors.MessageSizeTooLargeError
            sent.append(out)

        out = send_within_limit(
            send, big, record, codec=CODEC, settings=settings, at=NOW, headers=[("h", b"v")]
        )
        assert sent == [out]
        assert out.error_class is DeadLetterClass.TOO_LARGE
        assert out.topic == settings.dead_letter_topic
        assert ("h", b"v") in out.headers
        assert CODEC.decode_dead_letter(out.value)["original_value"] is None

        def refuse(_out):
            raise kerrors.KafkaTimeoutError

        with pytest.raises(kerrors.KafkaTimeoutError):
            send_within_limit(refuse, big, record, codec=CODEC, settings=settings, at=NOW)


class TestRecovery:
    """Aborts, producer replacements and revokes: every record exactly once, the filter in step."""

    def _cluster(self, n: int = 4) -> FakeCluster:
        cluster = FakeCluster()
        for i in range(n):
            cluster.append(0, _value(i))
        return cluster

    def test_an_aborted_batch_is_rewound_and_comes_again(self):
        """A commit that fails with an abortable error aborts the batch, rewinds, and the batch is published once."""
        cluster = self._cluster()
        h = Harness(cluster)
        h.faults = [{"commit": [kerrors.KafkaError("abortable")]}]
        assert h.run() == ExitCode.OK
        assert "abort" in h.producers[0].calls
        _exactly_once(cluster)
        assert len(cluster.results()) == 4, "the retried batch gets results, not DUPLICATE_EVENT"

    def test_an_abort_forgets_the_batch_ids(self):
        """After an aborted batch its event ids are not remembered, so the retry is not dead-lettered."""
        cluster = self._cluster(2)
        h = Harness(cluster)
        h.faults = [{"offsets": [kerrors.CommitFailedError()]}]
        assert h.run() == ExitCode.OK
        assert _dead_letter_classes(cluster) == []
        assert sorted(h.worker.seen.snapshot(0)) == ["e0", "e1"]

    def test_an_indefinite_commit_replaces_the_producer_and_rewinds(self):
        """A commit with an unknown outcome (that did not land) replaces the producer and replays the batch."""
        cluster = self._cluster()
        h = Harness(cluster)
        h.faults = [{"commit": [IndefiniteOutcome("commit_transaction did not complete")]}]
        assert h.run() == ExitCode.OK
        assert len(h.producers) == 2
        _exactly_once(cluster)
        assert h.metric("claims_worker_producer_recreations_total") == 1

    def test_a_replacement_rereads_the_filter_from_the_results(self):
        """A commit that landed but reported an unknown outcome: after the replacement, a redelivery is a duplicate."""
        cluster = self._cluster(2)
        h = Harness(cluster)

        def scenario(consumer):
            if consumer.polls == 1:
                h.producers[0].commit_lands_then_raise.append(IndefiniteOutcome("commit: outcome unknown"))
            if len(h.producers) == 2 and len(cluster.logs[0]) == 2:
                cluster.append(0, _value(1))  # the same event again, after the replacement

        h.consumer.on_poll = scenario
        assert h.run() == ExitCode.OK
        assert len(h.producers) == 2
        _exactly_once(cluster)
        assert len(cluster.results()) == 2
        assert _dead_letter_classes(cluster) == ["DUPLICATE_EVENT"]

    def test_a_revoke_forgets_the_partition_so_a_reassignment_reads_it_back(self):
        """While a partition was away another worker published an event; back here, its redelivery is a duplicate."""
        cluster = self._cluster(1)
        h = Harness(cluster)
        tp = TopicPartition(CLAIMS, 0)
        step = {"n": 0}

        def elsewhere(consumer):
            if step["n"] == 0 and cluster.committed.get(tp) == 1:
                step["n"] = 1
                consumer.rebalance(set())  # revoked; meanwhile another worker decides e9 (offset 1)
                cluster.append(0, _value(9))
                cluster.append(0, _value(9))  # ... which is then redelivered (offset 2)
                other = FakeProducer(cluster)
                other.begin_transaction()
                other.send(RESULTS, value=b"x", key=b"c9", partition=0, headers=[(EVENT_ID_HEADER, b"e9")])
                other.offsets = {tp: 2}
                other.commit_transaction()
            elif step["n"] == 1 and not consumer.assignment():
                step["n"] = 2
                consumer.rebalance({0})  # back to this worker

        h.consumer.on_poll = elsewhere
        assert h.run() == ExitCode.OK
        mine = [p for p in cluster.published if p.value != b"x"]
        assert [CODEC.decode_dead_letter(d.value)["error_class"] for d in mine if d.topic == DLQ] == [
            "DUPLICATE_EVENT"
        ]

    def test_a_partition_added_while_running_is_served(self):
        """Partitions added to all three topics while running are assigned, restored and processed, no crash."""
        cluster = self._cluster(2)
        h = Harness(cluster)
        grown = {"done": False}

        def grow(consumer):
            if not grown["done"] and cluster.committed.get(TopicPartition(CLAIMS, 0)) == 2:
                grown["done"] = True
                cluster.add_partitions(2)
                cluster.append(1, _value(50))
                consumer.rebalance({0, 1})

        h.consumer.on_poll = grow
        assert h.run() == ExitCode.OK
        _exactly_once(cluster)
        assert len(h.producers) == 2, "a fresh producer learns the new output partitions"

    def test_output_topics_too_small_after_growth_exit_2(self):
        """When the claims topic outgrows the output topics, the worker stops with exit 2 naming the topic."""
        cluster = self._cluster(1)
        h = Harness(cluster)

        def grow(consumer):
            if cluster.committed.get(TopicPartition(CLAIMS, 0)) == 1 and len(cluster.logs) == 1:
                cluster.add_partitions(2, outputs=1)
                cluster.append(1, _value(50))
                consumer.rebalance({0, 1})

        h.consumer.on_poll = grow
        with capture_logs() as events:
            assert h.run() == ExitCode.BAD_SETTINGS
        line = next(e for e in events if e["event"] == "bad_settings")
        assert RESULTS in line["message"]


class TestTransactionsOverPolls:
    """One transaction spans several polls; a rebalance or a failure ends it without losing or doubling."""

    LONG: ClassVar[dict[str, str]] = {"CLAIMS_BATCH_MAX_RECORDS": "2", "CLAIMS_COMMIT_INTERVAL_MS": "30000"}

    @staticmethod
    def _cluster(partitions: int, per_partition: int) -> FakeCluster:
        cluster = FakeCluster(partitions)
        for p in range(partitions):
            for i in range(per_partition):
                cluster.append(p, _value(p * 100 + i))
        return cluster

    def test_several_polls_commit_in_one_transaction(self):
        """Three polls of two records commit once, when the next poll comes back empty, with offsets past all six."""
        cluster = self._cluster(1, 6)
        h = Harness(cluster, **self.LONG)
        assert h.run() == ExitCode.OK
        assert h.consumer.polls >= 4
        assert h.producers[0].calls.count("begin") == 1
        assert h.producers[0].calls.count("commit") == 1
        assert cluster.committed[TopicPartition(CLAIMS, 0)] == 6
        _exactly_once(cluster)

    def test_transaction_max_records_bounds_a_transaction(self):
        """With at most four records per transaction, polls of two records commit after every second poll."""
        cluster = self._cluster(1, 8)
        h = Harness(cluster, CLAIMS_TRANSACTION_MAX_RECORDS="4", **self.LONG)
        assert h.run() == ExitCode.OK
        assert h.producers[0].calls.count("commit") == 2
        _exactly_once(cluster)

    def test_a_poll_asks_for_the_room_left_in_the_transaction(self):
        """Over several polls each poll may take what the transaction has room for (so kafka-python's buffer drains)."""
        cluster = self._cluster(1, 6)
        h = Harness(cluster, CLAIMS_TRANSACTION_MAX_RECORDS="5", **self.LONG)
        assert h.run() == ExitCode.OK
        asked = h.consumer.max_records_asked
        # Empty polls while the partition's state loads ask for 5; then 5 - 2 after a poll of two, then 5 - 4.
        room = [n for n in asked if n != 5]
        assert room[:2] == [3, 1], asked
        _exactly_once(cluster)

    def test_zero_interval_commits_every_poll(self):
        """CLAIMS_COMMIT_INTERVAL_MS=0 keeps the old behaviour: one transaction per poll."""
        cluster = self._cluster(1, 6)
        h = Harness(cluster, CLAIMS_BATCH_MAX_RECORDS="2", CLAIMS_COMMIT_INTERVAL_MS="0")
        assert h.run() == ExitCode.OK
        assert h.producers[0].calls.count("commit") == 3
        assert set(h.consumer.max_records_asked) == {2}, "each poll is capped by CLAIMS_BATCH_MAX_RECORDS"
        _exactly_once(cluster)

    def test_an_abort_after_several_polls_undoes_them_all(self):
        """A failed commit of a three-poll transaction aborts it; the retry publishes all six once, no duplicates."""
        cluster = self._cluster(1, 6)
        h = Harness(cluster, **self.LONG)
        h.faults = [{"commit": [kerrors.KafkaError("abortable")]}]
        assert h.run() == ExitCode.OK
        calls = h.producers[0].calls
        assert calls.count("send") >= 12, "the six records were sent twice: once aborted, once committed"
        assert "abort" in calls
        _exactly_once(cluster)
        assert len(cluster.results()) == 6
        assert _dead_letter_classes(cluster) == []
        assert sorted(h.worker.seen.snapshot(0)) == sorted(f"e{i}" for i in range(6))

    def test_a_revoke_of_a_held_partition_mid_transaction_aborts_and_rewinds(self):
        """Partition 0, whose records the open transaction holds, is revoked inside a poll: abort, nothing doubled."""
        cluster = self._cluster(2, 4)
        h = Harness(cluster, **self.LONG)
        tp0 = TopicPartition(CLAIMS, 0)
        step = {"n": 0}

        def revoke(consumer):
            if step["n"] == 0 and h.worker.in_transaction and consumer.positions.get(tp0) == 4:
                step["n"] = 1
                consumer.rebalance({1})  # partition 0 goes (to another member) while its records are sent
            elif step["n"] == 1 and tp0 not in consumer.assignment() and not h.worker.in_transaction:
                step["n"] = 2
                consumer.rebalance({0, 1})  # and comes back later

        h.consumer.on_poll = revoke
        with capture_logs() as events:
            assert h.run() == ExitCode.OK
        assert step["n"] == 2
        assert "abort" in h.producers[0].calls
        assert any(
            e["event"] == "transaction_aborted_for_rebalance" and e["partitions"] == [0] for e in events
        )
        _exactly_once(cluster)
        assert len(cluster.results()) == 8
        assert _dead_letter_classes(cluster) == [], (
            "the aborted ids were unstaged, so the retry is no duplicate"
        )

    def test_a_revoke_of_a_partition_the_transaction_does_not_hold_keeps_it_open(self):
        """Revoking partition 1 while the open transaction holds only partition 0's records does not abort it."""
        cluster = self._cluster(2, 0)
        for i in range(4):
            cluster.append(0, _value(i))  # partition 1 stays empty until it is back
        h = Harness(cluster, **self.LONG)
        step = {"n": 0}
        tp0 = TopicPartition(CLAIMS, 0)

        def revoke(consumer):
            # After the first poll the open transaction holds records of partition 0 only.
            if step["n"] == 0 and h.worker.in_transaction and consumer.positions.get(tp0) == 2:
                step["n"] = 1
                consumer.rebalance({0})
            elif step["n"] == 1 and not h.worker.in_transaction:
                step["n"] = 2
                for i in range(4):
                    cluster.append(1, _value(100 + i))
                consumer.rebalance({0, 1})

        h.consumer.on_poll = revoke
        assert h.run() == ExitCode.OK
        assert step["n"] == 2
        assert "abort" not in h.producers[0].calls
        _exactly_once(cluster)

    def test_a_fence_recorded_in_the_background_exits_3_not_abort(self):
        """A bare 'error state' KafkaError over a recorded fence is read as the fence: a twin holds the slot, so exit 3.

        Without ``recorded_error`` the bare error would be taken as abortable and the producer replaced,
        fencing the newer instance that now owns the slot.
        """
        cluster = self._cluster(1, 2)
        h = Harness(cluster)
        h.membership = [Membership.FENCED]  # the coordinator says another process joined on this slot
        h.faults = [{"commit": [kerrors.KafkaError("Cannot execute transactional method: error state")]}]

        def fenced_in_background(consumer):
            if h.producers and consumer.polls == 1:
                manager = type("Manager", (), {"last_error": kerrors.ProducerFencedError})()
                h.producers[0]._transaction_manager = manager

        h.consumer.on_poll = fenced_in_background
        assert h.run() == ExitCode.FENCED
        assert len(h.producers) == 1, "no replacement: it would fence the newer instance"
        assert "abort" not in h.producers[0].calls

    def test_a_stop_commits_the_open_transaction(self):
        """A stop request while a transaction is open commits what was sent before the loop ends."""
        cluster = self._cluster(1, 6)
        h = Harness(cluster, **self.LONG)

        tp0 = TopicPartition(CLAIMS, 0)

        def stop_during_second_data_poll(consumer):
            if h.worker.in_transaction and consumer.positions.get(tp0) == 2:
                h.stop.set()  # this poll still returns records 2 and 3, then the loop ends

        h.consumer.on_poll = stop_during_second_data_poll
        assert h.run() == ExitCode.OK
        assert cluster.committed[TopicPartition(CLAIMS, 0)] == 4
        assert sorted(CODEC.decode_result(r.value)["source"]["offset"] for r in cluster.results()) == [
            0,
            1,
            2,
            3,
        ]


class TestFailures:
    """Each kind of failure ends as the taxonomy says."""

    def _one(self, **faults) -> tuple[Harness, int, list[dict]]:
        cluster = FakeCluster()
        cluster.append(0, _value(1))
        h = Harness(cluster, CLAIMS_OUTAGE_LIMIT_S="0.3")
        h.faults = [faults]
        with capture_logs() as events:
            code = h.run()
        return h, code, events

    def test_transient_errors_back_off_recover_and_go_on(self):
        """Two poll timeouts are retried with backoff on the same producer (no transaction was open)."""
        cluster = FakeCluster()
        cluster.append(0, _value(1))
        h = Harness(cluster, CLAIMS_OUTAGE_LIMIT_S="60")
        h.consumer.poll_errors = [kerrors.KafkaTimeoutError(), kerrors.KafkaTimeoutError()]
        assert h.run() == ExitCode.OK
        assert len(h.producers) == 1  # a new producer would fence a newer twin on the same slot
        _exactly_once(cluster)

    def test_an_outage_longer_than_the_limit_exits_4(self):
        """Polls that keep timing out past outage_limit_s stop the worker with exit 4."""
        cluster = FakeCluster()
        h = Harness(cluster, CLAIMS_OUTAGE_LIMIT_S="0.2")
        h.consumer.poll_errors = [kerrors.KafkaTimeoutError() for _ in range(10_000)]
        assert h.run() == ExitCode.UNREACHABLE

    def test_an_abortable_error_that_keeps_coming_back_exits_4_without_a_hot_loop(self):
        """An abortable commit error on every try counts against the outage limit and is retried with backoff."""
        h, code, events = self._one(commit=[kerrors.KafkaError("abortable") for _ in range(10_000)])
        assert code == ExitCode.UNREACHABLE
        attempts = h.producers[0].calls.count("commit")
        assert 2 <= attempts < 30, f"{attempts} commits in 0.3 s: backoff must space them"
        assert any(e["event"] == "outage_limit_reached" for e in events)

    def test_topic_authorization_failure_exits_5_naming_the_topic(self):
        """A missing write ACL on the results topic exits 5 at once with a message naming the topic."""
        h, code, events = self._one(commit=[kerrors.TopicAuthorizationFailedError({RESULTS})])
        assert code == ExitCode.NOT_AUTHORIZED
        line = next(e for e in events if e["event"] == "not_authorized")
        assert RESULTS in line["message"]
        assert h.producers[0].calls.count("commit") == 1, "not retried"

    def test_transactional_id_authorization_failure_is_not_called_fenced(self):
        """A transactional-id authorization failure exits 5, logged as not_authorized naming the id."""
        _, code, events = self._one(begin=[kerrors.TransactionalIdAuthorizationFailedError()])
        assert code == ExitCode.NOT_AUTHORIZED
        names = [e["event"] for e in events]
        assert "producer_fenced" not in names
        line = next(e for e in events if e["event"] == "not_authorized")
        assert SETTINGS.transactional_id in line["message"]

    def test_group_authorization_failure_exits_5_naming_the_group(self):
        """A missing group ACL exits 5 naming the consumer group."""
        _, code, events = self._one(offsets=[kerrors.GroupAuthorizationFailedError("claims-worker")])
        assert code == ExitCode.NOT_AUTHORIZED
        assert SETTINGS.group_id in next(e for e in events if e["event"] == "not_authorized")["message"]

    def _fenced(self, membership: list[Membership], **faults) -> tuple[Harness, int, list[dict]]:
        cluster = FakeCluster()
        for n in range(3):
            cluster.append(0, _value(n))
        h = Harness(cluster, CLAIMS_OUTAGE_LIMIT_S="5")
        h.membership = membership
        h.faults = [faults]
        with capture_logs() as events:
            code = h.run()
        return h, code, events

    def test_a_fenced_producer_whose_slot_a_twin_took_exits_3_without_a_new_producer(self):
        """Fenced while the group says a twin holds the slot: exit 3 naming the slot, and no init_transactions."""
        h, code, events = self._fenced([Membership.FENCED], commit=[kerrors.ProducerFencedError()])
        assert code == ExitCode.FENCED
        line = next(e for e in events if e["event"] == "member_fenced")
        assert "CLAIMS_INSTANCE" in line["message"]
        assert len(h.producers) == 1, "a new producer would fence the twin that owns the slot"
        assert h.cluster.published == []

    @pytest.mark.parametrize("error", [kerrors.ProducerFencedError, kerrors.InvalidProducerEpochError])
    def test_a_producer_fenced_by_the_broker_while_the_slot_is_ours_gets_a_fresh_producer(self, error):
        """The broker's own fence (a timed-out transaction's epoch bump) with the slot still ours: a new producer, no exit 3."""
        h, code, events = self._fenced([Membership.OURS], commit=[error()])
        assert code == ExitCode.OK
        assert len(h.producers) == 2
        assert "producer_fenced_slot_ours" in [e["event"] for e in events]
        assert h.membership_asked >= 2, "asked when fenced and again right before the new producer"
        _exactly_once(h.cluster)

    def test_an_unanswered_slot_check_waits_and_asks_again_before_any_new_producer(self):
        """No answer from the group coordinator: no new producer until a later ask says the slot is ours."""
        h, code, events = self._fenced(
            [Membership.UNKNOWN, Membership.UNKNOWN, Membership.UNKNOWN, Membership.OURS],
            commit=[kerrors.ProducerFencedError()],
        )
        assert code == ExitCode.OK
        assert h.membership_asked >= 4
        assert len(h.producers) == 2
        assert [e["error"] for e in events if e["event"] == "kafka_transient"].count("SlotUnconfirmed") >= 2
        _exactly_once(h.cluster)

    def test_a_replacement_after_an_unknown_outcome_exits_3_when_a_twin_took_the_slot(self):
        """A commit with an unknown outcome would replace the producer, but a twin holds the slot: exit 3 instead."""
        h, code, events = self._fenced([Membership.FENCED], commit=[IndefiniteOutcome("commit timed out")])
        assert code == ExitCode.FENCED
        assert len(h.producers) == 1
        assert "member_fenced" in [e["event"] for e in events]

    def test_the_first_producer_is_made_without_asking_the_group(self):
        """A process that just started is the newest on its slot: its first producer needs no membership check."""
        h, code, _ = self._fenced([Membership.FENCED])
        assert code == ExitCode.OK
        assert h.membership_asked == 0
        _exactly_once(h.cluster)

    def test_a_fenced_static_member_exits_3_naming_the_slot(self):
        """Another live process with our instance slot fences the static member: exit 3 naming the slot."""
        cluster = FakeCluster()
        h = Harness(cluster)
        h.consumer.poll_errors = [kerrors.FencedInstanceIdError()]
        with capture_logs() as events:
            assert h.run() == ExitCode.FENCED
        line = next(e for e in events if e["event"] == "member_fenced")
        assert "CLAIMS_INSTANCE" in line["message"]

    def test_an_unsupported_version_exits_6(self):
        """A broker too old for transactions exits 6."""
        _, code, _ = self._one(begin=[kerrors.UnsupportedVersionError()])
        assert code == ExitCode.UNSUPPORTED_VERSION

    def test_an_internal_error_exits_70_with_record_coordinates_only(self):
        """An unexpected exception exits 70 with one log line naming its type and the record's coordinates."""

        class Broken(Codec):
            def decode_claim(self, value, key=None):  # noqa: ARG002 - the codec's signature
                raise ZeroDivisionError

        cluster = FakeCluster()
        cluster.append(0, _value(1))
        h = Harness(cluster)
        h.worker.codec = Broken()
        with capture_logs() as events:
            assert h.run() == ExitCode.INTERNAL
        line = next(e for e in events if e["event"] == "internal_error")
        assert (line["error"], line["topic"], line["partition"], line["offset"]) == (
            "ZeroDivisionError",
            CLAIMS,
            0,
            0,
        )

    def test_a_registry_outage_is_retried_not_dead_lettered(self):
        """While the registry is down the batch is aborted and retried; the claim then gets a result."""

        class Outage(Codec):
            failures = 1

            def decode_claim(self, value, key=None):
                if self.failures:
                    self.failures -= 1
                    raise RegistryUnavailable("schema registry unreachable")
                return super().decode_claim(value, key)

        cluster = FakeCluster()
        cluster.append(0, _value(1))
        h = Harness(cluster)
        h.worker.codec = Outage()
        assert h.run() == ExitCode.OK
        assert cluster.dead_letters() == []
        assert "abort" in h.producers[0].calls
        _exactly_once(cluster)

    def test_stop_during_a_backoff_ends_the_run_with_exit_0(self):
        """A stop request while the worker waits out a long backoff ends the run cleanly."""
        cluster = FakeCluster()
        h = Harness(cluster, CLAIMS_OUTAGE_LIMIT_S="600")
        h.worker.backoff_s = (3600.0, 3600.0)

        def fail_then_stop(consumer):
            h.stop.set()  # SIGTERM arrives; the hour-long backoff must not be waited out
            raise kerrors.KafkaTimeoutError

        h.consumer.on_poll = fail_then_stop
        assert h.run() == ExitCode.OK
        assert h.consumer.closed


class TestReadiness:
    def _worker(self, connections: float):
        cluster = FakeCluster()
        h = Harness(cluster)
        h.consumer.metrics = lambda: {"consumer-metrics": {"connection-count": connections}}
        return h.worker

    def test_not_ready_before_the_first_poll(self):
        """A worker that has not polled the group yet is not ready."""
        assert self._worker(1.0).readiness() == (False, "not yet polled the group")

    def test_an_idle_member_with_no_partitions_is_ready(self):
        """A polling group member with no partitions is ready: a rollout must not stall on a spare replica."""
        import time  # noqa: PLC0415

        worker = self._worker(1.0)
        worker._last_poll_ok = time.monotonic()
        assert worker.readiness() == (True, "no partitions assigned (idle group member)")

    def test_ready_with_partitions_recent_poll_and_a_connection(self):
        """Assigned partitions, a recent poll and an open broker connection make the worker ready."""
        import time  # noqa: PLC0415

        worker = self._worker(1.0)
        worker.partitions.assigned.add(TopicPartition(CLAIMS, 0))
        worker._last_poll_ok = time.monotonic()
        assert worker.readiness() == (True, "1 partitions assigned")

    def test_not_ready_when_no_broker_connection_is_open(self):
        """With every broker connection gone the worker reports not ready, naming why."""
        import time  # noqa: PLC0415

        worker = self._worker(0.0)
        worker._last_poll_ok = time.monotonic()
        assert worker.readiness() == (False, "no open connection to any broker")


@pytest.mark.parametrize("window", ["0"])
def test_a_zero_window_turns_duplicate_detection_off(window):
    """With CLAIMS_DEDUP_WINDOW=0 a redelivered event gets a second result."""
    cluster = FakeCluster()
    cluster.append(0, _value(1))
    cluster.append(0, _value(1))
    h = Harness(cluster, CLAIMS_DEDUP_WINDOW=window)
    assert h.run() == ExitCode.OK
    assert len(cluster.results()) == 2


def test_a_cut_short_read_back_is_logged_and_counted_never_silent():
    """A read-back that timed out still lets the partition run, with a warning and the restore metric counted."""
    from worker.state.store import Restored  # noqa: PLC0415

    cluster = FakeCluster()
    cluster.append(0, _value(1))
    h = Harness(cluster)
    h.worker.seen._reader = lambda p, _stop: Restored(p, ["e0"], complete=False, detail="timed out")
    with capture_logs() as events:
        assert h.run() == ExitCode.OK
    warning = next(e for e in events if e["event"] == "state_restore_incomplete")
    assert (warning["store"], warning["partition"], warning["detail"]) == ("dedupe", 0, "timed out")
    assert h.metric("claims_worker_state_restore_incomplete_total", store="dedupe") == 1
    _exactly_once(cluster)


class TestExplainedInternalError:
    """An internal error an operator fault explains (``Pipeline.explain``) ends with the fault's code and line."""

    def test_the_explanation_replaces_exit_70(self):
        """The loop meets a bug-shaped error; the fresh look names another cluster: exit 2, that line."""
        from worker.kafka.cluster import cluster_changed  # noqa: PLC0415 - the fault the watch would name

        h = Harness(FakeCluster())
        h.consumer.poll_errors = [TypeError("offset went back, say")]
        h.worker.explain = lambda: cluster_changed("broker:9092", "c1", "c2")
        with capture_logs() as events:
            assert h.run() == ExitCode.BAD_SETTINGS
        assert "another Kafka cluster (cluster id 'c1', now 'c2')" in (h.worker.failure or "")
        assert [e["error"] for e in events if e["event"] == "internal_error_explained"] == ["TypeError"]
        assert not [e for e in events if e["event"] == "internal_error"]

    def test_without_an_explanation_it_stays_70(self):
        """Nothing explains it: exit 70 and the internal error's line, as before."""
        h = Harness(FakeCluster())
        h.consumer.poll_errors = [TypeError("a bug")]
        assert h.run() == ExitCode.INTERNAL
        assert (h.worker.failure or "").startswith("internal error (TypeError)")
