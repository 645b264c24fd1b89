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

from worker import __version__
from worker.contracts.codec import Codec
from worker.contracts.pa_request import decide_request, decode_pa_request, pa_decision, request_claim
from worker.contracts.results import SourceCoordinates, build_dead_letter
from worker.errors import BadRecord, ConfigError
from worker.policy import catalog_policy, decide
from worker.policy.facts import Facts
from worker.runtime.clients import Role, new_consumer, new_producer
from worker.runtime.failures import ExitCode, Kind, classify
from worker.runtime.kafka_io import IndefiniteOutcome, OffsetAndMetadata, bounded, rewind_to_committed
from worker.state.authorizations import Authorizations

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from kafka import KafkaConsumer, KafkaProducer
    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim

__all__ = ["serve_requests"]


def _topics(settings: Settings) -> tuple[str, str]:
    requests, decisions = settings.pa_requests_topic, settings.pa_decisions_topic
    if requests is None or decisions is None or settings.authorizations_topic is None:
        msg = (
            "serve-requests needs CLAIMS_PA_REQUESTS_TOPIC, CLAIMS_PA_DECISIONS_TOPIC and the store settings"
        )
        raise ConfigError(msg)
    return requests, decisions


def serve_requests(  # noqa: C901, PLR0915 - the loop and its failure handling read best in one place
    settings: Settings,
    stop: threading.Event,
    log: FilteringBoundLogger,
    *,
    lookup_facts: Callable[[Claim], Facts] = lambda _claim: Facts(),
) -> int:
    """Serve PA requests until ``stop`` (or idle past ``CLAIMS_EXIT_WHEN_IDLE_S``); return the exit code."""
    requests_topic, decisions_topic = _topics(settings)
    policy = catalog_policy(settings.policy)
    codec = Codec(wire_format=settings.wire_format.value)
    store = Authorizations.connect(settings, log=log)
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
        consumer.subscribe([requests_topic])
        idle_since = time.monotonic()
        while not stop.is_set():
            store.follow()
            batch = consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records)
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
                        try:
                            claim = request_claim(decode_pa_request(record.value))
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
                            producer.send(
                                settings.dead_letter_topic,
                                key=record.key,
                                value=codec.encode_dead_letter(letter),
                            )
                            counts["dead_letter"] = counts.get("dead_letter", 0) + 1
                            continue
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
                        answer = json.dumps(pa_decision(claim.claim_id, decision), separators=(",", ":"))
                        producer.send(decisions_topic, key=claim.claim_id.encode(), value=answer.encode())
                        issued = store.issue(claim, decision, source_kind="request")
                        if issued is not None:
                            producer.send(
                                issued.topic, key=issued.key, value=issued.value, partition=issued.partition
                            )
                        counts[decision.outcome.value] = counts.get(decision.outcome.value, 0) + 1
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
                kind = classify(exc)
                if kind is not Kind.TRANSIENT or isinstance(exc, IndefiniteOutcome):
                    raise  # an unknown commit outcome: never reuse the producer (exit 4, restart fences it)
                log.warning("pa_requests_batch_aborted", error=type(exc).__name__)
                bounded(producer.abort_transaction, settings.commit_timeout_s, "abort_transaction")
                rewind_to_committed(consumer)
                stop.wait(1.0)
                continue
            store.commit()
            log.info("pa_requests_committed", counts=counts)
    except Exception as exc:  # noqa: BLE001 - every failure ends in a documented exit code
        kind = classify(exc)
        code = ExitCode.INTERNAL if kind is Kind.INTERNAL else kind.exit_code
        log.error("pa_requests_failed", error=type(exc).__name__, exit_code=int(code))  # noqa: TRY400 - no payload
        return code
    finally:
        store.close()
        consumer.close(autocommit=False)
        producer.close(timeout=5)
    return ExitCode.OK
