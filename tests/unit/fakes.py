"""In-memory Kafka for the unit tier: partition logs, committed offsets, seek/position, assignment, transactions.

``FakeCluster`` holds the input logs, the group's committed offsets and the committed output records.
``FakeConsumer`` models a group member: an assignment (changed by ``rebalance``, delivered to the
listener inside ``poll``), a position per partition that ``seek`` really moves, pause/resume.
``FakeProducer`` models a transactional producer: sends are buffered in the open transaction; a commit
publishes them with the offsets, an abort drops them. Faults are injected per call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kafka.structs import TopicPartition

from worker.contracts.wire import EVENT_ID_HEADER
from worker.state.store import Restored


class RecordsSkippedError(AssertionError):
    """The worker moved past records it never committed: they would be lost."""


CLAIMS, RESULTS, DLQ = "pharmacy.claims", "pharmacy.claims.adjudicated", "pharmacy.claims.dead-letter"


@dataclass
class Rec:
    """A consumed record as the worker sees it."""

    value: bytes | None
    offset: int = 0
    partition: int = 0
    key: bytes | None = b"k"
    topic: str = CLAIMS
    headers: list = field(default_factory=list)
    leader_epoch: int = 0
    timestamp: int = 0  # the Kafka timestamp, epoch ms


@dataclass
class Published:
    """One committed output record."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list


class FakeCluster:
    """The broker's state: input logs, the group's committed offsets, committed outputs."""

    def __init__(
        self, partitions: int = 1, outputs: int | None = None, *, topic: str = CLAIMS, output: str = RESULTS
    ) -> None:
        self.topic, self.output = topic, output  # the input topic and the answers' topic (results by default)
        self.logs: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
        self.output_partitions = partitions if outputs is None else outputs
        self.committed: dict[TopicPartition, int] = {}
        self.published: list[Published] = []
        self.lock = threading.Lock()
        self.open_transactions = 0  # producers with a transaction open (it may still commit what was read)

    def append(
        self, partition: int, value: bytes | None, key: bytes | None = b"k", timestamp: int = 0
    ) -> None:
        """Append one record to an input partition (``timestamp``: its Kafka timestamp, epoch ms)."""
        log = self.logs.setdefault(partition, [])
        log.append(
            Rec(value, offset=len(log), partition=partition, key=key, topic=self.topic, timestamp=timestamp)
        )

    def add_partitions(self, total: int, outputs: int | None = None) -> None:
        """Grow the claims topic (and the output topics, unless ``outputs`` says otherwise)."""
        for p in range(len(self.logs), total):
            self.logs[p] = []
        self.output_partitions = total if outputs is None else outputs

    def drained(self) -> bool:
        """Tell whether every input record is covered by a committed offset."""
        return all(
            self.committed.get(TopicPartition(self.topic, p), 0) >= len(log) for p, log in self.logs.items()
        )

    def results(self) -> list[Published]:
        """The committed results."""
        return [r for r in self.published if r.topic == self.output]

    def dead_letters(self) -> list[Published]:
        """The committed dead letters."""
        return [r for r in self.published if r.topic == DLQ]

    def read_back(self, partition: int, stop: threading.Event) -> Restored:  # noqa: ARG002 - reader signature
        """The duplicate filter's read-back: event-id headers of committed results, oldest first."""
        with self.lock:
            ids = [
                value.decode()
                for r in self.published
                if r.topic == self.output and r.partition == partition
                for key, value in r.headers
                if key == EVENT_ID_HEADER
            ]
        return Restored(partition, ids)


class FakeConsumer:
    """A group member over ``FakeCluster``: assignment, positions, pause, committed offsets."""

    def __init__(
        self, cluster: FakeCluster, stop: threading.Event | None = None, fetch_records: int | None = None
    ) -> None:
        self.cluster = cluster
        # Records of one partition one poll can return: kafka-python hands out what one fetch brought
        # (max_partition_fetch_bytes, about CLAIMS_BATCH_MAX_RECORDS claims), whatever max_records allows.
        self.fetch_records = fetch_records
        self.max_records_asked: list[int] = []  # the max_records of each poll
        self.stop = stop
        self.listener = None
        self.positions: dict[TopicPartition, int] = {}
        self.paused_: set[TopicPartition] = set()
        self.pending: list[set[TopicPartition]] = []  # assignments to deliver in the next polls
        self.poll_errors: list[BaseException] = []
        self.polls = 0
        self.closed = False
        self.on_poll = None  # optional hook(consumer) run at the start of each poll

    # --- group -----------------------------------------------------------------------------------
    def subscribe(self, topics, listener=None) -> None:  # noqa: ARG002 - kafka-python's signature
        self.listener = listener
        if not self.positions and not self.pending:
            self.pending.append({TopicPartition(self.cluster.topic, p) for p in self.cluster.logs})

    def rebalance(self, partitions: set[int]) -> None:
        """Have the next poll change the assignment to ``partitions`` (eager: revoke all, assign all)."""
        self.pending.append({TopicPartition(self.cluster.topic, p) for p in partitions})

    def _apply_rebalance(self) -> None:
        new = self.pending.pop(0)
        old = set(self.positions)
        revoked, added = old - new, new - old
        for tp in revoked:
            del self.positions[tp]
            self.paused_.discard(tp)
        for tp in added:
            self.positions[tp] = self.committed(tp) or 0
        if self.listener is not None:
            self.listener.on_partitions_revoked(sorted(revoked))
            self.listener.on_partitions_assigned(sorted(added))

    def group_metadata(self) -> str:
        return "group"

    # --- positions -------------------------------------------------------------------------------
    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def committed(self, tp, metadata=False) -> int | None:  # noqa: ARG002 - kafka-python's signature
        return self.cluster.committed.get(tp)

    def seek(self, tp, offset) -> None:
        assert tp in self.positions, f"seek on unassigned {tp}"
        self.positions[tp] = offset

    def seek_to_beginning(self, *tps) -> None:
        for tp in tps:
            self.seek(tp, 0)

    def position(self, tp, timeout_ms=None) -> int:  # noqa: ARG002 - kafka-python's signature
        return self.positions[tp]

    def highwater(self, tp) -> int:
        return len(self.cluster.logs.get(tp.partition, ()))

    def pause(self, *tps) -> None:
        self.paused_.update(tps)

    def resume(self, *tps) -> None:
        self.paused_.difference_update(tps)

    # --- metadata --------------------------------------------------------------------------------
    def topics(self) -> set[str]:
        return {self.cluster.topic, self.cluster.output, DLQ}

    def partitions_for_topic(self, topic) -> set[int]:
        n = len(self.cluster.logs) if topic == self.cluster.topic else self.cluster.output_partitions
        return set(range(n))

    def metrics(self) -> dict:
        return {"consumer-metrics": {"connection-count": 1.0}}

    # --- poll ------------------------------------------------------------------------------------
    def poll(self, timeout_ms=0, max_records=500) -> dict:
        self.polls += 1
        self.max_records_asked.append(max_records)
        if self.on_poll is not None:
            self.on_poll(self)
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        if self.pending:
            self._apply_rebalance()
        batch: dict[TopicPartition, list[Rec]] = {}
        budget = max_records or 500
        for tp in sorted(self.positions):
            if tp in self.paused_ or budget <= 0:
                continue
            log = self.cluster.logs.get(tp.partition, [])
            take = budget if self.fetch_records is None else min(budget, self.fetch_records)
            records = log[self.positions[tp] : self.positions[tp] + take]
            if records:
                batch[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
        if not batch and not self.pending and not self.paused_ and self.positions and not self._rewindable():
            # Every position is at the end but not every record is committed: records were skipped.
            raise RecordsSkippedError(dict(self.positions), dict(self.cluster.committed))
        if not batch and self.stop is not None and not self.pending and self.cluster.drained():
            self.stop.set()
        if not batch and self.stop is not None:
            self.stop.wait(timeout_ms / 1000 / 50)  # a short poll timeout: gives restore threads a turn
        return batch

    def _rewindable(self) -> bool:
        """Tell whether the records not yet committed can still come (or nothing is missing)."""
        return (
            self.cluster.drained()
            or self.cluster.open_transactions > 0
            or any(self.positions[tp] < len(self.cluster.logs.get(tp.partition, ())) for tp in self.positions)
        )

    def close(self, autocommit=True) -> None:  # noqa: ARG002 - kafka-python's signature
        self.closed = True


class FakeProducer:
    """A transactional producer over ``FakeCluster``: a commit publishes, an abort drops."""

    def __init__(self, cluster: FakeCluster, faults: dict[str, list[BaseException]] | None = None) -> None:
        self.cluster = cluster
        self.faults = faults if faults is not None else {}
        self.calls: list[str] = []
        self.pending: list[Published] = []
        self.offsets: dict = {}
        self.in_txn = False
        self.limit: int | None = None  # max value size, as max_request_size
        self.commit_lands_then_raise: list[BaseException] = []  # commit applies, then this raises

    def _fault(self, call: str) -> None:
        self.calls.append(call)
        queue = self.faults.get(call)
        if queue:
            raise queue.pop(0)

    def begin_transaction(self) -> None:
        self._fault("begin")
        assert not self.in_txn, "begin inside an open transaction"
        self.in_txn, self.pending, self.offsets = True, [], {}
        self.cluster.open_transactions += 1

    def send(self, topic, value=None, key=None, partition=None, headers=None) -> None:
        assert self.in_txn, "send outside a transaction"
        if self.limit is not None and value is not None and len(value) > self.limit:
            from kafka.errors import MessageSizeTooLargeError  # noqa: PLC0415

            raise MessageSizeTooLargeError
        if topic in (self.cluster.output, DLQ) and partition >= self.cluster.output_partitions:
            raise ValueError(f"Unrecognized partition {partition} for topic {topic}")
        self._fault("send")
        self.pending.append(Published(topic, partition, key, value, list(headers or [])))

    def send_offsets_to_transaction(self, offsets, group_metadata) -> None:  # noqa: ARG002 - kafka-python's signature
        self._fault("offsets")
        self.offsets = {tp: o.offset for tp, o in offsets.items()}

    def commit_transaction(self) -> None:
        self._fault("commit")
        with self.cluster.lock:
            self.cluster.published.extend(self.pending)
            self.cluster.committed.update(self.offsets)
        self._end()
        if self.commit_lands_then_raise:
            raise self.commit_lands_then_raise.pop(0)

    def abort_transaction(self) -> None:
        self._fault("abort")
        self._end()

    def _end(self) -> None:
        if self.in_txn:
            self.cluster.open_transactions -= 1
        self.in_txn, self.pending = False, []

    def close(self, timeout=None) -> None:  # noqa: ARG002 - kafka-python's signature
        self.calls.append("close")
        self._end()  # the broker aborts what a closed (or fenced) producer left open
