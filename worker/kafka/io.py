"""The worker's calls on kafka-python: client factories, bounded calls, topic checks, groups, read-back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerrors
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.structs import OffsetAndMetadata

from worker.contracts.wire import EVENT_ID_HEADER
from worker.errors import ConfigError
from worker.kafka.clients import Role, new_admin, new_consumer, new_producer
from worker.kafka.failures import IndefiniteOutcome, group_instance_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from worker.config.settings import Settings

__all__ = [
    "EVENT_ID_HEADER",
    "IndefiniteOutcome",
    "KafkaConsumer",
    "KafkaProducer",
    "MemberRemover",
    "Membership",
    "OffsetAndMetadata",
    "RebalanceListener",
    "Restored",
    "TopicMissing",
    "TopicPartition",
    "bounded",
    "check_topics",
    "make_consumer",
    "make_producer",
    "make_readback_consumer",
    "read_event_ids",
    "read_to_end",
    "remove_static_member",
    "rewind_to_committed",
    "slot_membership",
    "topic_problem",
]


RebalanceListener = ConsumerRebalanceListener
"""The base of a consumer's rebalance callbacks (revoked, assigned, lost), called inside ``poll``."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a read-back found for one partition: the state, and whether the read reached its goal."""

    partition: int
    state: object
    complete: bool = True
    detail: str = ""


T = TypeVar("T")


def bounded(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``call`` on a helper thread and wait at most ``timeout_s``.

    kafka-python's commit/abort wait on a latch with no timeout (transaction_manager ``wait()``), so a
    lost broker could block the worker forever. Raises ``IndefiniteOutcome`` when time runs out (the
    thread is abandoned with its producer) and re-raises whatever ``call`` raised.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"bounded-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise IndefiniteOutcome(f"{what} did not complete within {timeout_s:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")  # type: ignore[return-value]


def _partition_fetch_bytes(settings: Settings) -> int:
    """Bytes fetched per partition and request: about one batch of claims (~200 B each), 64 KiB at least."""
    return max(64 * 1024, settings.batch_max_records * 256)


def make_consumer(settings: Settings, **overrides: object) -> KafkaConsumer:
    """Return a group consumer for exactly-once reads: no auto-commit, ``read_committed``, manual offsets.

    Cooperative-sticky assignment (KIP-429, in kafka-python 3.x) moves only the partitions that change
    owner when a worker joins or leaves; static membership (KIP-345, ``group_instance_id`` from the
    instance slot) gives a restarted worker its partitions back at once instead of after the session
    timeout, and makes a second live process on the same slot fail with ``FencedInstanceIdError``.
    """
    config: dict[str, Any] = {
        "group_id": settings.group_id,
        "group_instance_id": group_instance_id(settings),
        "partition_assignment_strategy": [CooperativeStickyAssignor],
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.batch_max_records,
        "fetch_max_wait_ms": 100,
        # kafka-python hands out one partition's fetched records before the next one's: with the 1 MiB
        # default (~5,000 claims) a worker holding several backlogged partitions served one for up to
        # ten batches before the others (chaos: the last partition's first output 3.5 s after the
        # others' after a restart). About one batch of claims per partition and fetch interleaves them.
        "max_partition_fetch_bytes": _partition_fetch_bytes(settings),
        # Notice partitions added to the claims topic within 30 s (Kafka's default is 5 minutes).
        "metadata_max_age_ms": 30_000,
    }
    config.update(overrides)
    return new_consumer(settings, Role.CONSUMER, **config)


def make_producer(settings: Settings, **overrides: object) -> KafkaProducer:
    """Return a transactional producer with this instance's stable transactional id, transactions initialised.

    ``init_transactions`` fences any older producer with the same id and aborts its open transaction;
    the output topics' metadata is fetched too, so the first batch does not wait for it.
    """
    config: dict[str, Any] = {
        "transactional_id": settings.transactional_id,
        "transaction_timeout_ms": settings.transaction_timeout_ms,
        "linger_ms": settings.linger_ms,
        "batch_size": 256 * 1024,
        "max_block_ms": int(settings.commit_timeout_s * 1000),
        # Output topics must exist with enough partitions (check_topics, exit 2): never auto-create one
        # (a broker with auto.create.topics.enable would, on the metadata request below).
        "allow_auto_create_topics": False,
    }
    config.update(overrides)
    producer = new_producer(settings, Role.PRODUCER, **config)
    try:
        producer.init_transactions()
        # The output topics' metadata now, not on the first send of the first batch (a round trip
        # less on the restart path, while the group join and the state read-back run).
        for topic in (settings.results_topic, settings.dead_letter_topic):
            producer.partitions_for(topic)
    except Exception:
        producer.close(timeout=1)
        raise
    return producer


def check_topics(consumer: KafkaConsumer, settings: Settings, *, refresh: bool = False) -> dict[str, int]:
    """Return each topic's partition count; raise ``ConfigError`` when one is missing or too small.

    Results and dead letters are written to the input's partition number, so both output topics need
    at least as many partitions as the claims topic. ``refresh`` asks the brokers for fresh metadata
    first (blocking; call it from the poll thread, never from a rebalance listener).
    """
    if refresh:
        consumer.topics()
    counts = {
        topic: len(consumer.partitions_for_topic(topic) or ())
        for topic in (settings.claims_topic, settings.results_topic, settings.dead_letter_topic)
    }
    problem = topic_problem(settings, counts)
    if problem is not None:
        raise (TopicMissing if 0 in counts.values() else ConfigError)(problem)
    return counts


class TopicMissing(ConfigError):  # noqa: N818 - names the condition, like the other ConfigErrors' lines
    """A topic the worker reads or writes does not exist (exit 2 at start; while running: the sentinel)."""


def topic_problem(settings: Settings, counts: Mapping[str, int]) -> str | None:
    """Return the operator's line for a missing or too small topic in ``counts`` (0: missing), or None."""
    topics = (settings.claims_topic, settings.results_topic, settings.dead_letter_topic)
    for topic in topics:
        if counts.get(topic) == 0:
            return f"topic {topic!r} does not exist (create it, or run `make run` for a demo)"
    need = counts.get(settings.claims_topic)
    for topic in topics[1:]:
        have = counts.get(topic)
        if need is not None and have is not None and have < need:
            return (
                f"topic {topic!r} has {have} partitions; it needs at least {need} "
                f"(as many as {settings.claims_topic!r}): add partitions to it"
            )
    return None


def rewind_to_committed(consumer: KafkaConsumer) -> None:
    """Seek every assigned partition back to its committed offset (or the beginning when none)."""
    for tp in consumer.assignment():
        committed = consumer.committed(tp)
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


class Membership(Enum):
    """Whether this process still holds its instance slot in the group, as the group coordinator says."""

    OURS = "ours"  # the coordinator knows our member id for the slot (or no member holds the slot)
    FENCED = "fenced"  # another process joined with this slot's static member id: it owns the slot now
    UNKNOWN = "unknown"  # no answer (coordinator unknown, broker down, timed out): ask again later


_SLOT_NOT_TAKEN = (
    kerrors.RebalanceInProgressError,  # still a member, the group is rebalancing
    kerrors.UnknownMemberIdError,  # static member id unknown to the group: no one else holds the slot
    kerrors.IllegalGenerationError,  # still the slot's member, of an older generation
)


def slot_membership(consumer: KafkaConsumer, timeout_s: float) -> Membership:
    """Ask the group coordinator whether this process still holds its slot: one heartbeat round trip.

    With static membership (KIP-345) a second process joining with the same ``group_instance_id``
    takes the slot over at once: the coordinator answers the older member's next heartbeat, commit or
    TxnOffsetCommit with FENCED_INSTANCE_ID. kafka-python's heartbeat thread only logs that and stops
    heartbeating (the consumer keeps fetching, ``poll`` raises nothing), so the worker asks itself,
    right before it would replace its producer (which would fence the newer process's producer).
    Not joined (no member id yet, or reset after the group forgot it) counts as ours: there is no
    member id of ours another process could have taken over, and the (re)join decides.

    Uses kafka-python 3.x internals (the consumer's coordinator and its heartbeat request); runs on
    the caller's thread (the poll thread) and blocks at most about ``timeout_s``.
    """
    coordinator = consumer._coordinator  # noqa: SLF001 - kafka-python exposes no membership check
    metadata = coordinator.group_metadata()
    if not metadata.member_id or metadata.generation_id < 0:
        return Membership.OURS
    timeout_ms = max(1, int(timeout_s * 1000))
    manager = coordinator._manager  # noqa: SLF001

    async def heartbeat() -> None:
        if not await coordinator.ensure_coordinator_ready_async(timeout_ms=timeout_ms):
            msg = "group coordinator not found"
            raise kerrors.KafkaTimeoutError(msg)
        await manager.wait_for(manager.call_soon(coordinator._send_heartbeat_request), timeout_ms)  # noqa: SLF001

    try:
        coordinator._net.run(heartbeat)  # noqa: SLF001
    except kerrors.FencedInstanceIdError:
        return Membership.FENCED
    except _SLOT_NOT_TAKEN:
        return Membership.OURS
    except kerrors.KafkaError:
        return Membership.UNKNOWN
    return Membership.OURS


def make_readback_consumer(settings: Settings) -> KafkaConsumer:
    """Return a group-less ``read_committed`` consumer for reading partition state back."""
    return new_consumer(
        settings,
        Role.READBACK,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=5000,
    )


# Offsets read per step of a newest-first read-back: a read cut short loses at most this many of the
# newest ids' neighbours, never the newest chunk. Each step re-seeks and throws away what was fetched
# past its end, so small steps cost: 15,000 ids read back in 0.59 s with 5,000-offset steps, 0.35 s
# with 20,000 (medians of 4, /tmp bench on the shared 2-core host); the read-back is the longest part
# of a restarted worker's stall.
_READBACK_CHUNK = 20_000


def read_event_ids(
    settings: Settings,
    topic: str,
    partition: int,
    window: int,
    *,
    timeout_s: float,
    stop: threading.Event | None = None,
    consumer_factory: Callable[[Settings], KafkaConsumer] = make_readback_consumer,
) -> Restored:
    """Read back the event-id headers of the newest ``window`` committed records of one partition.

    Reads with ``read_committed`` backwards in chunks from the last stable offset, so a read cut short
    (``timeout_s`` passed, or ``stop`` set) keeps the newest ids. Returns ``Restored`` with the ids
    oldest first; ``complete`` is false (and ``detail`` says why) when the read was cut short.
    """
    if window <= 0:
        return Restored(partition, [])
    tp = TopicPartition(topic, partition)
    consumer = consumer_factory(settings)
    chunks: list[list[str]] = []  # newest chunk first
    found, detail = 0, ""
    try:
        consumer.assign([tp])
        begin = consumer.beginning_offsets([tp])[tp]
        high = consumer.end_offsets([tp])[tp]
        deadline = time.monotonic() + timeout_s
        while found < window and high > begin and not detail:
            low = max(begin, high - _READBACK_CHUNK)
            chunk, detail = _read_range(consumer, tp, low, high, deadline=deadline, stop=stop)
            chunks.append(chunk)
            found += len(chunk)
            high = low
    finally:
        consumer.close()
    ids = [event_id for chunk in reversed(chunks) for event_id in chunk]
    return Restored(partition, ids[-window:], complete=not detail, detail=detail)


def _read_range(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    low: int,
    high: int,
    *,
    deadline: float,
    stop: threading.Event | None,
) -> tuple[list[str], str]:
    """Read the event ids of offsets [low, high); return them and why the read stopped early ("" if not)."""
    ids: list[str] = []
    consumer.seek(tp, low)
    while consumer.position(tp) < high:
        if stop is not None and stop.is_set():
            return ids, "stopped"
        if time.monotonic() > deadline:
            return ids, "timed out"
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                if record.offset >= high:
                    break
                for key, value in record.headers or ():
                    if key == EVENT_ID_HEADER and value is not None:
                        ids.append(value.decode("utf-8", "replace"))
    return ids, ""


def read_to_end(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    poll: Callable[[], int],
    timeout_s: float,
    what: str,
) -> int:
    """Call ``poll`` until every partition reaches the end offset it had at the start; return the sum.

    How a follower of a compacted topic (directory updates, authorization store) catches up before the
    worker reports ready. Raises ``KafkaTimeoutError`` naming ``what`` when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    ends = consumer.end_offsets(partitions)
    applied = 0
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        if time.monotonic() > deadline:
            msg = f"{what} not read to its end within {timeout_s:.0f}s"
            raise kerrors.KafkaTimeoutError(msg)
        applied += poll()
    return applied


def leave_group(settings: Settings) -> str:
    """Remove this slot's static member from the group at once; return the coordinator's answer's name.

    A static member sends no LeaveGroup when it closes (KIP-345): the group keeps its partitions for
    the session timeout, expecting it back (a rolling restart). A worker that ends because it is done
    (idle exit: a batch run) is not coming back, so it removes its member explicitly and the group
    rebalances now instead of after the session timeout. Call it after the consumer has closed: a live
    member removed this way would only rejoin.
    """
    admin = new_admin(settings, Role.ADMIN)
    try:
        return remove_static_member(admin, settings.group_id, group_instance_id(settings), "idle exit")
    finally:
        admin.close()


class MemberRemover(Protocol):
    """What ``remove_static_member`` needs of kafka-python's ``KafkaAdminClient``."""

    def remove_group_members(self, group_id: str, members: list[Any]) -> Mapping[Any, Any]:
        """Remove members (``MemberToRemove``) from the group: LeaveGroup on their behalf."""
        ...


def remove_static_member(admin: MemberRemover, group_id: str, member: str, reason: str) -> str:
    """Remove the static member ``member`` from ``group_id`` (LeaveGroup for it); return the answer's name.

    ``NoError`` when the coordinator removed it and rebalances the group; raises what the admin client
    raises when no coordinator answers.
    """
    from kafka.admin import MemberToRemove  # noqa: PLC0415 - only on an idle exit or a group heal

    answers = admin.remove_group_members(group_id, [MemberToRemove(group_instance_id=member, reason=reason)])
    error = next(iter(answers.values()), kerrors.NoError)
    return str(getattr(error, "__name__", error))
