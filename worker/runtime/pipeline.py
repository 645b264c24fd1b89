"""The one loop: poll a batch, judge and route each record, publish the polls in one transaction.

A transaction spans several polls: it commits once ``CLAIMS_COMMIT_INTERVAL_MS`` has passed since it
opened, once it holds ``CLAIMS_TRANSACTION_MAX_RECORDS``, or as soon as a poll comes back empty (caught
up), as Kafka Streams commits every ``commit.interval.ms`` under exactly-once. Each commit costs several
broker round trips, so fewer commits is most of kafka-python's throughput. A rebalance that takes away
a partition whose records the open transaction holds aborts it (and rewinds): kafka-python calls the
listener inside ``poll`` and may hand the partition on within the same call, so a later commit could
publish those records a second time.

The parts: ``judge`` (pure: decode, duplicate check, decide), ``route`` (the record to publish),
``TransactionSession`` (the transaction, abort, producer replacement, rewind), ``tally`` (what the open
transaction holds, counted on commit), ``PartitionState``
(stores restored on assignment, counts checked), ``failures`` (what each error means). What a record
is (a claim, or a PA request) is the ``door`` (``worker.runtime.doors``): its judge and route. Build it
with ``worker.runtime.compose.build_worker`` (``build_request_worker`` for PA requests).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

from worker.errors import ClaimsWorkerError
from worker.kafka.failures import (
    Backoff,
    BatchAborted,
    ClientError,
    ExitCode,
    Kind,
    OutageTooLong,
    SlotTaken,
    Stopped,
    classify,
    describe,
    interruptible,
    recorded_error,
)
from worker.kafka.io import Membership, OffsetAndMetadata, slot_membership
from worker.policy import PolicyChoice, catalog_choice
from worker.runtime.doors import CLAIMS
from worker.runtime.judge import Decider, no_facts
from worker.runtime.partitions import Listener, PartitionState
from worker.runtime.route import Outgoing
from worker.runtime.session import TransactionSession, send_within_limit
from worker.runtime.tally import BatchReport, OpenTransaction, record_counts, tally
from worker.runtime.waiting import OldestWaiting

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Mapping, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.contracts.model import Claim
    from worker.kafka.io import KafkaConsumer, KafkaProducer, TopicPartition
    from worker.ops.metrics import WorkerMetrics
    from worker.policy import Policy
    from worker.policy.facts import Facts
    from worker.runtime.doors import Door
    from worker.runtime.judge import Record
    from worker.state.authorizations import Authorizations
    from worker.state.dedupe import SeenEvents
    from worker.state.store import PartitionStore

__all__ = ["BatchAborted", "BatchReport", "ExitCode", "Outgoing", "Pipeline"]


class PartitionsGone(Exception):  # noqa: N818 - a reason to abort, not an error of the worker
    """A rebalance took partitions whose records the open transaction holds: it must abort, not commit."""


class Pipeline:
    """Reads claims in batches and publishes one result or dead letter per record, exactly once."""

    def __init__(  # noqa: PLR0917 - assembled by compose.build_worker
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer_factory: Callable[[], KafkaProducer],
        codec: Codec,
        metrics: WorkerMetrics,
        log: FilteringBoundLogger,
        *,
        seen: SeenEvents,
        policy: Policy | None = None,
        policies: PolicyChoice | None = None,
        lookup_facts: Callable[[Claim], Facts] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        claims_partitions: int | None = None,
        refresh: Callable[[], object] | None = None,
        authorizations: Authorizations | None = None,
        door: Door = CLAIMS,
        membership: Callable[[], Membership] | None = None,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.door = door  # what a record is (claim or PA request): its judge, route and source kind
        self.consumer = consumer
        self.codec = codec
        self.metrics = metrics
        self.log = log
        # The versions a claim may be decided under: given, a pinned ``policy``, or CLAIMS_POLICY's.
        if policies is None:
            policies = PolicyChoice.pin(policy) if policy is not None else catalog_choice(settings.policy)
        self.policies = policies
        self.policy = policies.named
        self.seen = seen
        self._refresh = refresh  # once per pass: reference data updates (worker.runtime.reference)
        self._clock = clock
        self.authorizations = authorizations
        # Everything a decision needs besides the claim and its time, bound once (runtime.judge.Decider).
        self.decider = Decider(
            self.policy,
            lookup_facts or no_facts,
            automated_denials=settings.automated_denials,
            authorizations=authorizations,
            dispensed=door.dispensed,
            policies=policies,
        )
        stores: tuple[PartitionStore, ...] = (seen,) if authorizations is None else (seen, authorizations)
        self.partitions = PartitionState(
            settings, consumer, stores, metrics, log, claims_partitions=claims_partitions
        )
        self.session = TransactionSession(
            settings,
            consumer,
            producer_factory,
            stores,
            metrics,
            log,
            on_replaced=self.partitions.restore_missing,
            membership=membership or self._slot_membership,
            fault=fault,
        )
        self._last_poll_ok: float | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._lag_updated = 0.0
        self._waiting = OldestWaiting()  # the lag in seconds (worker.runtime.waiting)
        self._failed_since_commit = False
        self._current: tuple[str, int, int] | None = None
        self._open: OpenTransaction | None = None  # the transaction open over polls, if any
        self._interval_s = settings.commit_interval_ms / 1000
        self.backoff_s = (0.5, 10.0)  # first and longest wait after a transient failure
        self.failure: str | None = None  # the operator's line when the loop ended on a fatal failure
        self.idle_exited = False  # ended by CLAIMS_EXIT_WHEN_IDLE_S: done, not coming back (leave the group)
        # Asked before an internal error ends the loop: the operator fault behind it, if one is (a topic
        # gone or shrunk, another cluster: ``GroupWatch.diagnose``), whose own line and code are reported.
        self.explain: Callable[[], Exception | None] = lambda: None

    def _slot_membership(self) -> Membership:
        """Ask the group coordinator whether this process still holds its slot (``slot_membership``).

        On a helper thread, so a stop request (``Stopped``) does not wait for an unanswered heartbeat.
        """
        consumer, timeout_s = self.consumer, self.settings.commit_timeout_s
        return interruptible(lambda: slot_membership(consumer, timeout_s), self.session.stop, "membership")

    # --- health -----------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """Ready when the loop polls and a broker connection is open, even with no partitions (idle)."""
        last = self._last_poll_ok
        if last is None:
            return False, "not yet polled the group"
        if time.monotonic() - last > max(30.0, self.settings.poll_timeout_ms / 250):
            return False, "the consumer has not polled recently"
        if self._broker_connections() == 0:
            return False, "no open connection to any broker"
        assigned, restoring = len(self.partitions.assigned), self.partitions.restoring
        if not assigned:
            return True, "no partitions assigned (idle group member)"
        detail = f"{assigned} partitions assigned"
        return True, f"{detail}, {restoring} restoring" if restoring else detail

    def _broker_connections(self) -> float | None:
        """Open broker connections per the consumer's own metrics; ``None`` when they cannot be read."""
        try:
            # Read from the health server's thread while the IO thread may add metrics: tolerate races.
            value = self.consumer.metrics().get("consumer-metrics", {}).get("connection-count")
        except Exception:  # noqa: BLE001 - a health probe must answer, not crash
            return None
        return None if value is None else float(value)

    # --- the loop ---------------------------------------------------------------------------------
    def subscribe(self) -> None:
        """Join the group on the claims topic with the partition state's rebalance listener."""
        self.consumer.subscribe([self.settings.claims_topic], listener=Listener(self.partitions))

    def run(self, stop: threading.Event) -> int:
        """Process batches until ``stop`` is set (or the idle limit passes); return the exit code.

        Transient and abortable failures share one backoff and one outage clock: the clock ends
        only when a batch commits (or a poll succeeds after a failure outside any batch), so an
        error that keeps coming back exits 4 after ``outage_limit_s`` instead of looping.
        """
        base_s, cap_s = self.backoff_s
        backoff = Backoff(stop, limit_s=self.settings.outage_limit_s, base_s=base_s, cap_s=cap_s)
        self.session.stop = stop
        self.session.prepare()  # InitProducerId overlaps the group join and the state read-back
        self.subscribe()
        try:
            self._loop(stop, backoff)
        except Stopped:
            pass
        except OutageTooLong as exc:
            self.log.error(  # noqa: TRY400 - no traceback: it can carry record data
                "outage_limit_reached",
                error=type(exc.cause).__name__,
                waited_s=round(exc.waited_s, 1),
                attempt=exc.attempts,
                limit_s=self.settings.outage_limit_s,
            )
            self.failure = (
                f"Kafka unreachable for {exc.waited_s:.0f}s ({type(exc.cause).__name__}), "
                f"past CLAIMS_OUTAGE_LIMIT_S={self.settings.outage_limit_s:g}"
            )
            return ExitCode.UNREACHABLE
        except Exception as exc:  # noqa: BLE001 - every failure ends in a documented exit code
            return self._fatal(exc)
        finally:
            self.close()
        return ExitCode.OK

    def _loop(self, stop: threading.Event, backoff: Backoff) -> None:
        """Pass after pass until stopped or idle past the limit; raises what ends the process."""
        idle_since = time.monotonic()
        while not stop.is_set():
            try:
                report = self.poll_once()
            except Stopped:
                raise
            except Exception as exc:
                if classify(exc) is not Kind.TRANSIENT:
                    raise
                self._transient(exc, backoff)
                idle_since = time.monotonic()  # failing is not idle
                continue
            if report is not None or self._open is not None or self.partitions.restoring:
                if report is not None:
                    backoff.succeeded()
                idle_since = time.monotonic()  # restoring (or a transaction still open) is not idle either
                continue
            if not self._failed_since_commit:
                backoff.succeeded()  # a poll worked and no batch is failing: the outage is over
            limit = self.settings.exit_when_idle_s
            if limit is not None and self.partitions.assigned and time.monotonic() - idle_since > limit:
                self.log.info("idle_exit", idle_s=limit)
                self.idle_exited = True
                return
        self._commit_at_stop()

    def _commit_at_stop(self) -> None:
        """Commit the open transaction at a stop request; if that fails it is aborted (and comes again)."""
        if self._open is None:
            return
        try:
            self.commit_open()
        except BatchAborted as exc:
            self.log.warning("stop_commit_aborted", error=type(exc.__cause__ or exc).__name__)

    def _transient(self, exc: Exception, backoff: Backoff) -> None:
        """Back off after a transient or abortable failure (raises ``OutageTooLong`` past the limit)."""
        cause = exc.__cause__ if isinstance(exc, BatchAborted) and exc.__cause__ is not None else exc
        delay = backoff.failed(cause)
        self.log.warning(
            "kafka_transient", error=type(cause).__name__, attempt=backoff.attempts, backoff_s=delay
        )
        # Outside a batch (poll, metadata) no transaction is open and nothing moved past the committed
        # offsets, so the producer is kept: replacing it would fence a newer twin on the same slot
        # (a second live process takes over with static membership) instead of letting this one end.
        backoff.wait(delay)

    def _fatal(self, exc: Exception) -> int:
        """Log one line for a failure that ends the process and return its exit code."""
        kind = classify(exc)
        cause = exc.__cause__ if isinstance(exc, BatchAborted) and exc.__cause__ is not None else exc
        named = self.explain() if kind is Kind.INTERNAL else None
        if named is not None:  # not a bug: e.g. an offset that "went back" on a fresh cluster
            self.log.warning("internal_error_explained", error=type(cause).__name__)
            kind, cause = classify(named), named
        if kind is Kind.INTERNAL:
            topic, partition, offset = self._current or ("", -1, -1)
            self.log.error(
                "internal_error", error=type(cause).__name__, topic=topic, partition=partition, offset=offset
            )
            self.failure = f"internal error ({type(cause).__name__}) at {topic}[{partition}]@{offset}"
            return ExitCode.INTERNAL
        event = {
            Kind.FENCED: "member_fenced" if isinstance(cause, SlotTaken) else "producer_fenced",
            Kind.NOT_AUTHORIZED: "not_authorized",
            Kind.UNSUPPORTED_VERSION: "unsupported_version",
            Kind.BAD_SETTINGS: "bad_settings",
        }.get(kind, "kafka_fatal")
        self.failure = describe(cause, self.settings)
        self.log.error(
            event,
            error=type(cause).__name__,
            message=self.failure,
            transactional_id=self.settings.transactional_id,
            group_id=self.settings.group_id,
        )
        return kind.exit_code

    def poll_once(self) -> BatchReport | None:
        """One pass: recover if needed, poll, settle the partition state, process what came, commit if due.

        Returns the committed transaction's report, or ``None`` when nothing was committed (a
        transaction may still be open: ``in_transaction``). Raises what failed; a failure while a
        transaction is open aborts it first (``BatchAborted`` when the cause is transient or abortable).
        """
        try:
            return self._pass()
        except Exception as exc:
            if self._open is None:
                raise
            self._fail_open(exc)

    @property
    def in_transaction(self) -> bool:
        """Tell whether a transaction is open (records sent, not yet committed)."""
        return self._open is not None

    def _pass(self) -> BatchReport | None:
        self.session.recover(block=False)  # the first producer may still be in the making: not needed yet
        if self._refresh is not None:
            self._refresh()
        if self.partitions.grew:
            if self._open is not None:  # its records went to the partitions the old producer knows
                return self.commit_open()
            self.partitions.grew = False
            self.session.replace("the claims topic gained partitions")
        if self.authorizations is not None:
            self.authorizations.follow()  # read in what other workers approved (catches up first)
        batch = self.consumer.poll(timeout_ms=self._poll_wait_ms(), max_records=self._poll_room())
        self._last_poll_ok = time.monotonic()
        self._waiting.polled(batch)
        gone = self.partitions.take_gone()
        self._waiting.forget(gone)
        if self._open is not None and not gone.isdisjoint(self._open.offsets):
            self._abort_for_rebalance(gone)
            batch = {}  # rewound with the rest: its records come again
        self.partitions.settle()
        for tp in gone:  # partitions that left (even if back in the same poll: a claims topic recreated)
            self._committed.pop(tp, None)  # their forward-only check starts afresh
        self._update_lag()
        if batch:
            batch = self.partitions.loaded(batch)
        if batch:
            self.session.recover()  # a batch needs the producer: wait for the first one if it is being made
            self.process(batch)
        if self._open is not None and (not batch or self._due()):
            return self.commit_open()
        return None

    def _poll_wait_ms(self) -> int:
        """Return how long the poll may wait: the poll timeout, or what is left of the interval."""
        wait = self.settings.poll_timeout_ms
        if self._open is None:
            return wait
        left_ms = (self._interval_s - (time.monotonic() - self._open.opened)) * 1000
        return max(0, min(wait, int(left_ms)))

    def _poll_room(self) -> int:
        """Return the most records one poll may take: what the open transaction has room for.

        A poll that takes every buffered record lets kafka-python send the next fetch before it returns,
        so the broker answers while this batch is judged; a poll that leaves records buffered (a cap below
        one fetch, ~650 claims at the default fetch size) sends none, and the next poll but one waits a
        round trip for it (1.14-1.31x claims/s in each of three paired rounds; README, Tests and
        benchmarks). With one
        transaction per poll (``CLAIMS_COMMIT_INTERVAL_MS=0``) the cap is ``CLAIMS_BATCH_MAX_RECORDS``.
        """
        if self._interval_s == 0:
            return self.settings.batch_max_records
        held = 0 if self._open is None else self._open.records
        return max(1, self.settings.transaction_max_records - held)

    def _due(self) -> bool:
        """Tell whether the open transaction should commit now (interval passed or records at the limit)."""
        open_ = self._open
        return open_ is not None and (
            open_.records >= self.settings.transaction_max_records
            or time.monotonic() - open_.opened >= self._interval_s
        )

    def _abort_for_rebalance(self, gone: set[TopicPartition]) -> None:
        """Abort the open transaction and rewind: a rebalance took partitions whose records it holds."""
        open_, self._open = self._open, None
        held = sorted(tp.partition for tp in gone if open_ is not None and tp in open_.offsets)
        self.log.info("transaction_aborted_for_rebalance", partitions=held)
        self.session.fail(PartitionsGone(f"partitions {held} left the assignment"))

    def _fail_open(self, exc: Exception) -> NoReturn:
        """End the open transaction after ``exc``: the session aborts (or replaces) and rewinds; re-raise."""
        self._open = None
        exc = recorded_error(self.session.producer, exc)
        self._failed_since_commit = True
        if self.session.fail(exc):  # ended by the session (aborted or replaced, rewound): back off, retry
            raise BatchAborted(type(exc).__name__) from exc
        raise exc

    def close(self) -> None:
        """Stop restores, close the producer and the consumer; safe to call twice."""
        self.partitions.close()
        if self.authorizations is not None:
            self.authorizations.close()
        self.session.close()
        self.consumer.close(autocommit=False)

    # --- one poll into the open transaction ----------------------------------------------------------
    def process(self, batch: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """Judge, route and send one polled batch inside the open transaction (opened here if none).

        Each record is sent as soon as it is judged, so the producer's I/O overlaps the next record's
        work; nothing is visible to read_committed readers until ``commit_open``. A result's event id is
        staged in the duplicate filter only once it is sent, and stays staged (visible to later polls of
        the same transaction) until the commit. Raises what failed; ``poll_once`` then ends the
        transaction (abort or replacement, stores restored, consumer rewound).
        """
        offsets = self._next_offsets(batch)
        decided_at = self._clock()
        session, codec, settings, seen, decider = (
            self.session,
            self.codec,
            self.settings,
            self.seen,
            self.decider,
        )
        authorizations = self.authorizations
        judge, route, source_kind = self.door.judge, self.door.route, self.door.source_kind
        send = session.send
        open_ = self._open
        if open_ is None:
            open_ = self._open = OpenTransaction(started=time.perf_counter(), opened=time.monotonic())
            session.begin()
        outgoing: list[Outgoing] = []
        for records in batch.values():
            for record in records:
                self._current = (record.topic, record.partition, record.offset)
                judgement = judge(record, codec=codec, seen=seen, decider=decider, decided_at=decided_at)
                out = route(judgement, codec=codec, settings=settings, at=decided_at)
                out = send_within_limit(  # too large to send: a small dead letter instead
                    send, out, record, codec=codec, settings=settings, at=decided_at
                )
                if out.event_id is not None:
                    seen.stage(record.partition, out.event_id)
                if authorizations is not None and judgement.claim and judgement.decision:
                    issued = authorizations.issue(
                        judgement.claim, judgement.decision, source_kind=source_kind
                    )
                    if issued is not None:  # the new approval goes on file in the same transaction
                        session.send_record(issued)
                outgoing.append(out)
        self._current = None
        for tp, records in batch.items():
            open_.first.setdefault(tp, records[0].offset)
        self._waiting.held(batch)
        open_.offsets.update(offsets)
        tally(outgoing, open_)

    def commit_open(self) -> BatchReport:
        """Commit the open transaction with its offsets; return its report. Raises as ``poll_once`` does."""
        open_ = self._open
        if open_ is None:
            msg = "no transaction is open"
            raise ClaimsWorkerError(msg)
        try:
            self.session.commit(open_.offsets)
        except Exception as exc:  # noqa: BLE001 - _fail_open re-raises it (or BatchAborted from it)
            self._fail_open(exc)
        self._open = None
        self._failed_since_commit = False
        return self._account(open_)

    def _next_offsets(
        self, batch: Mapping[TopicPartition, Sequence[Record]]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Return the offsets to commit with ``batch``: one past each partition's last record.

        Checks the invariant on the path that decides what is committed: offsets only move forward,
        past what was committed and past what the open transaction already holds.
        """
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        held = self._open.offsets if self._open is not None else {}
        for tp, records in batch.items():
            first, last = records[0].offset, records[-1].offset
            previous = self._committed.get(tp)
            pending = held.get(tp)
            if pending is not None:
                previous = pending.offset
            if previous is not None and first < previous:
                self._current = (tp.topic, tp.partition, first)
                msg = f"offset went back on {tp.topic}[{tp.partition}]: {first} < {previous}"
                raise ClaimsWorkerError(msg)
            offsets[tp] = OffsetAndMetadata(last + 1, "", getattr(records[-1], "leader_epoch", -1))
        return offsets

    def _account(self, open_: OpenTransaction) -> BatchReport:
        """Count a committed transaction: metrics once per transaction (per label), and the batch log line."""
        report = BatchReport(records=open_.records)
        self._count(open_, report)
        metrics = self.metrics
        self._waiting.committed(open_.offsets)
        for tp, offset in open_.offsets.items():
            self._committed[tp] = offset.offset
            report.offsets[f"{tp.topic}[{tp.partition}]"] = (open_.first[tp], offset.offset - 1)
        report.duration_s = time.perf_counter() - open_.started
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

    def _count(self, open_: OpenTransaction, report: BatchReport) -> None:
        """Add the transaction's outcomes and dead letters to ``report`` and the metrics (once per label)."""
        now = self._clock()
        metrics, log = self.metrics, self.log
        report.outcomes.update(open_.outcomes)
        report.dead_letters.update(open_.dead_letters)
        for claim_id, outcome, reasons in open_.not_approved:
            log.debug("not_approved", claim_id=claim_id, outcome=outcome, reasons=list(reasons))
        metrics.observe_decision_latencies(open_.decide_s)  # the histograms once per batch, not per claim
        metrics.observe_e2e_latencies([max(0.0, (now - t).total_seconds()) for t in open_.event_times])
        record_counts(metrics, report, open_.criteria, open_.reasons, open_.rejects)

    def _update_lag(self, *, force: bool = False) -> None:
        """Set each assigned partition's lag: high watermark minus committed (or current) position.

        And its lag in seconds (``worker.runtime.waiting``). Runs after every commit and, at most once
        a second, on every loop pass, so a worker that stops committing still shows its lag growing
        (the no-progress alert needs it).
        """
        now = time.monotonic()
        if not force and now - self._lag_updated < 1.0:
            return
        self._lag_updated = now
        wall = self._clock().timestamp()  # the decision clock: record timestamps are wall time
        for tp in list(self.partitions.assigned):
            try:
                high = self.consumer.highwater(tp)
                done = self._committed.get(tp)
                if done is None:
                    done = self.consumer.position(tp, timeout_ms=100)
            except ClientError:
                continue
            if high is not None and done is not None:
                self.metrics.set_lag(tp.partition, max(0, high - done))
                age = self._waiting.age_s(tp, high - done, wall)
                if age is not None:
                    self.metrics.set_lag_seconds(tp.partition, age)
