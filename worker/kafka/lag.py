"""A consumer group's lag on one topic as the brokers tell it: committed and end offsets, the oldest waiting.

``read_group_lag`` asks the group coordinator for the group's committed offsets and its members
(``DescribeGroups``: state, members, decoded assignments), the partition leaders for the log start and
end offsets (``read_committed``: the last stable offset), and reads, for each partition with lag, the
first committed record at or after the committed offset: the oldest record the group has not decided
yet. Its Kafka timestamp gives the lag in seconds. Nothing here decides how it is shown (``worker.cli.lag``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka import errors as kerrors

from worker.kafka.clients import Role, new_admin
from worker.kafka.ranges import Stall
from worker.kafka.reads import existing_partitions, report_consumer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.config.settings import Settings
    from worker.kafka.io import KafkaConsumer, TopicPartition

__all__ = ["GroupLag", "Member", "PartitionLag", "members_of", "read_group_lag"]

EMPTY = "Empty"
DEAD = "Dead"  # what the coordinator answers for a group it does not know
STABLE = "Stable"

# Bytes fetched per partition and request: only the first record past the committed offset is needed.
_FETCH_BYTES = 64 * 1024
_RETRY_S = 0.5  # between two questions to a coordinator that answered "not available"


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the group as the coordinator describes it, with its partitions of the topic."""

    member_id: str
    instance_id: str | None  # the static member id (CLAIMS_INSTANCE slot); None for a dynamic member
    client_id: str
    host: str
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition: the group's committed offset, the log's start and end, and the oldest waiting record.

    ``committed`` is None when the group has never committed the partition (the worker then starts at
    the log start, ``auto_offset_reset=earliest``). ``oldest_ms`` is the Kafka timestamp (epoch ms) of
    the first committed record at or after it, None when no record waits (lag 0, or only transaction
    markers and aborted records between it and the end).
    """

    partition: int
    committed: int | None
    start: int
    end: int
    oldest_ms: int | None
    owner: Member | None

    @property
    def lag_records(self) -> int:
        """Offsets between where the group resumes (its committed offset, else the log start) and the end."""
        resume = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - resume)

    def lag_seconds(self, now_s: float) -> float:
        """Seconds since the oldest waiting record was written (``now_s``: epoch seconds); 0 if none waits."""
        if self.lag_records == 0 or self.oldest_ms is None:
            return 0.0
        return max(0.0, now_s - self.oldest_ms / 1000)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A group's lag on ``topic`` at ``read_at`` (epoch seconds): its state, members and partitions."""

    group_id: str
    topic: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]
    read_at: float

    @property
    def exists(self) -> bool:
        """False when the coordinator knows no such group and it has committed nothing on the topic."""
        return self.state != DEAD or any(p.committed is not None for p in self.partitions)


def members_of(described: Mapping[str, Any] | None, topic: str) -> tuple[Member, ...]:
    """Return the members of one ``describe_groups`` answer, each with its partitions of ``topic``.

    A member whose assignment kafka-python could not decode (not a dict) is listed with no partitions.
    """
    members: list[Member] = []
    for raw in (described or {}).get("members") or ():
        assignment = raw.get("member_assignment")
        owned: set[int] = set()
        if isinstance(assignment, dict):
            for entry in assignment.get("assigned_partitions") or ():
                if entry.get("topic") == topic:
                    owned.update(entry.get("partitions") or ())
        members.append(
            Member(
                member_id=str(raw.get("member_id") or ""),
                instance_id=raw.get("group_instance_id") or None,
                client_id=str(raw.get("client_id") or ""),
                host=str(raw.get("client_host") or ""),
                partitions=tuple(sorted(owned)),
            )
        )
    return tuple(sorted(members, key=lambda m: (m.instance_id or "", m.member_id)))


def read_group_lag(settings: Settings, group_id: str, topic: str) -> GroupLag:
    """Return ``group_id``'s lag on ``topic`` now.

    Raises ``ConfigError`` (exit 2) when the topic does not exist (it is never created), what the
    admin client raises for a refused right (``GroupAuthorizationFailedError``: exit 5) or no answer
    (a ``KafkaError``: exit 4), and ``KafkaTimeoutError`` when reading the oldest records stalls past
    ``CLAIMS_OUTAGE_LIMIT_S``.
    """
    offsets, described = _ask_coordinator(settings, group_id)
    error = str(described.get("error") or "")
    if kerrors.GroupIdNotFoundError.__name__ in error:  # DescribeGroups v6+ (Kafka 4): an unknown group
        described = {"group_state": DEAD}
    elif error:
        msg = f"describing group {group_id!r}: {error}"
        raise kerrors.KafkaError(msg)
    members = members_of(described, topic)
    owners = {p: m for m in members for p in m.partitions}
    consumer = report_consumer(settings, max_partition_fetch_bytes=_FETCH_BYTES)
    try:
        tps = existing_partitions(consumer, topic)
        starts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        committed = {tp: _offset(offsets.get(tp)) for tp in tps}
        resume = {tp: max(starts[tp], committed[tp] or 0) for tp in tps}
        oldest = _oldest_timestamps(
            consumer,
            {tp: (resume[tp], ends[tp]) for tp in tps if ends[tp] > resume[tp]},
            Stall(settings.outage_limit_s, f"reading {topic}"),
        )
    finally:
        consumer.close(autocommit=False)
    partitions = tuple(
        PartitionLag(
            partition=tp.partition,
            committed=committed[tp],
            start=starts[tp],
            end=ends[tp],
            oldest_ms=oldest.get(tp),
            owner=owners.get(tp.partition),
        )
        for tp in tps
    )
    state = str(described.get("group_state") or DEAD)
    return GroupLag(group_id, topic, state, members, partitions, read_at=time.time())


def _ask_coordinator(settings: Settings, group_id: str) -> tuple[Mapping[Any, Any], dict[str, Any]]:
    """Return the group's committed offsets and its ``describe_groups`` entry.

    A retriable answer (no coordinator yet: a new cluster creates ``__consumer_offsets`` on the first
    group request; a coordinator moving) is asked again for up to ``CLAIMS_OUTAGE_LIMIT_S``.
    """
    deadline = time.monotonic() + settings.outage_limit_s
    admin = new_admin(settings, Role.REPORT)
    try:
        while True:
            try:
                # The offsets first: OffsetFetch raises a refused group right as its own error (exit 5),
                # where describe_groups only writes it into the group's entry.
                offsets = admin.list_group_offsets({group_id: None}).get(group_id) or {}
                return offsets, admin.describe_groups([group_id]).get(group_id) or {}
            except kerrors.KafkaError as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise
                time.sleep(_RETRY_S)
    finally:
        admin.close()


def _offset(found: object) -> int | None:
    """Return a committed ``OffsetAndMetadata``'s offset; None when absent or -1 (nothing committed)."""
    offset = getattr(found, "offset", None)
    return offset if isinstance(offset, int) and offset >= 0 else None


def _oldest_timestamps(
    consumer: KafkaConsumer, ranges: Mapping[TopicPartition, tuple[int, int]], stall: Stall
) -> dict[TopicPartition, int]:
    """Return the timestamp of the first committed record in each ``[first, end)``; absent when none is.

    ``read_committed`` skips transaction markers and aborted records, so the first record returned is
    the oldest one a worker would decide. Raises ``KafkaTimeoutError`` through ``stall``.
    """
    if not ranges:
        return {}
    consumer.assign(list(ranges))
    for tp, (first, _) in ranges.items():
        consumer.seek(tp, first)
    found: dict[TopicPartition, int] = {}
    pending = dict(ranges)
    while pending:
        batch = consumer.poll(timeout_ms=500, max_records=100)
        for tp, records in batch.items():
            stall.progressed()
            oldest = next((r for r in records if r.offset < pending.get(tp, (0, -1))[1]), None)
            if oldest is not None and tp in pending:
                found[tp] = int(oldest.timestamp)
                del pending[tp]
                consumer.pause(tp)
        for tp in [tp for tp, (_, end) in pending.items() if consumer.position(tp) >= end]:
            del pending[tp]  # read to the end and found no record: nothing waits to be decided
        stall.check()
    return found
