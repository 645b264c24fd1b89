"""Partition state that keeps step with the group's assignment.

On assignment a partition is paused, its stores are restored on a background thread (a read-back can
take many seconds, longer than the poll loop may stall), and it is resumed once every store is loaded,
as Kafka Streams and quix-streams restore state. On revoke or loss its state is dropped at once.
Partition counts are checked again on every assignment, on the poll thread.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.kafka.cluster import cluster_changed, consumer_cluster_id
from worker.kafka.failures import WrappedError
from worker.kafka.io import RebalanceListener, TopicMissing, bounded, check_topics
from worker.ops.labels import RebalanceKind

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.kafka.io import KafkaConsumer, TopicPartition
    from worker.ops.metrics import WorkerMetrics
    from worker.runtime.judge import Record
    from worker.state.store import PartitionStore, Restored

__all__ = ["Listener", "PartitionState", "RestoreFailed"]


class RestoreFailed(WrappedError):  # noqa: N818 - carries the read-back's own error as its cause
    """A background read-back failed; raised on the poll thread so the loop's backoff handles the cause.

    It is what its cause is (``failures.classify``): a timed-out read is retried on the outage clock (the
    partition's restore starts again), a refused one is exit 5; before it is raised the topics are
    checked, so a results topic deleted or recreated smaller under the read is exit 2, named.
    """


@dataclass
class _Task:
    """One partition's restore in flight."""

    generation: int
    cancel: threading.Event = field(default_factory=threading.Event)


class PartitionState:
    """The assigned partitions, their stores, and the restores in flight."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        stores: Sequence[PartitionStore],
        metrics: WorkerMetrics,
        log: FilteringBoundLogger,
        *,
        claims_partitions: int | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.stores = tuple(stores)
        self.metrics = metrics
        self.log = log
        self.assigned: set[TopicPartition] = set()
        self.claims_partitions = claims_partitions
        self._tasks: dict[TopicPartition, _Task] = {}
        self._generation = 0
        self._done: queue.SimpleQueue[tuple[TopicPartition, int, list[Restored] | BaseException]] = (
            queue.SimpleQueue()
        )
        self._check_pending = False
        self.cluster_id: str | None = None  # the cluster id at the first assignment's check
        # A check passed (the start-up one, when it counted the claims partitions): a topic missing later
        # is the group watch's to judge, even if it goes before the first assignment's own check.
        self._checked = claims_partitions is not None
        self.grew = False  # the claims topic gained partitions: the producer's metadata is stale
        # Partitions revoked or lost since the loop last looked (``take_gone``): an open transaction
        # that holds their records must not commit.
        self._gone: set[TopicPartition] = set()

    # --- rebalance hooks (inside poll(), on kafka-python's IO thread: no network calls here) -------
    def assigned_now(self, partitions: Sequence[TopicPartition]) -> None:
        """Pause new partitions and start restoring their stores; counts are checked after the poll."""
        if not partitions:
            return
        self.assigned.update(partitions)
        self._check_pending = True
        self.metrics.rebalance(RebalanceKind.ASSIGNED, len(partitions))
        self.metrics.set_assigned(len(self.assigned))
        self.log.info("partitions_assigned", partitions=sorted(tp.partition for tp in partitions))
        self._restore(partitions)

    def gone(self, partitions: Sequence[TopicPartition], kind: RebalanceKind) -> None:
        """Forget revoked or lost partitions' state and cancel their restores."""
        if not partitions:  # kafka-python reports an empty revoke on the first join
            return
        self._gone.update(partitions)
        for tp in partitions:
            self.assigned.discard(tp)
            task = self._tasks.pop(tp, None)
            if task is not None:
                task.cancel.set()
            for store in self.stores:
                store.forget(tp.partition)
            self.metrics.clear_lag(tp.partition)
        self.metrics.rebalance(kind, len(partitions))
        self.metrics.set_assigned(len(self.assigned))
        self.log.info(
            f"partitions_{kind.value}",  # noqa: G004 - a structlog event name, not a %-format message
            partitions=sorted(tp.partition for tp in partitions),
        )

    # --- on the poll thread ----------------------------------------------------------------------
    def restore_missing(self) -> None:
        """Restore every assigned partition some store has no state for (after a producer replacement).

        Restores in flight started before the replacement are restarted: the old producer's open
        transaction may have held back what they read.
        """
        for task in self._tasks.values():
            task.cancel.set()
        self._tasks.clear()
        self._restore(sorted(self.assigned, key=lambda tp: tp.partition))
        self._check_pending = True  # a replacement may follow an output topic shrunk under the producer

    def settle(self) -> None:
        """After a poll: check partition counts if the assignment changed, install finished restores."""
        if self._check_pending:
            counts = self._check_topics(missing_ok=True)
            self._check_pending = False
            claims = counts.get(self.settings.claims_topic, self.claims_partitions)
            if self.claims_partitions is not None and claims is not None and claims > self.claims_partitions:
                self.log.info("claims_partitions_added", n=claims)
                self.grew = True
            self.claims_partitions = claims
        while True:
            try:
                tp, generation, outcome = self._done.get_nowait()
            except queue.Empty:
                return
            task = self._tasks.get(tp)
            if task is None or task.generation != generation or tp not in self.assigned:
                continue  # revoked or superseded while it ran
            del self._tasks[tp]
            if isinstance(outcome, BaseException):
                self._restore([tp])  # again, while the loop backs off; still paused
                self._check_topics(missing_ok=True)  # a results topic shrunk under the read: exit 2, named
                msg = f"reading back partition {tp.partition}'s state failed ({type(outcome).__name__})"
                raise RestoreFailed(msg) from outcome
            self._install(tp, outcome)

    def _check_topics(self, *, missing_ok: bool = False) -> dict[str, int]:
        """Return fresh partition counts; ``ConfigError`` (exit 2) names a topic missing or too small.

        With ``missing_ok``, a topic deleted after the first check passed returns ``{}`` instead: the
        group watch names it and ends the worker only past CLAIMS_TOPIC_MISSING_LIMIT_S (it may be
        recreated); the first check fails at once, as at start. The same fresh metadata carries the
        cluster id: brokers that now answer another one than at the first check (the broker replaced by
        a fresh cluster; the group rejoined there) end the worker with exit 2 before it judges a record.
        """
        try:
            counts = bounded(  # IndefiniteOutcome: transient, checked again
                lambda: check_topics(self.consumer, self.settings, refresh=True),
                self.settings.commit_timeout_s,
                "topic metadata",
            )
        except TopicMissing:
            if not (missing_ok and self._checked):
                raise
            return {}
        self._checked = True
        now = consumer_cluster_id(self.consumer)
        if self.cluster_id is None:
            self.cluster_id = now
        elif now is not None and now != self.cluster_id:
            raise cluster_changed(self.settings.bootstrap_servers, self.cluster_id, now)
        return counts

    def loaded(
        self, batch: Mapping[TopicPartition, Sequence[Record]]
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        """Return ``batch`` without partitions whose state is not loaded (sought back: they come again)."""
        if all(self._is_loaded(tp) for tp in batch):
            return batch
        kept = {}
        for tp, records in batch.items():
            if self._is_loaded(tp):
                kept[tp] = records
            else:
                self.consumer.seek(tp, records[0].offset)
        return kept

    def take_gone(self) -> set[TopicPartition]:
        """Return the partitions revoked or lost since the last call (inside polls) and forget them."""
        gone, self._gone = self._gone, set()
        return gone

    @property
    def restoring(self) -> int:
        """How many partitions are being restored."""
        return len(self._tasks)

    def close(self) -> None:
        """Cancel every restore in flight."""
        for task in self._tasks.values():
            task.cancel.set()
        self._tasks.clear()

    # --- internals --------------------------------------------------------------------------------
    def _is_loaded(self, tp: TopicPartition) -> bool:
        return tp not in self._tasks and all(store.is_loaded(tp.partition) for store in self.stores)

    def _restore(self, partitions: Sequence[TopicPartition]) -> None:
        """Pause and start restoring those of ``partitions`` that some store holds no state for."""
        partitions = [
            tp
            for tp in partitions
            if tp not in self._tasks and not all(store.is_loaded(tp.partition) for store in self.stores)
        ]
        if not partitions:
            return
        self.consumer.pause(*partitions)
        for tp in partitions:
            self._generation += 1
            task = _Task(self._generation)
            self._tasks[tp] = task
            threading.Thread(
                target=self._run_restore, args=(tp, task), name=f"restore-{tp.partition}", daemon=True
            ).start()

    def _run_restore(self, tp: TopicPartition, task: _Task) -> None:
        """Read every store of ``tp`` back (on a restore thread) and hand the result to the poll thread."""
        try:
            restored = [store.restore(tp.partition, task.cancel) for store in self.stores]
        except Exception as exc:  # noqa: BLE001 - handed to the poll thread
            self._done.put((tp, task.generation, exc))
            return
        self._done.put((tp, task.generation, restored))

    def _install(self, tp: TopicPartition, restored: list[Restored]) -> None:
        started = time.perf_counter()
        for store, state in zip(self.stores, restored, strict=True):
            store.load(state)
            size = len(state.state) if isinstance(state.state, list) else None
            if state.complete:
                self.log.info("state_restored", store=store.name, partition=tp.partition, n=size)
            else:
                self.metrics.state_restore_incomplete(store.name)
                self.log.warning(
                    "state_restore_incomplete",
                    store=store.name,
                    partition=tp.partition,
                    n=size,
                    detail=state.detail,
                )
        self.consumer.resume(tp)
        self.log.debug(
            "partition_resumed",
            partition=tp.partition,
            duration_ms=round((time.perf_counter() - started) * 1e3, 2),
        )


class Listener(RebalanceListener):  # type: ignore[misc]
    """Hands the group's assignment changes to ``PartitionState`` (runs inside ``poll()``)."""

    def __init__(self, state: PartitionState) -> None:
        self._state = state

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Forget revoked partitions."""
        self._state.gone(revoked, RebalanceKind.REVOKED)

    def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        """Forget lost partitions."""
        self._state.gone(lost, RebalanceKind.LOST)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Pause and restore new partitions."""
        self._state.assigned_now(assigned)
