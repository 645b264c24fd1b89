"""How long the oldest record not yet decided has waited, per assigned partition: the lag in seconds.

The gauge ``claims_worker_consumer_lag_seconds{partition}`` is now minus the Kafka timestamp of the
oldest record of the partition the worker has not committed a decision for, from what the worker
already holds (no request to the broker):

- 0 when the partition has no lag in records (the committed offset is at the high watermark);
- the first record the worker has polled since its last commit on the partition: after a commit the
  consumer's position is the committed offset, so the first record polled is the oldest undecided one
  (exact; it stays the oldest across polls, aborts and rewinds until a commit moves past it);
- between a commit and the next poll that returns the partition's next record: the last record the
  commit decided. The next record was written after it, so the age shown is at most that much too
  high (a backlogged worker polls again within a poll; a caught-up one has lag 0);
- unknown (no series yet) for a partition assigned but not yet polled, or a record with no timestamp.

Record timestamps are CreateTime (the producer's clock) unless the topic uses LogAppendTime; a
timestamp ahead of the worker's clock counts as 0 seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from worker.kafka.io import TopicPartition

__all__ = ["OldestWaiting"]


class _Timed(Protocol):
    @property
    def timestamp(self) -> int:
        """The record's Kafka timestamp, epoch milliseconds."""
        ...


class OldestWaiting:
    """Per partition, the timestamp of the oldest record polled but not committed (or the last committed)."""

    __slots__ = ("_first", "_last_decided", "_last_held")

    def __init__(self) -> None:
        self._first: dict[TopicPartition, int] = {}  # oldest polled since the last commit: exact
        self._last_held: dict[TopicPartition, int] = {}  # newest record in the open transaction
        self._last_decided: dict[TopicPartition, int] = {}  # newest record a commit decided

    def polled(self, batch: Mapping[TopicPartition, Sequence[_Timed]]) -> None:
        """Note what one poll returned (before any is held back: held-back records come again)."""
        for tp, records in batch.items():
            if records:
                self._first.setdefault(tp, records[0].timestamp)

    def held(self, batch: Mapping[TopicPartition, Sequence[_Timed]]) -> None:
        """Note the records that went into the open transaction."""
        for tp, records in batch.items():
            if records:
                self._last_held[tp] = records[-1].timestamp

    def committed(self, partitions: Iterable[TopicPartition]) -> None:
        """Note a commit of ``partitions``: what they held is decided, their next record is not polled yet."""
        for tp in partitions:
            self._first.pop(tp, None)
            last = self._last_held.pop(tp, None)
            if last is not None:
                self._last_decided[tp] = last

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget ``partitions`` (revoked or lost: another member may move their committed offsets)."""
        for tp in partitions:
            for table in (self._first, self._last_held, self._last_decided):
                table.pop(tp, None)

    def age_s(self, tp: TopicPartition, lag_records: int, now_s: float) -> float | None:
        """Return the lag in seconds of ``tp`` at ``now_s`` (epoch seconds); None when not known yet."""
        if lag_records <= 0:
            return 0.0
        stamp = self._first.get(tp, self._last_decided.get(tp))
        if stamp is None or stamp < 0:  # -1: a record without a timestamp (message format v0)
            return None
        return max(0.0, now_s - stamp / 1000)
