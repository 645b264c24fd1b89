"""The consume → decode → decide → publish loop.

One Kafka transaction per batch carries the batch's results and its consumer offsets together.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from kafka import errors as kerrors
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from worker import __version__
from worker.contracts.model import CriterionStatus, Outcome
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_rejected, build_result
from worker.errors import (
    BadRecord,
    ClaimsWorkerError,
    DeadLetterClass,
    ExitCode,
    MalformedClaim,
    RegistryUnavailable,
)
from worker.ops.metrics import RebalanceKind, WorkerMetrics
from worker.policy import Facts, Policy, decide, default_policy
from worker.runtime.kafka_io import (
    EVENT_ID_HEADER,
    FATAL_ERRORS,
    IndefiniteOutcome,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
    bounded,
    rewind_to_committed,
)
from worker.state.dedupe import SeenEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec

__all__ = ["BatchReport", "ExitCode", "Outgoing", "Pipeline", "adjudicate"]


class _Record(Protocol):
    """What the pipeline reads from a consumed record (kafka-python's ConsumerRecord has it all)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish for one consumed record: a result or a dead letter."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    outcome: Outcome | None = None
    error_class: DeadLetterClass | None = None
    reason_codes: tuple[str, ...] = ()
    criteria: tuple[tuple[str, CriterionStatus], ...] = ()
    claim_id: str | None = None
    event_time: datetime | None = None
    decide_s: float = 0.0


@dataclass
class BatchReport:
    """What one committed batch did, for the batch log line and tests."""

    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    duration_s: float = 0.0


class _DuplicateEvent(BadRecord):
    """The event id was already published for this partition: the redelivery is dead-lettered."""

    def __init__(self) -> None:
        super().__init__(DeadLetterClass.DUPLICATE_EVENT, "event_id: already adjudicated (redelivered event)")


def adjudicate(
    record: _Record,
    *,
    codec: Codec,
    settings: Settings,
    seen: SeenEvents,
    policy: Policy | None,
    decided_at: datetime,
) -> Outgoing:
    """Turn one consumed record into the one record to publish for it; never raises for bad input.

    The output goes to the input's partition number, so the results of partition p can be read back
    from partition p after a restart. Bad records become dead letters carrying the original bytes.
    """
    source = SourceCoordinates(record.topic, record.partition, record.offset)
    active = policy if policy is not None else default_policy()
    try:
        claim = codec.decode_claim(record.value)
        if seen.seen(record.partition, claim.event_id):
            raise _DuplicateEvent
    except MalformedClaim as error:
        # A decodable claim with a readable claim id and a malformed field: answer it (REJECTED, M/I codes).
        if error.event_id is not None and seen.seen(record.partition, error.event_id):
            return _dead_letter(
                record,
                _DuplicateEvent(),
                record.value,
                list(record.headers or ()),
                codec,
                settings,
                decided_at,
            )
        rejected = build_rejected(
            error,
            source=source,
            policy_id=active.policy_id,
            policy_version=active.version,
            decided_at=decided_at,
            worker_version=__version__,
        )
        if error.event_id is not None:
            seen.stage(record.partition, error.event_id)
        return Outgoing(
            topic=settings.results_topic,
            partition=record.partition,
            key=error.claim_id.encode(),
            value=codec.encode_result(rejected),
            headers=[(EVENT_ID_HEADER, error.event_id.encode())] if error.event_id is not None else [],
            outcome=Outcome.REJECTED,
            claim_id=error.claim_id,
            event_time=error.event_time,
        )
    except BadRecord as error:
        return _dead_letter(
            record, error, record.value, list(record.headers or ()), codec, settings, decided_at
        )
    tick = time.perf_counter()
    # The prescriber directory's lookups are wired by the runtime; without them, Facts() = no directory.
    decision = decide(claim, Facts(), active, decided_at, automated_denials=settings.automated_denials)
    decide_s = time.perf_counter() - tick
    seen.stage(record.partition, claim.event_id)
    result = build_result(claim, decision, source=source, worker_version=__version__)
    reasons = tuple(c.reason_code for c in decision.criteria if c.status != CriterionStatus.MET)
    return Outgoing(
        topic=settings.results_topic,
        partition=record.partition,
        key=claim.claim_id.encode(),
        value=codec.encode_result(result),
        headers=[(EVENT_ID_HEADER, claim.event_id.encode())],
        outcome=decision.outcome,
        reason_codes=reasons
        if decision.outcome in (Outcome.DENIED, Outcome.PENDED, Outcome.REFERRED)
        else (),
        criteria=tuple((c.criterion_id, c.status) for c in decision.criteria),
        claim_id=claim.claim_id,
        event_time=claim.event_time,
        decide_s=decide_s,
    )


def _abandon(producer: KafkaProducer) -> None:
    """Close a producer that must not be used again, without waiting and without a traceback."""
    with contextlib.suppress(Exception):  # it is being discarded because it failed; nothing to report
        producer.close(timeout=0)


def _transient(exc: Exception) -> bool:
    """Tell whether an infrastructure error may go away by itself (timeouts, lost connections, registry)."""
    return bool(getattr(exc, "retriable", False)) or isinstance(
        exc, (kerrors.KafkaConnectionError, RegistryUnavailable)
    )


def _send(producer: KafkaProducer, out: Outgoing) -> None:
    producer.send(out.topic, value=out.value, key=out.key, partition=out.partition, headers=out.headers)


def _too_large(
    record: _Record, rejected: Outgoing, *, codec: Codec, settings: Settings, at: datetime
) -> Outgoing:
    """Return a dead letter, without the original bytes, for a record whose output is too large to send.

    The original stays readable in the input topic at the source coordinates the dead letter names.
    """
    error = BadRecord(
        DeadLetterClass.TOO_LARGE,
        f"output of {len(rejected.value)} bytes exceeds the producer's max_request_size; "
        "original value omitted, read it at the source coordinates",
    )
    return _dead_letter(record, error, None, [], codec, settings, at)


def _dead_letter(  # noqa: PLR0917 - private, called from two places with the same order
    record: _Record,
    error: BadRecord,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
    codec: Codec,
    settings: Settings,
    at: datetime,
) -> Outgoing:
    """Return the dead letter for ``record`` (on its partition number), carrying ``value`` and ``headers``."""
    letter = build_dead_letter(
        key=record.key,
        value=value,
        headers=headers,
        source=SourceCoordinates(record.topic, record.partition, record.offset),
        error=error,
        worker_version=__version__,
        dead_lettered_at=at,
    )
    return Outgoing(
        topic=settings.dead_letter_topic,
        partition=record.partition,
        key=record.key,
        value=codec.encode_dead_letter(letter),
        headers=[("claims-worker.error-class", error.error_class.value.encode())],
        error_class=error.error_class,
    )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the duplicate filter and gauges in step with the group's assignment.

    Runs inside ``poll()``, when no transaction is open, so it never touches the producer.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._pipeline.partitions_gone(revoked, RebalanceKind.REVOKED)

    def on_partitions_lost(self, lost: Sequence[TopicPartition]) -> None:
        self._pipeline.partitions_gone(lost, RebalanceKind.LOST)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._pipeline.partitions_assigned(assigned)


class Pipeline:
    """Reads claims in batches and publishes one result or dead letter per record, exactly once."""

    def __init__(  # noqa: PLR0917 - cli, tests and the bench pass the collaborators positionally
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer_factory: Callable[[], KafkaProducer],
        codec: Codec,
        metrics: WorkerMetrics,
        log: FilteringBoundLogger,
        *,
        policy: Policy | None = None,
        readback: Callable[[int], list[str]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self._producer_factory = producer_factory
        self.producer: KafkaProducer | None = None
        self.codec = codec
        self.metrics = metrics
        self.log = log
        self.policy = policy
        self._readback = readback
        self._clock = clock
        self.seen = SeenEvents(settings.dedup_window)
        self._assigned: set[TopicPartition] = set()
        self._last_poll_ok = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._lag_updated = 0.0
        self._recovery_pending = False

    # --- health -----------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """Ready when partitions are assigned, the loop polls, and a broker connection is open."""
        if not self._assigned:
            return False, "no partitions assigned"
        if time.monotonic() - self._last_poll_ok > max(30.0, self.settings.poll_timeout_ms / 250):
            return False, "the consumer has not polled recently"
        if self._broker_connections() == 0:
            return False, "no open connection to any broker"
        return True, f"{len(self._assigned)} partitions assigned"

    def _broker_connections(self) -> float | None:
        """Open broker connections per the consumer's own metrics; ``None`` when they cannot be read."""
        try:
            # Read from the health server's thread while the IO thread may add metrics: tolerate races.
            value = self.consumer.metrics().get("consumer-metrics", {}).get("connection-count")
        except Exception:  # noqa: BLE001 - a health probe must answer, not crash
            return None
        return None if value is None else float(value)

    # --- rebalance hooks --------------------------------------------------------------------------
    def partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Note new partitions; their duplicate filters load lazily before their first batch."""
        self._assigned.update(assigned)
        self.metrics.rebalance(RebalanceKind.ASSIGNED, len(assigned))
        self.metrics.set_assigned(len(self._assigned))
        self.log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))

    def partitions_gone(self, partitions: Sequence[TopicPartition], kind: RebalanceKind) -> None:
        """Forget revoked or lost partitions' state."""
        if not partitions:  # kafka-python reports an empty revoke on the first join
            return
        for tp in partitions:
            self._assigned.discard(tp)
            self._committed.pop(tp, None)
            self.seen.forget(tp.partition)
            self.metrics.clear_lag(tp.partition)
        self.metrics.rebalance(kind, len(partitions))
        self.metrics.set_assigned(len(self._assigned))
        self.log.info(
            f"partitions_{kind.value}",  # noqa: G004 - a structlog event name, not a %-format message
            partitions=sorted(tp.partition for tp in partitions),
        )

    # --- the loop ---------------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Join the group on the claims topic with this pipeline's rebalance listener."""
        self.consumer.subscribe([self.settings.claims_topic], listener=_Listener(self))

    def run(self, stop: threading.Event) -> int:
        """Process batches until ``stop`` is set (or the idle limit passes); return the exit code.

        A transient Kafka error (timeout, lost connection) anywhere in the loop leaves the state of the
        open batch unknown: the worker backs off, replaces its producer and rewinds to the committed
        offsets, and keeps doing so until the brokers answer again or ``outage_limit_s`` has passed.
        """
        self.producer = self._producer_factory()
        self.subscribe()
        idle_since = time.monotonic()
        outage_since: float | None = None
        attempt = 0
        try:
            while not stop.is_set():
                try:
                    self._recover_if_pending()
                    batch = self.consumer.poll(
                        timeout_ms=self.settings.poll_timeout_ms,
                        max_records=self.settings.batch_max_records,
                    )
                    self._last_poll_ok = time.monotonic()
                    self._update_lag()
                    if not batch:
                        limit = self.settings.exit_when_idle_s
                        if limit is not None and self._assigned and time.monotonic() - idle_since > limit:
                            self.log.info("idle_exit", idle_s=limit)
                            break
                        continue
                    idle_since = time.monotonic()
                    self.process(batch)
                    outage_since, attempt = None, 0
                except FATAL_ERRORS:
                    raise
                except (kerrors.KafkaError, RegistryUnavailable) as exc:
                    if not _transient(exc):
                        raise
                    now = time.monotonic()
                    outage_since = now if outage_since is None else outage_since
                    if now - outage_since > self.settings.outage_limit_s:
                        raise
                    attempt += 1
                    delay = min(0.5 * 2 ** (attempt - 1), 10.0)
                    self.log.warning(
                        "kafka_transient", error=type(exc).__name__, attempt=attempt, backoff_s=delay
                    )
                    self.seen.discard()
                    self._recovery_pending = True
                    stop.wait(delay)
        except FATAL_ERRORS as exc:
            self.log.error(  # noqa: TRY400 - no traceback: it can carry record data
                "producer_fenced", error=type(exc).__name__, transactional_id=self.settings.transactional_id
            )
            return ExitCode.FENCED
        except (kerrors.KafkaError, RegistryUnavailable) as exc:
            self.log.error("kafka_fatal", error=type(exc).__name__)  # noqa: TRY400 - as above
            return ExitCode.KAFKA_FATAL
        finally:
            self.close()
        return ExitCode.OK

    def close(self) -> None:
        """Close the consumer (leaving the group) and the producer; safe to call twice."""
        if self.producer is not None:
            self.producer.close(timeout=5)
            self.producer = None
        self.consumer.close(autocommit=False)

    def _load_seen(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            if self.seen.is_loaded(tp.partition):
                continue
            ids = self._readback(tp.partition) if self._readback is not None else []
            self.seen.load(tp.partition, ids)
            self.log.info("dedup_loaded", partition=tp.partition, n=len(ids))

    def process(self, batch: Mapping[TopicPartition, Sequence[_Record]]) -> BatchReport | None:
        """Adjudicate one polled batch and commit it with its offsets in one transaction.

        Each record is sent as soon as it is decided, so the producer's I/O overlaps the next
        record's work; nothing is visible to read_committed readers until the commit. Returns the
        report, or ``None`` when the batch was aborted and the consumer rewound (its records come
        again). Raises the fatal Kafka errors (fenced producer) to the caller.
        """
        started = time.perf_counter()
        self._load_seen(list(batch))
        offsets = self._next_offsets(batch)
        producer = self.producer
        if producer is None:
            msg = "pipeline producer is not started"
            raise ClaimsWorkerError(msg)
        decided_at = self._clock()
        outgoing: list[Outgoing] = []
        try:
            producer.begin_transaction()
            for records in batch.values():
                for record in records:
                    out = adjudicate(
                        record,
                        codec=self.codec,
                        settings=self.settings,
                        seen=self.seen,
                        policy=self.policy,
                        decided_at=decided_at,
                    )
                    try:
                        _send(producer, out)
                    except kerrors.MessageSizeTooLargeError:
                        # Retrying would fail the same way forever: publish a small dead letter instead.
                        out = _too_large(record, out, codec=self.codec, settings=self.settings, at=decided_at)
                        _send(producer, out)
                    outgoing.append(out)
        except FATAL_ERRORS:
            self.seen.discard()
            raise
        except RegistryUnavailable as exc:
            # Infrastructure, not bad input: abort, then let the loop back off like a broker outage.
            self._abort(producer, exc)
            raise
        except (kerrors.KafkaError, ClaimsWorkerError) as exc:
            # A send failed: nothing of this batch may land.
            self._abort(producer, exc)
            return None
        if not self._commit(producer, offsets):
            return None
        return self._committed_batch(batch, outgoing, offsets, started)

    def _next_offsets(
        self, batch: Mapping[TopicPartition, Sequence[_Record]]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Return the offsets to commit with ``batch``: one past each partition's last record.

        Checks the invariant on the path that decides what is committed: offsets only move forward.
        """
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batch.items():
            first, last = records[0].offset, records[-1].offset
            previous = self._committed.get(tp)
            if previous is not None and first < previous:
                msg = f"offset went back on {tp.topic}[{tp.partition}]: {first} < {previous}"
                raise ClaimsWorkerError(msg)
            offsets[tp] = OffsetAndMetadata(last + 1, "", getattr(records[-1], "leader_epoch", -1))
        return offsets

    def _committed_batch(
        self,
        batch: Mapping[TopicPartition, Sequence[_Record]],
        outgoing: list[Outgoing],
        offsets: dict[TopicPartition, OffsetAndMetadata],
        started: float,
    ) -> BatchReport:
        """Count a committed batch in metrics and the batch log line."""
        report = BatchReport(records=len(outgoing))
        now = self._clock()
        metrics = self.metrics
        for out in outgoing:
            if out.outcome is not None:
                report.outcomes[out.outcome.value] += 1
                metrics.record_outcome(out.outcome)
                metrics.observe_decision_latency(out.decide_s)
                for criterion_id, status in out.criteria:
                    metrics.record_criterion(criterion_id, status)
                for reason in out.reason_codes:
                    metrics.record_reason(reason)
                if out.event_time is not None:
                    metrics.observe_e2e_latency(max(0.0, (now - out.event_time).total_seconds()))
                if out.outcome in (Outcome.DENIED, Outcome.PENDED, Outcome.REFERRED):
                    self.log.debug(
                        "not_approved",
                        claim_id=out.claim_id,
                        outcome=out.outcome.value,
                        reasons=list(out.reason_codes),
                    )
            elif out.error_class is not None:
                report.dead_letters[out.error_class.value] += 1
                metrics.record_dead_letter(out.error_class)
        for tp, records in batch.items():
            self._committed[tp] = offsets[tp].offset
            report.offsets[f"{tp.topic}[{tp.partition}]"] = (records[0].offset, records[-1].offset)
        report.duration_s = time.perf_counter() - started
        metrics.record_consumed(report.records)
        metrics.observe_batch(report.records, report.duration_s)
        self._update_lag(force=True)
        self.log.info(
            "batch_committed",
            batch_size=report.records,
            counts=dict(report.outcomes),
            dead_letters=dict(report.dead_letters),
            offsets=report.offsets,
            duration_ms=round(report.duration_s * 1000, 2),
        )
        return report

    def _commit(self, producer: KafkaProducer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
        """Add ``offsets`` to the open transaction and commit it; on failure abort or replace, and rewind."""
        timeout = self.settings.commit_timeout_s
        try:
            bounded(
                lambda: producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata()),
                timeout,
                "send_offsets_to_transaction",
            )
            bounded(producer.commit_transaction, timeout, "commit_transaction")
        except FATAL_ERRORS:
            self.seen.discard()
            raise
        except IndefiniteOutcome as exc:
            self._replace_producer(str(exc))
            return False
        except kerrors.KafkaError as exc:
            self._abort(producer, exc)
            return False
        self.seen.commit()
        self.metrics.transaction_committed()
        return True

    def _abort(self, producer: KafkaProducer, cause: Exception) -> None:
        """Abort the open transaction (bounded), forget the batch's staged ids and rewind the consumer."""
        self.log.warning("transaction_aborting", error=type(cause).__name__)
        self.seen.discard()
        try:
            bounded(producer.abort_transaction, self.settings.commit_timeout_s, "abort_transaction")
        except FATAL_ERRORS:
            raise
        except (IndefiniteOutcome, kerrors.KafkaError) as abort_exc:
            self._replace_producer(f"abort failed: {type(abort_exc).__name__}")
            return
        self.metrics.transaction_aborted()
        rewind_to_committed(self.consumer)
        time.sleep(0.2)  # back off a little before the batch comes again

    def _replace_producer(self, why: str) -> None:
        """After an indefinite outcome, never reuse the producer (KAFKA-17754): fence it with a new one."""
        self.log.warning("producer_replaced", error=why, transactional_id=self.settings.transactional_id)
        self.metrics.transaction_aborted()
        self._recovery_pending = True
        self._recover_if_pending()

    def _recover_if_pending(self) -> None:
        """Swap in a fresh producer and rewind the consumer, if an earlier failure left that to do.

        The new producer's ``init_transactions`` bumps the epoch and completes or aborts whatever the
        old one left open; then the consumer rewinds to what the group really committed. Either step
        may raise a transient error: the work stays pending and is tried again on the next pass.
        """
        if not self._recovery_pending:
            return
        old, self.producer = self.producer, None
        if old is not None:
            threading.Thread(target=_abandon, args=(old,), daemon=True).start()
        self.seen.forget_all()
        self.producer = self._producer_factory()
        self.metrics.producer_recreated()
        rewind_to_committed(self.consumer)
        self._recovery_pending = False
        self.log.info("recovered", transactional_id=self.settings.transactional_id)

    def _update_lag(self, force: bool = False) -> None:
        """Set each assigned partition's lag: high watermark minus committed (or current) position.

        Runs after every commit and, at most once a second, on every loop pass, so a worker that
        stops committing still shows its lag growing (the no-progress alert needs it).
        """
        now = time.monotonic()
        if not force and now - self._lag_updated < 1.0:
            return
        self._lag_updated = now
        for tp in list(self._assigned):
            try:
                high = self.consumer.highwater(tp)
                done = self._committed.get(tp)
                if done is None:
                    done = self.consumer.position(tp, timeout_ms=100)
            except kerrors.KafkaError:
                continue
            if high is not None and done is not None:
                self.metrics.set_lag(tp.partition, max(0, high - done))
