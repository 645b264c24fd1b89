"""Reading a topic back as committed records: whole, to the end offsets seen at the start (reports, tests)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from worker.errors import ConfigError
from worker.kafka.clients import Role, new_consumer
from worker.kafka.io import TopicPartition
from worker.kafka.ranges import Stall

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from worker.config.settings import Settings
    from worker.kafka.io import KafkaConsumer

__all__ = ["existing_partitions", "expected", "read_to_ends", "read_topic", "report_consumer"]


def report_consumer(settings: Settings, **overrides: object) -> KafkaConsumer:
    """Return a group-less ``read_committed`` consumer that never creates a topic (reports, ``lag``)."""
    config: dict[str, Any] = {
        "group_id": None,
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "allow_auto_create_topics": False,
        **overrides,
    }
    return new_consumer(settings, Role.REPORT, **config)


def existing_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """Return ``topic``'s partitions in order; raise ``ConfigError`` (exit 2) when it does not exist."""
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        msg = f"topic {topic!r} does not exist (or this login may not describe it)"
        raise ConfigError(msg)
    return [TopicPartition(topic, p) for p in sorted(numbers)]


def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> Iterator[Any]:
    """Yield every committed record of ``topic`` (all partitions) up to its end offsets at call time."""
    consumer = new_consumer(
        settings,
        Role.REPORT,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                yield from records
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()


def read_to_ends(
    settings: Settings, topic: str, progress: Callable[[int], None] | None = None
) -> Iterator[Any]:
    """Yield every committed record of ``topic``, each partition up to the end offset it had at the start.

    No overall timeout: the read ends when every partition reaches its end, however long that takes;
    a read that makes no progress for ``CLAIMS_OUTAGE_LIMIT_S`` raises ``KafkaTimeoutError`` (exit 4).
    Raises ``ConfigError`` (exit 2) when ``topic`` does not exist; the read never creates it.
    ``progress`` is called with each batch's record count (and once with 0 and the total first, see
    ``expected``).
    """
    consumer = report_consumer(settings, max_poll_records=5000)
    try:
        partitions = existing_partitions(consumer, topic)
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        firsts = consumer.beginning_offsets(partitions)
        pending = {tp: ends[tp] for tp in partitions if ends[tp] > firsts[tp]}
        for tp in pending:
            consumer.seek(tp, firsts[tp])
        stall = Stall(settings.outage_limit_s, f"reading {topic}")
        while pending:
            for tp, records in consumer.poll(timeout_ms=500).items():
                stall.progressed()
                end = pending.get(tp, -1)
                kept = [record for record in records if record.offset < end]
                if progress is not None:
                    progress(len(kept))
                yield from kept
            for tp in [tp for tp, end in pending.items() if consumer.position(tp) >= end]:
                del pending[tp]
            stall.check()
    finally:
        consumer.close(autocommit=False)


def expected(settings: Settings, topic: str) -> int:
    """Return how many offsets ``topic`` holds now (a progress bar's total; markers count too)."""
    consumer = new_consumer(settings, Role.REPORT, group_id=None, allow_auto_create_topics=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return 0
        ends, firsts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - firsts[tp] for tp in partitions)
    finally:
        consumer.close(autocommit=False)
