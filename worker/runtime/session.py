"""The transactional session: one Kafka transaction per batch, and what to do when one fails.

``begin``/``send``/``commit`` run the batch's transaction (commit and abort under the watchdog:
kafka-python waits on them without a timeout); ``send_within_limit`` is the one send of an output
for the live loop and the replay alike (an output too large for the producer goes out as a small
dead letter); ``fail`` ends a failed batch, undoes the stores'
staged changes and rewinds the consumer to the committed offsets; ``replace`` swaps in a new
producer when the outcome is unknown (KAFKA-17754: never reuse such a producer), which also drops
the partition state (only a read-back knows what committed) and rewinds.

Before any replacement producer is made (its ``init_transactions`` fences whichever process holds
the transactional id) the group coordinator is asked whether the slot is still ours
(``kafka_io.slot_membership``): if another live process took it over (static membership), this one
ends with exit 3 and never touches the transactional id again, so two twins cannot fence each other
in a loop. The same check tells a producer fenced by the broker itself (a transaction that outlived
``transaction_timeout_ms``, e.g. across a broker outage, is aborted by an epoch bump) from one
fenced by a twin: the slot still ours means a fresh producer, not exit 3.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from worker.errors import ClaimsWorkerError
from worker.kafka.failures import (
    PRODUCER_FENCED,
    ClientError,
    Kind,
    RecordTooLarge,
    SlotTaken,
    SlotUnconfirmed,
    StalePartitions,
    Stopped,
    classify,
    interruptible,
)
from worker.kafka.io import IndefiniteOutcome, Membership, bounded, rewind_to_committed
from worker.runtime.route import too_large

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.kafka.io import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from worker.ops.metrics import WorkerMetrics
    from worker.runtime.judge import Record
    from worker.runtime.route import Outgoing
    from worker.state.authorizations import StoreRecord
    from worker.state.store import PartitionStore

__all__ = ["SlotUnconfirmed", "TransactionSession", "send_within_limit"]


class _FirstProducer:
    """The first producer, made on a helper thread so its InitProducerId overlaps the group join."""

    def __init__(self, factory: Callable[[], KafkaProducer]) -> None:
        self.done = threading.Event()
        self.producer: KafkaProducer | None = None
        self.error: BaseException | None = None
        self.duration_s = 0.0
        self._factory = factory
        threading.Thread(target=self._make, name="first-producer", daemon=True).start()

    def _make(self) -> None:
        started = time.perf_counter()
        try:
            self.producer = self._factory()
        except BaseException as exc:  # noqa: BLE001 - handed to the poll thread by ``take``
            self.error = exc
        finally:
            self.duration_s = time.perf_counter() - started
            self.done.set()

    def take(self, stop: threading.Event) -> KafkaProducer:
        """Wait until made (``Stopped`` if ``stop`` is set first); return it, or raise the factory's error."""
        while not self.done.wait(0.05):
            if stop.is_set():
                raise Stopped
        if self.error is not None:
            raise self.error
        assert self.producer is not None  # noqa: S101 - set whenever no error was
        return self.producer


def send_within_limit(
    send: Callable[[Outgoing], object],
    out: Outgoing,
    record: Record,
    *,
    codec: Codec,
    settings: Settings,
    at: datetime,
    headers: Sequence[tuple[str, bytes]] = (),
) -> Outgoing:
    """Send ``out`` for ``record`` with ``send``; return what was sent (``out``, or its dead letter).

    When the producer refuses ``out`` as larger than its ``max_request_size`` (kafka-python raises
    ``MessageSizeTooLargeError`` before it buffers anything, so the open transaction is intact), a
    retry would fail the same way for ever: send ``route.too_large``'s small TOO_LARGE dead letter
    instead, on ``settings.dead_letter_topic``, with ``headers`` added (a replay's own). Raises what
    ``send`` raises otherwise.
    """
    try:
        send(out)
    except RecordTooLarge:
        out = too_large(record, out, codec=codec, settings=settings, at=at)
        out.headers.extend(headers)
        send(out)
    return out


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
        membership: Callable[[], Membership] = lambda: Membership.OURS,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self._factory = producer_factory
        self.stores = tuple(stores)
        self.metrics = metrics
        self.log = log
        self._on_replaced = on_replaced
        self._membership = membership  # kafka_io.slot_membership: does the group still know us as the slot?
        self._fault = fault  # test-only abort hook (tests.chaos.faults); None in production
        self.producer: KafkaProducer | None = None
        self.replace_pending = True  # the first producer is made by the loop, under its backoff
        self.stop = threading.Event()  # the loop's stop event: a replacement gives way to it
        self._started = False
        self._first: _FirstProducer | None = None

    def prepare(self) -> None:
        """Start making the first producer on a helper thread (``recover`` takes it when it is needed).

        Its ``init_transactions`` (which also waits for the broker to abort what a killed predecessor
        left open) then overlaps the group join and the state read-back instead of preceding them.
        """
        if self.producer is None and self.replace_pending and not self._started and self._first is None:
            self._first = _FirstProducer(self._factory)

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
        producer, timeout, fault = self._producer(), self.settings.commit_timeout_s, self._fault
        if fault is not None:
            fault("offsets")
        bounded(
            lambda: producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata()),
            timeout,
            "send_offsets_to_transaction",
        )
        if fault is not None:
            fault("commit")
        bounded(producer.commit_transaction, timeout, "commit_transaction")
        for store in self.stores:
            store.commit()
        self.metrics.transaction_committed()

    def fail(self, cause: BaseException) -> bool:
        """End a failed batch: undo the stores' staged changes, then abort (or replace) and rewind.

        Returns True when the batch is to be retried (after the backoff), False when ``cause`` ends
        the process; after such a fatal error (not authorized, unsupported) the producer is not
        touched again. A fenced producer is retried with a fresh one when the group still knows this
        process as the slot's member, and raises ``FencedInstanceIdError`` (exit 3) when another
        process holds the slot.
        """
        for store in self.stores:
            store.abort()
        if isinstance(cause, PRODUCER_FENCED):
            return self._fenced(cause)
        if self.producer is None or classify(cause) in (
            Kind.FENCED,
            Kind.NOT_AUTHORIZED,
            Kind.UNSUPPORTED_VERSION,
        ):
            return classify(cause) is Kind.TRANSIENT
        if isinstance(cause, (IndefiniteOutcome, StalePartitions)):
            self.replace(f"{type(cause).__name__}: {cause}")
            return True
        self.log.warning("transaction_aborting", error=type(cause).__name__)
        try:
            bounded(self.producer.abort_transaction, self.settings.commit_timeout_s, "abort_transaction")
        except (IndefiniteOutcome, ClientError) as abort_exc:
            if isinstance(abort_exc, PRODUCER_FENCED):
                return self._fenced(abort_exc)
            if classify(abort_exc) is Kind.TRANSIENT:
                self.replace(f"abort failed: {type(abort_exc).__name__}")
                return True
            raise
        self.metrics.transaction_aborted()
        rewind_to_committed(self.consumer)
        return classify(cause) is Kind.TRANSIENT

    def _fenced(self, cause: BaseException) -> bool:
        """Handle a fenced producer: exit 3 if a twin holds the slot, else retry with a fresh producer.

        Kafka's transaction coordinator fences a producer in two cases: a newer producer with the same
        transactional id (a twin, or this process's own earlier replacement), or its own abort of a
        transaction open longer than ``transaction_timeout_ms`` (an epoch bump: our producer sees
        ProducerFenced or InvalidProducerEpoch though no twin exists). The group coordinator tells
        them apart: a twin took our static member id when it joined.
        """
        state = self._membership()
        if state is Membership.FENCED:
            raise self._slot_lost() from cause
        self.log.warning(
            "producer_fenced_slot_ours" if state is Membership.OURS else "producer_fenced_slot_unconfirmed",
            error=type(cause).__name__,
            transactional_id=self.settings.transactional_id,
            group_id=self.settings.group_id,
        )
        # The replacement (next pass, under the backoff) asks the group again before init_transactions.
        self.metrics.transaction_aborted()
        self.replace_pending = True
        return True

    def _slot_lost(self) -> SlotTaken:
        """Return the error that ends the process when another live process holds this slot (exit 3)."""
        return SlotTaken((self.settings.group_id, self.settings.instance))

    def _confirm_slot(self) -> None:
        """Before a replacement producer fences the transactional id: make sure the slot is still ours.

        Raises ``FencedInstanceIdError`` (exit 3) when another process holds it, ``SlotUnconfirmed``
        (transient: the replacement waits for the next pass) when the group coordinator does not answer.
        """
        state = self._membership()
        if state is Membership.FENCED:
            raise self._slot_lost()
        if state is Membership.UNKNOWN:
            msg = f"group {self.settings.group_id!r} did not confirm slot {self.settings.instance!r}"
            raise SlotUnconfirmed(msg)

    # --- the producer ----------------------------------------------------------------------------
    def replace(self, why: str) -> None:
        """Never reuse a producer after an unknown outcome: make a new one (it fences the old) and rewind."""
        self.log.warning("producer_replaced", error=why, transactional_id=self.settings.transactional_id)
        self.metrics.transaction_aborted()
        if self._first is not None:  # the first producer, still being made: take it, then replace it
            self.recover()
        self.replace_pending = True
        self.recover()

    def recover(self, *, block: bool = True) -> None:
        """Swap in a fresh producer and rewind, if an earlier failure (or the start) left that to do.

        The new producer's ``init_transactions`` bumps the epoch and aborts whatever the old one left
        open; the stores drop their state and read it back; the consumer rewinds to what the group
        really committed. Any step may raise a transient error: the work stays pending for the next pass.
        With ``block=False`` a first producer still being made (``prepare``) is not waited for.
        """
        if not self.replace_pending:
            return
        if self._first is not None:
            if not block and not self._first.done.is_set():
                return
            first, self._first = self._first, None
            self.producer = first.take(self.stop)  # its error: the next pass makes one here, as below
            self._ready(first.duration_s)
            self._started = True
            self.replace_pending = False
            return
        old, self.producer = self.producer, None  # failed: never used again, whatever comes next
        if old is not None:
            threading.Thread(target=_abandon, args=(old,), daemon=True).start()
        if self._started:  # the first producer needs no check: a process that just started is the newest
            self._confirm_slot()
        for store in self.stores:
            store.forget_all()
        # init_transactions can block for max_block_ms: a stop request must not wait for it.
        started = time.perf_counter()
        self.producer = interruptible(self._factory, self.stop, "producer")
        self._ready(time.perf_counter() - started)
        if self._started:
            self.metrics.producer_recreated()
            self._on_replaced()
            rewind_to_committed(self.consumer)
            self.log.info("recovered", transactional_id=self.settings.transactional_id)
        self._started = True
        self.replace_pending = False

    def _ready(self, duration_s: float) -> None:
        self.log.info(
            "producer_ready",
            transactional_id=self.settings.transactional_id,
            duration_ms=round(duration_s * 1e3, 1),
        )

    def close(self) -> None:
        """Close the producer (and a first one made but never taken); safe to call twice."""
        first, self._first = self._first, None
        if first is not None and first.producer is not None:
            first.producer.close(timeout=5)
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.close(timeout=5)

    def _producer(self) -> KafkaProducer:
        if self.producer is None:
            msg = "the transactional producer is not started"
            raise ClaimsWorkerError(msg)
        return self.producer
