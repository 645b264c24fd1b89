"""The transactional session: one Kafka transaction per batch, and what to do when one fails.

``begin``/``send``/``commit`` run the batch's transaction (commit and abort under the watchdog:
kafka-python waits on them without a timeout); ``abort`` ends a failed batch, undoes the stores'
staged changes and rewinds the consumer to the committed offsets; ``replace`` swaps in a new
producer when the outcome is unknown (KAFKA-17754: never reuse such a producer), which also drops
the partition state (only a read-back knows what committed) and rewinds.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from kafka import errors as kerrors

from worker.errors import ClaimsWorkerError
from worker.runtime.failures import Kind, StalePartitions, classify, interruptible
from worker.runtime.kafka_io import IndefiniteOutcome, bounded, rewind_to_committed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.ops.metrics import WorkerMetrics
    from worker.runtime.kafka_io import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from worker.runtime.route import Outgoing
    from worker.state.authorizations import StoreRecord
    from worker.state.store import PartitionStore

__all__ = ["TransactionSession"]


def _abandon(producer: KafkaProducer) -> None:
    """Close a producer that must not be used again, without waiting and without a traceback."""
    with contextlib.suppress(Exception):  # it is being discarded because it failed; nothing to report
        producer.close(timeout=0)


class TransactionSession:
    """Owns the transactional producer and the batch's transaction."""

    def __init__(  # noqa: PLR0917 - the collaborators, named
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer_factory: Callable[[], KafkaProducer],
        stores: Sequence[PartitionStore],
        metrics: WorkerMetrics,
        log: FilteringBoundLogger,
        *,
        on_replaced: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self._factory = producer_factory
        self.stores = tuple(stores)
        self.metrics = metrics
        self.log = log
        self._on_replaced = on_replaced
        self.producer: KafkaProducer | None = None
        self.replace_pending = True  # the first producer is made by the loop, under its backoff
        self.stop = threading.Event()  # the loop's stop event: a replacement gives way to it
        self._started = False

    # --- the batch's transaction -----------------------------------------------------------------
    def begin(self) -> None:
        """Open the batch's transaction."""
        self._producer().begin_transaction()

    def send(self, out: Outgoing) -> None:
        """Send one record inside the open transaction (``MessageSizeTooLargeError`` is the caller's)."""
        try:
            self._producer().send(
                out.topic, value=out.value, key=out.key, partition=out.partition, headers=out.headers
            )
        except ValueError as exc:
            # kafka-python: "Unrecognized partition" when its metadata predates added partitions.
            raise StalePartitions(str(exc)) from exc

    def send_record(self, record: StoreRecord) -> None:
        """Send one state record (e.g. an authorization on file) inside the open transaction."""
        self._producer().send(record.topic, value=record.value, key=record.key, partition=record.partition)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Add ``offsets`` to the transaction and commit it; then the stores keep the batch's changes.

        Raises what failed; the caller then calls ``fail`` with it.
        """
        producer, timeout = self._producer(), self.settings.commit_timeout_s
        bounded(
            lambda: producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata()),
            timeout,
            "send_offsets_to_transaction",
        )
        bounded(producer.commit_transaction, timeout, "commit_transaction")
        for store in self.stores:
            store.commit()
        self.metrics.transaction_committed()

    def fail(self, cause: BaseException) -> None:
        """End a failed batch: undo the stores' staged changes, then abort (or replace) and rewind.

        After a fatal error (fenced, not authorized) the producer is not touched again: the process ends.
        """
        for store in self.stores:
            store.abort()
        if self.producer is None or classify(cause) in (
            Kind.FENCED,
            Kind.NOT_AUTHORIZED,
            Kind.UNSUPPORTED_VERSION,
        ):
            return
        if isinstance(cause, (IndefiniteOutcome, StalePartitions)):
            self.replace(f"{type(cause).__name__}: {cause}")
            return
        self.log.warning("transaction_aborting", error=type(cause).__name__)
        try:
            bounded(self.producer.abort_transaction, self.settings.commit_timeout_s, "abort_transaction")
        except (IndefiniteOutcome, kerrors.KafkaError) as abort_exc:
            if classify(abort_exc) is Kind.TRANSIENT:
                self.replace(f"abort failed: {type(abort_exc).__name__}")
                return
            raise
        self.metrics.transaction_aborted()
        rewind_to_committed(self.consumer)

    # --- the producer ----------------------------------------------------------------------------
    def replace(self, why: str) -> None:
        """Never reuse a producer after an unknown outcome: make a new one (it fences the old) and rewind."""
        self.log.warning("producer_replaced", error=why, transactional_id=self.settings.transactional_id)
        self.metrics.transaction_aborted()
        self.replace_pending = True
        self.recover()

    def recover(self) -> None:
        """Swap in a fresh producer and rewind, if an earlier failure (or the start) left that to do.

        The new producer's ``init_transactions`` bumps the epoch and aborts whatever the old one left
        open; the stores drop their state and read it back; the consumer rewinds to what the group
        really committed. Any step may raise a transient error: the work stays pending for the next pass.
        """
        if not self.replace_pending:
            return
        old, self.producer = self.producer, None
        if old is not None:
            threading.Thread(target=_abandon, args=(old,), daemon=True).start()
        for store in self.stores:
            store.forget_all()
        # init_transactions can block for max_block_ms: a stop request must not wait for it.
        self.producer = interruptible(self._factory, self.stop, "producer")
        if self._started:
            self.metrics.producer_recreated()
            self._on_replaced()
            rewind_to_committed(self.consumer)
            self.log.info("recovered", transactional_id=self.settings.transactional_id)
        self._started = True
        self.replace_pending = False

    def close(self) -> None:
        """Close the producer; safe to call twice."""
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.close(timeout=5)

    def _producer(self) -> KafkaProducer:
        if self.producer is None:
            msg = "the transactional producer is not started"
            raise ClaimsWorkerError(msg)
        return self.producer
