"""The PA-request loop: read requests, decide them with the claims policy, answer and store, exactly once.

One Kafka transaction per batch holds the answers (PA-decisions topic, keyed by request id), the new
authorizations (the store topic) and the request offsets (group ``<group>-pa-requests``); a failed
batch is aborted, the store's staged approvals dropped and the consumer rewound. Bad requests go to
the dead-letter topic with the claims' classes. Run it with ``claims-worker authorizations
serve-requests``; exit codes as the worker's (2 bad settings, 3 fenced, 4 unreachable, 5 not
authorized, 70 internal). See docs/authorizations.md.
"""

from __future__ import annotations

import functools
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaTimeoutError

from worker import __version__
from worker.contracts.codec import Codec
from worker.contracts.pa_request import decide_request, decode_pa_request, pa_decision, request_claim
from worker.contracts.results import SourceCoordinates, build_dead_letter
from worker.errors import BadRecord, ConfigError
from worker.policy import catalog_policy, decide
from worker.policy.facts import Facts
from worker.runtime.clients import Role, new_consumer, new_producer
from worker.runtime.failures import ExitCode, Kind, classify
from worker.runtime.judge import DuplicateEvent
from worker.runtime.kafka_io import (
    IndefiniteOutcome,
    OffsetAndMetadata,
    bounded,
    read_event_ids,
    rewind_to_committed,
)
from worker.runtime.reference import open_reference
from worker.state.authorizations import Authorizations
from worker.state.dedupe import EVENT_ID_HEADER, SeenEvents

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

    from kafka import KafkaConsumer, KafkaProducer
    from kafka.consumer.fetcher import ConsumerRecord
    from kafka.structs import TopicPartition
    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim
    from worker.policy import Policy

__all__ = ["ANSWERED", "answer_request", "restore_answered", "serve_requests"]

ANSWERED = 0
"""The one slot of the answered-requests filter: answers are keyed by request id, so the decisions
partition of a request is not its request partition; the loop remembers every answered id in one set."""

Send = tuple[str, bytes | None, bytes, list[tuple[str, bytes]], int | None]
"""One record to send in the batch's transaction: topic, key, value, headers, partition (``None``: by key)."""


def _topics(settings: Settings) -> tuple[str, str]:
    requests, decisions = settings.pa_requests_topic, settings.pa_decisions_topic
    if requests is None or decisions is None or settings.authorizations_topic is None:
        msg = (
            "serve-requests needs CLAIMS_PA_REQUESTS_TOPIC, CLAIMS_PA_DECISIONS_TOPIC and the store settings"
        )
        raise ConfigError(msg)
    return requests, decisions


class _Reassigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes a new assignment (runs inside ``poll()``); the loop then restores the answered ids.

    A previous owner commits each batch before its partitions are revoked, so the read-back after the
    assignment holds every request it answered.
    """

    def __init__(self) -> None:
        self.changed = False

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Nothing to drop: the filter is rebuilt on the next assignment."""

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Ask the loop to read the answered ids back before its next batch."""
        if assigned:
            self.changed = True


def restore_answered(
    settings: Settings, decisions_topic: str, partitions: set[int], stop: threading.Event
) -> SeenEvents:
    """Return the answered-requests filter, read back from the request-id headers of the PA-decisions topic.

    The newest ``CLAIMS_DEDUP_WINDOW`` ids of each decisions partition are read (``read_committed``),
    then kept in one bounded set (the newest ``CLAIMS_DEDUP_WINDOW`` overall, partition by partition).
    """
    seen = SeenEvents(settings.dedup_window)
    ids: list[str] = []
    for partition in sorted(partitions):
        restored = read_event_ids(
            settings,
            decisions_topic,
            partition,
            settings.dedup_window,
            timeout_s=settings.commit_timeout_s * 4,
            stop=stop,
        )
        if not restored.complete and not stop.is_set():  # stopped: the loop ends before any batch
            msg = f"answered PA requests of {decisions_topic}[{partition}]: {restored.detail}"
            raise KafkaTimeoutError(msg)  # exit 4: never serve with a partial filter
        ids.extend(restored.state if isinstance(restored.state, list) else [])
    seen.load_ids(ANSWERED, ids)
    return seen


def answer_request(
    record: ConsumerRecord,
    *,
    settings: Settings,
    codec: Codec,
    policy: Policy,
    store: Authorizations,
    seen: SeenEvents,
    lookup_facts: Callable[[Claim], Facts],
    decided_at: datetime,
    counts: dict[str, int],
) -> list[Send]:
    """Return what one request record sends: a dead letter (bad or already answered) or its answer.

    A request whose id was already answered (committed, or earlier in this batch) is dead-lettered as
    ``DUPLICATE_EVENT``, as a redelivered claim is: the first answer stays on the PA-decisions topic.
    The answer carries the request id as the ``claims-worker.event-id`` header (the filter's read-back).
    """
    try:
        claim = request_claim(decode_pa_request(record.value))
        if seen.seen(ANSWERED, claim.claim_id):
            raise DuplicateEvent
    except BadRecord as error:
        letter = build_dead_letter(
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
            source=SourceCoordinates(record.topic, record.partition, record.offset),
            error=error,
            worker_version=__version__,
            dead_lettered_at=decided_at,
        )
        counts["dead_letter"] = counts.get("dead_letter", 0) + 1
        return [(settings.dead_letter_topic, record.key, codec.encode_dead_letter(letter), [], None)]
    decision = decide_request(
        claim,
        policy,
        decided_at,
        functools.partial(
            decide,
            claim,
            lookup_facts(claim),
            policy,
            decided_at,
            automated_denials=settings.automated_denials,
        ),
        store,
    )
    request_id = claim.claim_id
    answer = json.dumps(pa_decision(request_id, decision), separators=(",", ":")).encode()
    sends: list[Send] = [
        (
            settings.pa_decisions_topic or "",
            request_id.encode(),
            answer,
            [(EVENT_ID_HEADER, request_id.encode())],
            None,
        )
    ]
    seen.stage(ANSWERED, request_id)
    issued = store.issue(claim, decision, source_kind="request")
    if issued is not None:
        sends.append((issued.topic, issued.key, issued.value, [], issued.partition))
    counts[decision.outcome.value] = counts.get(decision.outcome.value, 0) + 1
    return sends


def serve_requests(  # noqa: C901, PLR0912, PLR0915 - the loop and its failure handling read best in one place
    settings: Settings,
    stop: threading.Event,
    log: FilteringBoundLogger,
    *,
    lookup_facts: Callable[[Claim], Facts] | None = None,
) -> int:
    """Serve PA requests until ``stop`` (or idle past ``CLAIMS_EXIT_WHEN_IDLE_S``); return the exit code.

    Without ``lookup_facts`` the prescriber directory of ``CLAIMS_DIRECTORY_PATH`` (if set) is opened as
    the live worker opens it (``open_reference``: a missing or damaged index raises ``ConfigError``, exit 2).
    """
    requests_topic, decisions_topic = _topics(settings)
    policy = catalog_policy(settings.policy)
    codec = Codec(wire_format=settings.wire_format.value)
    reference = None
    if lookup_facts is None:
        reference = open_reference(settings, log, stop)  # before any Kafka client: a bad index is exit 2
        lookup_facts = reference.facts if reference is not None else (lambda _claim: Facts())
    facts = lookup_facts
    try:
        store = Authorizations.connect(settings, log=log)
    except BaseException:
        if reference is not None:
            reference.close()
        raise
    consumer: KafkaConsumer = new_consumer(
        settings,
        Role.AUTHORIZATIONS,
        group_id=f"{settings.group_id}-pa-requests",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer: KafkaProducer = new_producer(
        settings,
        Role.AUTHORIZATIONS,
        transactional_id=f"{settings.transactional_id}-pa-requests",
        enable_idempotence=True,
        acks="all",
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )
    try:
        producer.init_transactions()
        store.catch_up()
        seen = SeenEvents(settings.dedup_window)
        reassigned = _Reassigned()
        consumer.subscribe([requests_topic], listener=reassigned)
        idle_since = time.monotonic()
        while not stop.is_set():
            store.follow()
            if reference is not None:
                reference.refresh()
            batch = consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records)
            if reassigned.changed:  # a new assignment: read the answers back before deciding anything
                reassigned.changed = False
                partitions = consumer.partitions_for_topic(decisions_topic) or set()
                seen = restore_answered(settings, decisions_topic, partitions, stop)
                log.info("pa_requests_answered_restored", n=len(seen.snapshot(ANSWERED)))
                if batch:
                    rewind_to_committed(consumer)  # nothing of it was decided: read it again
                    continue
            if not batch:
                limit = settings.exit_when_idle_s
                if limit is not None and consumer.assignment() and time.monotonic() - idle_since > limit:
                    log.info("idle_exit", idle_s=limit)
                    return ExitCode.OK
                continue
            idle_since = time.monotonic()
            decided_at = datetime.now(UTC)
            counts: dict[str, int] = {}
            try:
                producer.begin_transaction()
                for records in batch.values():
                    for record in records:
                        for topic, key, value, headers, partition in answer_request(
                            record,
                            settings=settings,
                            codec=codec,
                            policy=policy,
                            store=store,
                            seen=seen,
                            lookup_facts=facts,
                            decided_at=decided_at,
                            counts=counts,
                        ):
                            producer.send(topic, key=key, value=value, headers=headers, partition=partition)
                offsets = {
                    tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batch.items()
                }
                timeout = settings.commit_timeout_s
                bounded(
                    functools.partial(
                        producer.send_offsets_to_transaction, offsets, consumer.group_metadata()
                    ),
                    timeout,
                    "send_offsets_to_transaction",
                )
                bounded(producer.commit_transaction, timeout, "commit_transaction")
            except Exception as exc:
                store.abort()
                seen.abort()
                kind = classify(exc)
                if kind is not Kind.TRANSIENT or isinstance(exc, IndefiniteOutcome):
                    raise  # an unknown commit outcome: never reuse the producer (exit 4, restart fences it)
                log.warning("pa_requests_batch_aborted", error=type(exc).__name__)
                bounded(producer.abort_transaction, settings.commit_timeout_s, "abort_transaction")
                rewind_to_committed(consumer)
                stop.wait(1.0)
                continue
            store.commit()
            seen.commit()
            log.info("pa_requests_committed", counts=counts)
    except Exception as exc:  # noqa: BLE001 - every failure ends in a documented exit code
        kind = classify(exc)
        code = ExitCode.INTERNAL if kind is Kind.INTERNAL else kind.exit_code
        log.error("pa_requests_failed", error=type(exc).__name__, exit_code=int(code))  # noqa: TRY400 - no payload
        return code
    finally:
        store.close()
        if reference is not None:
            reference.close()
        consumer.close(autocommit=False)
        producer.close(timeout=5)
    return ExitCode.OK
