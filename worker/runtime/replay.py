"""Replay: decide a time range of the claims topic again, with the live worker's own ``judge`` and ``route``.

A replay reads each claims partition from the first offset at or after ``--from`` up to the first offset
at or after ``--to`` (or the end offsets when it started), with its own consumer group and its own
transactional id, both derived from the replay id: the live group's offsets never move, and a second
replay with the same id fences the first. Each batch is one transaction holding its outputs and the
group's offsets (with the range's end in the offset metadata), so a replay that crashed resumes where
its last transaction committed and publishes nothing twice; a finished replay's group sits at the end
offsets, so running it again adds nothing.

What a replay writes: the live worker's result (v2, naming the policy and the source coordinates) or
dead letter, on the input's partition number of the replay's own topics, with headers that name the
replay (``claims-worker.replay-id``, ``claims-worker.replay-policy``, ``claims-worker.replay-directory``).
The record schemas are unchanged (headers, not a schema evolution: consumers of results need nothing new).
Each output is sent through the live loop's ``session.send_within_limit``: one too large for the
producer's ``max_request_size`` goes to the dead-letter topic as a small TOO_LARGE dead letter (with
the replay's headers), as the live worker's does, instead of failing every rerun.

Duplicates: a replay does not use the live duplicate filter (keyed by event id and rebuilt from the live
results, it would dead-letter every record). What it compares is keyed by source coordinates (topic,
partition, offset). A record the live worker dead-lettered as a duplicate keeps that verdict: the replay
writes the duplicate dead letter again with ``claims-worker.replay-inherited: live-duplicate``.

``diff`` decides the same range and compares each record with what the live worker published for the
same source coordinates; it publishes nothing. It refuses (``ConfigError``, exit 2) a baseline with no
live output for a non-empty range, or results that answer another claims topic; each changed claim gets
its cause (``worker.ops.impact.classify``) and is counted in the summary's ``impact`` with the claim's
member pseudonym (only when a store is pinned) and prescriber NPI, which the changes file never holds.

Authorizations on file (docs/authorizations.md): when ``CLAIMS_AUTHORIZATIONS_TOPIC`` is set, a replay
builds its own store in memory, pinned to the range start: the store topic's committed records with
timestamps before ``--from`` (``offsets_for_times``), then the approvals the replay itself issues as it
goes, so a later fill in the range pays on file as the live worker's did. It never writes the store
topic. Its outputs name the pinning (``claims-worker.replay-authorizations``: the as-of time, or
``none`` without a store, as the live worker then had none).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import write_to_textfile
from tqdm import tqdm

from worker.contracts.wire import (
    INHERITED_HEADER,
    REPLAY_AUTHORIZATIONS_HEADER,
    REPLAY_DIRECTORY_HEADER,
    REPLAY_ID_HEADER,
    REPLAY_POLICY_HEADER,
)
from worker.errors import DeadLetterClass
from worker.kafka.clients import Role, new_consumer, new_producer
from worker.kafka.io import OffsetAndMetadata, TopicPartition, bounded
from worker.kafka.ranges import Stall, narrow, plan_ranges
from worker.ops.impact import Change, changed_criteria, classify
from worker.runtime.judge import Decider, DuplicateEvent, Judgement, judge
from worker.runtime.replay_job import (
    ReplayJob,
    ReplaySummary,
    replay_group_id,
    replay_transactional_id,
    seed_authorizations,
)
from worker.runtime.route import route
from worker.runtime.session import send_within_limit
from worker.runtime.verdicts import Coordinates, Verdict, read_live_verdicts, refuse_baseline, why
from worker.state.dedupe import SeenEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from worker.kafka.io import KafkaConsumer, KafkaProducer
    from worker.runtime.judge import Record
    from worker.runtime.route import Outgoing
    from worker.state.authorizations import Authorizations

__all__ = [
    "Coordinates",
    "run_replay",
]

_END_METADATA = "replay-end="
METRICS_FILE_PERIOD_S = 10.0
"""How often a running replay rewrites its ``--metrics-file`` (always once more at the end)."""


def run_replay(job: ReplayJob) -> ReplaySummary:  # noqa: C901, PLR0912 - the run's steps in order
    """Run ``job`` to the end of its range; return what it did. Raises what failed (the caller maps it)."""
    settings = job.settings
    summary = ReplaySummary(job.replay_id)
    started = time.perf_counter()
    consumer = new_consumer(
        settings,
        Role.REPLAY,
        group_id=None if job.diff else replay_group_id(settings, job.replay_id),
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_max_records,
        fetch_max_wait_ms=100,
    )
    producer: KafkaProducer | None = None
    try:
        ranges = narrow(
            plan_ranges(consumer, settings.claims_topic, job.start, job.end), job.partitions, job.offsets
        )
        if not job.diff:
            ranges = _resume(consumer, ranges)
        foreign: set[str] = set()
        verdicts, duplicates = read_live_verdicts(
            settings, job.codec, ranges, job.start, results=job.diff, foreign=foreign
        )
        if job.diff:
            refuse_baseline(settings, ranges, verdicts, foreign)  # an empty or wrong baseline: exit 2
        store = seed_authorizations(settings, job.start)
        summary.impact.members_counted = store is not None  # members only by the store's pseudonym
        if store is not None:
            summary.authorizations_as_of = job.start.isoformat()
            summary.authorizations_seeded = len(store.table)
        positions = {tp: first for tp, (first, _stop) in ranges.items()}
        if not job.diff:
            producer = _producer(job)
            done = {tp: consumer.committed(tp) for tp in ranges}
            for tp, committed in done.items():
                if committed is not None:
                    positions[tp] = max(positions[tp], committed)
                    summary.already_done += committed - ranges[tp][0]
            if any(committed is None for committed in done.values()):
                # Record the range's end in the group first: a resumed replay reads the same range.
                _transaction(job, producer, _offsets(ranges, positions))
        summary.total = sum(stop - first for first, stop in ranges.values())
        todo = {tp: stop for tp, (_first, stop) in ranges.items() if positions[tp] < stop}
        run = _Pass(job, consumer, producer, ranges, positions, todo, verdicts, duplicates, summary, store)
        run.reissue()  # a resumed replay's store gets the approvals of the part it published before
        consumer.assign(list(ranges))
        for tp in todo:
            consumer.seek(tp, positions[tp])
        job.metrics.range.set(summary.total)
        job.metrics.remaining.set(summary.total - summary.already_done)
        run.run()
        summary.finished = not todo  # False: stopped (SIGINT/SIGTERM) with part of the range left
        if producer is not None and todo == {}:
            final = {tp: stop for tp, (_first, stop) in ranges.items()}
            if final != positions:
                _transaction(job, producer, _offsets(ranges, final))
    finally:
        summary.seconds = time.perf_counter() - started
        if producer is not None:
            producer.close(timeout=5)
        consumer.close(autocommit=False)
        if job.metrics_file is not None:
            write_to_textfile(str(job.metrics_file), job.metrics.registry)
    return summary


def _resume(
    consumer: KafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]]
) -> dict[TopicPartition, tuple[int, int]]:
    """Return the ranges recorded in the group's committed offsets: a resumed replay reads the same range."""
    resumed = dict(ranges)
    for tp, (first, stop) in ranges.items():
        committed = consumer.committed(tp, metadata=True)
        metadata = getattr(committed, "metadata", "") or ""
        if metadata.startswith(_END_METADATA):
            recorded = int(metadata.removeprefix(_END_METADATA).split(";")[0])
            first_recorded = int(metadata.split(";first=")[1]) if ";first=" in metadata else first
            resumed[tp] = (first_recorded, recorded)
        else:
            resumed[tp] = (first, stop)
    return resumed


def _offsets(
    ranges: Mapping[TopicPartition, tuple[int, int]], positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        tp: OffsetAndMetadata(positions[tp], f"{_END_METADATA}{stop};first={first}", -1)
        for tp, (first, stop) in ranges.items()
    }


def _producer(job: ReplayJob) -> KafkaProducer:
    settings = job.settings
    producer = new_producer(
        settings,
        Role.REPLAY,
        transactional_id=replay_transactional_id(settings, job.replay_id),
        transaction_timeout_ms=settings.transaction_timeout_ms,
        linger_ms=settings.linger_ms,
        batch_size=256 * 1024,
        max_block_ms=int(settings.commit_timeout_s * 1000),
    )
    try:
        producer.init_transactions()
    except Exception:
        producer.close(timeout=1)
        raise
    return producer


def _transaction(
    job: ReplayJob,
    producer: KafkaProducer,
    offsets: dict[TopicPartition, OffsetAndMetadata],
    publish: Callable[[], object] = lambda: None,
) -> None:
    """Send what ``publish`` sends and commit ``offsets`` in one transaction; abort it when anything fails."""
    producer.begin_transaction()
    try:
        publish()
        _commit(job, producer, offsets)
    except BaseException:
        _abort(job, producer)
        raise


def _commit(
    job: ReplayJob, producer: KafkaProducer, offsets: dict[TopicPartition, OffsetAndMetadata]
) -> None:
    """Add ``offsets`` to the open transaction and commit it (what it sent becomes visible with them)."""
    timeout = job.settings.commit_timeout_s
    group = replay_group_id(job.settings, job.replay_id)
    bounded(lambda: producer.send_offsets_to_transaction(offsets, group), timeout, "send_offsets")
    bounded(producer.commit_transaction, timeout, "commit_transaction")
    job.metrics.transactions.inc()


def _abort(job: ReplayJob, producer: KafkaProducer) -> None:
    """Abort the open transaction after a failure (the caller re-raises it)."""
    # The first failure is the one to report; a failed abort is fenced by the next run's producer.
    with contextlib.suppress(Exception):
        bounded(producer.abort_transaction, job.settings.commit_timeout_s, "abort_transaction")


@dataclass
class _Pass:
    """The state of one run's read loop: where each partition is, what is left, what the live worker said."""

    job: ReplayJob
    consumer: KafkaConsumer
    producer: KafkaProducer | None
    ranges: Mapping[TopicPartition, tuple[int, int]]
    positions: dict[TopicPartition, int]
    todo: dict[TopicPartition, int]
    verdicts: Mapping[Coordinates, Verdict]
    duplicates: set[Coordinates]
    summary: ReplaySummary
    store: Authorizations | None = None  # the replay's own, pinned to the range start; never written out
    seen: SeenEvents = field(default_factory=lambda: SeenEvents(0))  # never filters by event id
    queued: list[_Queued] = field(default_factory=list)  # the step's outputs, sent in its transaction

    def __post_init__(self) -> None:
        job, settings = self.job, self.job.settings
        self.out_settings = settings.model_copy(
            update={
                "results_topic": job.output_topic or settings.results_topic,
                "dead_letter_topic": job.dead_letter_topic or settings.dead_letter_topic,
            }
        )
        self.headers = [
            (REPLAY_ID_HEADER, job.replay_id.encode()),
            (REPLAY_POLICY_HEADER, job.policy_ref.encode()),
            (REPLAY_DIRECTORY_HEADER, job.directory_version.encode()),
            (REPLAY_AUTHORIZATIONS_HEADER, self.summary.authorizations_as_of.encode()),
        ]
        self.mode = "diff" if job.diff else "replay"
        self.decider = Decider(
            job.policy,
            job.lookup_facts,
            automated_denials=settings.automated_denials,
            authorizations=self.store,
            policies=job.policies,
        )

    def run(self) -> None:
        """Poll, decide, publish (or compare) until every partition reached its range's end."""
        job, summary = self.job, self.summary
        show = sys.stderr.isatty() if job.progress is None else job.progress
        bar = tqdm(
            total=summary.total, initial=summary.already_done, unit="claim", disable=not show, desc=self.mode
        )
        started = time.perf_counter()
        written = 0.0
        stall = Stall(job.settings.outage_limit_s, "replaying")
        try:
            while self.todo and not job.stop():
                left = len(self.todo)
                count = self.step()
                if count or len(self.todo) < left:
                    stall.progressed()
                stall.check()
                summary.done += count
                elapsed = time.perf_counter() - started
                job.metrics.remaining.set(
                    sum(stop - self.positions[tp] for tp, (_f, stop) in self.ranges.items())
                )
                if elapsed > 0:
                    job.metrics.rate.set(summary.done / elapsed)
                if job.metrics_file is not None and elapsed - written >= METRICS_FILE_PERIOD_S:
                    written = elapsed  # progress for a textfile collector while the run lasts
                    write_to_textfile(str(job.metrics_file), job.metrics.registry)
                bar.update(count)
                if count:
                    job.batch_hook(summary.done)
        finally:
            bar.close()

    def step(self) -> int:
        """One poll: decide its records of the range, publish them with the offsets; return how many.

        The records are all decided first, then sent in one transaction with the offsets (sending each
        as it is decided made a replay a fifth slower: the producer's thread then competes with the
        decisions); anything that fails in the transaction aborts it (a rerun resumes from the last one).
        """
        settings = self.job.settings
        batch = self.consumer.poll(
            timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records
        )
        self.queued = []
        count = self._decide_batch(batch)
        for tp in list(self.todo):
            position = self.consumer.position(tp)
            if position is not None and position >= self.todo[tp]:
                self.positions[tp] = max(self.positions[tp], self.todo[tp])
                del self.todo[tp]
        if self.producer is not None and count:
            offsets = _offsets(self.ranges, self.positions)
            _transaction(self.job, self.producer, offsets, self._publish_queued)
        if self.store is not None:
            self.store.commit()  # the batch's approvals stay on file for the rest of the range
        return count

    def _decide_batch(self, batch: Mapping[TopicPartition, Sequence[Record]]) -> int:
        """Decide (and send) the batch's records of the range, moving the positions; return how many."""
        decided_at = self.job.clock()
        outputs: list[Outgoing] = []
        count = 0
        for tp, records in batch.items():
            stop = self.todo.get(tp)
            if stop is None:
                continue
            for record in records:
                if record.offset >= stop:
                    break
                count += 1
                self.one(record, decided_at, outputs)
            last = records[-1].offset
            self.positions[tp] = max(self.positions[tp], last + 1 if last < stop else stop)
        return count

    def decide(self, record: Record, decided_at: datetime) -> tuple[Judgement, bool]:
        """Judge one record with the live worker's code; put a new approval on file in the replay's store.

        Returns the judgement and whether it issued an authorization. A live duplicate keeps its verdict.
        """
        job = self.job
        if (record.topic, record.partition, record.offset) in self.duplicates:
            return Judgement(record, error=DuplicateEvent(), policy=job.policy), False
        judgement = judge(
            record, codec=job.codec, seen=self.seen, decider=self.decider, decided_at=decided_at
        )
        # As the live pipeline does, but the store record goes nowhere: only the replay's table.
        issued = (
            self.store is not None
            and judgement.claim is not None
            and judgement.decision is not None
            and self.store.issue(judgement.claim, judgement.decision) is not None
        )
        return judgement, issued

    def reissue(self) -> int:
        """Resumed: judge the part published before the stop again, only to put its approvals on file.

        Nothing is published or counted; returns how many records were judged.
        """
        store = self.store
        redo = {
            tp: self.positions[tp] for tp, (first, _stop) in self.ranges.items() if self.positions[tp] > first
        }
        if store is None or not redo:
            return 0
        self.consumer.assign(list(redo))
        for tp in redo:
            self.consumer.seek(tp, self.ranges[tp][0])
        settings, count = self.job.settings, 0
        stall = Stall(settings.outage_limit_s, "re-reading the part replayed before the stop")
        while redo:
            batch = self.consumer.poll(
                timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records
            )
            decided_at = self.job.clock()
            for tp, records in batch.items():
                stop = redo.get(tp, -1)
                for record in records:
                    if record.offset < stop:
                        self.decide(record, decided_at)
                        count += 1
            store.commit()
            if batch:
                stall.progressed()
            for tp in [tp for tp, stop in redo.items() if (self.consumer.position(tp) or 0) >= stop]:
                del redo[tp]
            stall.check()
        return count

    def one(self, record: Record, decided_at: datetime, outputs: list[Outgoing]) -> None:
        """Judge and route one record with the live worker's code; a live duplicate keeps its verdict.

        A replay (not a diff) with a producer queues the output for the step's transaction and counts
        it once sent (too large: as its TOO_LARGE dead letter); ``outputs`` gets it either way.
        """
        job = self.job
        at = (record.topic, record.partition, record.offset)
        inherited = at in self.duplicates
        if inherited:
            self.summary.inherited_duplicates += 1
        judgement, issued = self.decide(record, decided_at)
        self.summary.authorizations_issued += issued
        out = route(judgement, codec=job.codec, settings=self.out_settings, at=decided_at)
        if job.diff:
            claim = judgement.claim
            member = self.store.pseudonym(claim.patient) if self.store and claim else None
            prescriber = claim.prescriber.npi if claim is not None else None
            _compare(job, record, out, self.verdicts, self.summary, who=(member, prescriber))
        else:
            extra = [(INHERITED_HEADER, b"live-duplicate")] if inherited else []
            headers = [*self.headers, *extra]
            out = dataclasses.replace(out, headers=[*out.headers, *headers])
            outputs.append(out)
            if self.producer is not None:
                self.queued.append(_Queued(record, out, decided_at, headers))
                return  # counted once sent
        self._count(out)

    def _count(self, out: Outgoing) -> None:
        """Count one output by its outcome or dead-letter class, in the summary and the metrics."""
        if out.outcome is not None:
            label = out.outcome.value
        else:
            label = f"DEAD_LETTER:{out.error_class.value}" if out.error_class is not None else "other"
        self.summary.outcomes[label] += 1
        self.job.metrics.count(self.mode, label)

    def _publish_queued(self) -> None:
        """Send the step's queued outputs in its open transaction, as the live loop sends, and count them."""
        producer, codec, settings = self.producer, self.job.codec, self.out_settings
        if producer is None:  # pragma: no cover - a step queues only with a producer
            msg = "a diff publishes nothing"
            raise TypeError(msg)

        def send(out: Outgoing) -> None:
            producer.send(
                out.topic, value=out.value, key=out.key, partition=out.partition, headers=out.headers
            )

        for queued in self.queued:
            sent = send_within_limit(
                send, queued.out, queued.record, codec=codec, settings=settings, at=queued.decided_at,
                headers=queued.headers,
            )  # fmt: skip
            self._count(sent)


@dataclass(slots=True)
class _Queued:
    """One output waiting for the step's transaction, with what its too-large dead letter needs."""

    record: Record
    out: Outgoing
    decided_at: datetime
    headers: list[tuple[str, bytes]]


def _compare(
    job: ReplayJob,
    record: Record,
    out: Outgoing,
    verdicts: Mapping[Coordinates, Verdict],
    summary: ReplaySummary,
    *,
    who: tuple[str | None, str | None] = (None, None),
) -> None:
    """Compare one decided record with the live verdict for its coordinates; keep it when it changed.

    ``who`` is the claim's member pseudonym (``None`` without a store) and prescriber NPI: the impact
    report counts them, the changes file never holds them.
    """
    at = (record.topic, record.partition, record.offset)
    if at in verdicts and verdicts[at].outcome == f"DEAD_LETTER:{DeadLetterClass.DUPLICATE_EVENT.value}":
        summary.unchanged += 1  # inherited: the live verdict stands (counted by the loop)
        return
    if out.error_class is not None:
        after = Verdict.dead_letter(out.error_class.value)
    else:
        after = Verdict.of_result(job.codec.decode_result(out.value))
    before = verdicts.get(at)
    if before is not None and before.key() == after.key():
        summary.unchanged += 1
        return
    before_outcome = before.outcome if before is not None else "(none)"
    reasons = why(before, after)
    summary.transitions[before_outcome, after.outcome] += 1
    for reason in reasons:
        summary.reasons[before_outcome, after.outcome, reason] += 1
    job.metrics.changed.inc()
    cause = classify(before, after)
    summary.impact.add(
        Change(
            cause=cause,
            before=before_outcome,
            after=after.outcome,
            criteria=changed_criteria(before, after, cause),
            member=who[0],
            prescriber=who[1],
            week=after.week if after.week != "(unknown)" or before is None else before.week,
        )
    )
    summary.changes.append(
        {
            "claim_id": after.claim_id or (before.claim_id if before else ""),
            "topic": at[0],
            "partition": at[1],
            "offset": at[2],
            "before": before.brief() if before is not None else None,
            "after": after.brief(),
            "why": reasons,
            "cause": cause.value,
        }
    )
