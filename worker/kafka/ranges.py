"""What a replay reads: a time range of a topic as offset ranges, and its committed records in order.

``plan_ranges`` turns ``--from``/``--to`` into each partition's ``[first, stop)`` offsets
(``offsets_for_times``); ``scan`` yields a topic's committed records written in a time range (the live
outputs a diff compares with, the authorizations a replay pins); ``Stall`` ends a read that makes no
progress (exit 4, as the live worker's outage limit).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kafka import errors as kerrors

from worker.errors import ConfigError
from worker.kafka.clients import Role, new_consumer
from worker.kafka.io import TopicPartition

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from worker.config.settings import Settings
    from worker.kafka.io import KafkaConsumer

__all__ = ["Stall", "narrow", "plan_ranges", "scan"]


def _ms(moment: datetime) -> int:
    """Return ``moment`` as epoch milliseconds (Kafka timestamps)."""
    return int(moment.timestamp() * 1000)


def plan_ranges(
    consumer: KafkaConsumer, topic: str, start: datetime, end: datetime | None
) -> dict[TopicPartition, tuple[int, int]]:
    """Return each partition's offsets ``[first, stop)`` of the time range (``offsets_for_times``).

    ``first`` is the first offset with a timestamp at or after ``start``; ``stop`` the first at or after
    ``end``, or the end offset now when ``end`` is ``None`` or no record is that late.
    """
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        msg = f"topic {topic!r} does not exist"
        raise ConfigError(msg)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    ends = consumer.end_offsets(tps)
    firsts = consumer.offsets_for_times(dict.fromkeys(tps, _ms(start)))
    stops = consumer.offsets_for_times(dict.fromkeys(tps, _ms(end))) if end is not None else {}
    ranges: dict[TopicPartition, tuple[int, int]] = {}
    for tp in tps:
        first_at, stop_at = firsts.get(tp), stops.get(tp)
        stop = ends[tp] if stop_at is None else stop_at.offset
        first = stop if first_at is None else min(first_at.offset, stop)
        ranges[tp] = (first, stop)
    return ranges


def narrow(
    ranges: dict[TopicPartition, tuple[int, int]],
    partitions: frozenset[int] = frozenset(),
    offsets: tuple[int | None, int | None] | None = None,
) -> dict[TopicPartition, tuple[int, int]]:
    """Keep only ``partitions`` (empty: all) and, in each, the inclusive offsets ``offsets`` (an end open).

    Raises ``ConfigError`` naming a partition the topic does not have. A range that ``offsets`` misses
    is kept empty (``first == stop``), so the partition is still known, with nothing to do.
    """
    have = {tp.partition for tp in ranges}
    if missing := sorted(partitions - have):
        topic = next(iter(ranges)).topic if ranges else "?"
        msg = f"topic {topic!r} has no partition {missing[0]} (it has 0-{max(have, default=-1)})"
        raise ConfigError(msg)
    kept: dict[TopicPartition, tuple[int, int]] = {}
    low, high = offsets or (None, None)
    for tp, (first, stop) in ranges.items():
        if partitions and tp.partition not in partitions:
            continue
        end = stop if high is None else min(stop, high + 1)
        kept[tp] = (min(first if low is None else max(first, low), end), end)
    return kept


def scan(
    settings: Settings, topic: str, since: datetime | None, until: datetime | None = None
) -> Iterator[tuple[int, int, Any]]:
    """Yield (partition, offset, record) of committed records of ``topic`` written in ``[since, until)``.

    ``since`` ``None``: from the beginning; ``until`` ``None``: to the end offsets when the scan started.
    """
    consumer = new_consumer(
        settings,
        Role.REPLAY,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=5000,
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        if since is None:
            starts: dict[TopicPartition, int | None] = dict(consumer.beginning_offsets(tps))
        else:
            found = consumer.offsets_for_times(dict.fromkeys(tps, _ms(since)))
            starts = {tp: None if found.get(tp) is None else found[tp].offset for tp in tps}
        stops = consumer.offsets_for_times(dict.fromkeys(tps, _ms(until))) if until is not None else {}
        todo = {}
        for tp in tps:
            at, stop_at = starts.get(tp), stops.get(tp)
            stop = ends[tp] if stop_at is None else stop_at.offset
            first = stop if at is None else at
            if first < stop:
                consumer.seek(tp, first)
                todo[tp] = stop
        stall = Stall(settings.outage_limit_s, f"reading {topic}")
        while todo:
            for tp, records in consumer.poll(timeout_ms=500).items():
                stall.progressed()
                for record in records:
                    if record.offset < todo.get(tp, -1):
                        yield tp.partition, record.offset, record
            for tp in [tp for tp, end in todo.items() if consumer.position(tp) >= end]:
                del todo[tp]
            stall.check()
    finally:
        consumer.close(autocommit=False)


class Stall:
    """Raise ``KafkaTimeoutError`` (exit 4) when a read makes no progress for ``limit_s`` (a lost broker)."""

    def __init__(self, limit_s: float, what: str) -> None:
        self.limit_s, self.what = limit_s, what
        self.last = time.monotonic()

    def progressed(self) -> None:
        """Note that the read moved on."""
        self.last = time.monotonic()

    def check(self) -> None:
        """Raise when the read has not moved on for longer than the limit."""
        if time.monotonic() - self.last > self.limit_s:
            msg = f"{self.what}: no progress for {self.limit_s:.0f}s (CLAIMS_OUTAGE_LIMIT_S)"
            raise kerrors.KafkaTimeoutError(msg)
