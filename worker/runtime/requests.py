"""The PA-request door: requests are decided by the claims' ``Pipeline``, with a request judge and router.

``authorizations serve-requests`` builds a ``Pipeline`` (``compose.build_request_worker``) whose input is
the requests topic and whose output is the PA-decisions topic (``request_settings``: the worker's
settings with those topics, group ``<group>-pa-requests`` and transactional id prefix
``<prefix>-pa-requests``); only the per-record steps differ (``REQUESTS``). So the request path has the
claims' transaction session (one transaction per batch: answers, new authorizations, request offsets;
abort, rewind, and a new producer after an unknown commit outcome), partition state (the
answered-requests filter restored per partition on assignment), backoff and outage clock, and exit
codes: 0 clean stop, 2 bad settings or missing topics, 3 fenced, 4 unreachable, 5 not authorized,
70 internal. See docs/authorizations.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from worker.contracts.identifiers import key_is_clean
from worker.contracts.model import CriterionStatus
from worker.contracts.pa_request import decode_pa_request, pa_decision, request_claim
from worker.contracts.wire import EVENT_ID_HEADER, NOT_APPROVED
from worker.errors import BadRecord, ConfigError, DeadLetterClass
from worker.runtime.doors import Door
from worker.runtime.judge import DuplicateEvent, Judgement, judged
from worker.runtime.route import Outgoing, dead_letter

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from datetime import datetime

    from prometheus_client import CollectorRegistry
    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.contracts.model import Claim
    from worker.ops.metrics import WorkerMetrics
    from worker.policy import Policy
    from worker.policy.facts import Facts
    from worker.runtime.judge import Record
    from worker.state.authorizations import Authorizations
    from worker.state.dedupe import SeenEvents

__all__ = ["REQUESTS", "judge_request", "request_settings", "route_request", "serve_requests"]


def request_settings(settings: Settings) -> Settings:
    """Return the settings of the request door: requests in, PA decisions out, its own group and ids.

    Everything else (dead-letter topic, store, policy, directory, limits, security) is the worker's.
    Raises ``ConfigError`` (exit 2) unless the requests, decisions and store topics are all set.
    """
    requests, decisions = settings.pa_requests_topic, settings.pa_decisions_topic
    if requests is None or decisions is None or settings.authorizations_topic is None:
        msg = (
            "serve-requests needs CLAIMS_PA_REQUESTS_TOPIC, CLAIMS_PA_DECISIONS_TOPIC and the store settings"
        )
        raise ConfigError(msg)
    others = {settings.claims_topic, settings.results_topic, settings.dead_letter_topic}
    if requests == decisions or {requests, decisions} & others:
        msg = (
            "CLAIMS_PA_REQUESTS_TOPIC and CLAIMS_PA_DECISIONS_TOPIC must differ from each other "
            "and from the claims, results and dead-letter topics"
        )
        raise ConfigError(msg)
    return settings.model_copy(
        update={
            "claims_topic": requests,
            "results_topic": decisions,
            "group_id": f"{settings.group_id}-pa-requests",
            "transactional_id_prefix": f"{settings.transactional_id_prefix}-pa-requests",
        }
    )


def judge_request(
    record: Record,
    *,
    codec: Codec,
    seen: SeenEvents,
    policy: Policy,
    decided_at: datetime,
    lookup_facts: Callable[[Claim], Facts],
    automated_denials: bool,
    authorizations: Authorizations | None,
) -> Judgement:
    """Judge one PA request: decode it, refuse a request id already answered, decide it as a claim.

    A request id already answered on this partition (committed, or earlier in the batch) is a
    ``DUPLICATE_EVENT``, as a redelivered claim is: its first answer stays on the PA-decisions topic.
    A request id or record key that is no clean identifier (``contracts.identifiers``) is a dead
    letter (INVALID_FIELD) naming the field, never its value: the answer has no REJECTED form.
    """
    del codec  # requests have their own contract (worker/contracts/pa_request.py)
    try:
        claim = request_claim(decode_pa_request(record.value))
        _require_clean_key(record.key)
        if seen.seen(record.partition, claim.claim_id):
            raise DuplicateEvent
    except BadRecord as error:
        return Judgement(record, error=error, policy=policy)
    return judged(
        record,
        claim,
        policy=policy,
        decided_at=decided_at,
        lookup_facts=lookup_facts,
        automated_denials=automated_denials,
        authorizations=authorizations,
        dispensed=False,  # a request dispenses nothing: its synthetic claim holds no quantity
    )


def _require_clean_key(key: bytes | None) -> None:
    """Raise ``BadRecord`` (INVALID_FIELD, naming the key, never its bytes) unless the key is clean."""
    if not key_is_clean(key):
        raise BadRecord(DeadLetterClass.INVALID_FIELD, "key: unprintable")


def route_request(judgement: Judgement, *, codec: Codec, settings: Settings, at: datetime) -> Outgoing:
    """Return the answer (JSON, keyed by request id, on the request's partition number) or a dead letter.

    The answer carries the request id as the ``claims-worker.event-id`` header: the answered-requests
    filter reads it back from the same PA-decisions partition after an assignment or a replacement.
    """
    record = judgement.record
    if judgement.error is not None:
        return dead_letter(record, judgement.error, codec=codec, settings=settings, at=at)
    claim, decision = judgement.claim, judgement.decision
    if claim is None or decision is None:  # pragma: no cover - a Judgement has an error or both
        msg = "judgement without a claim, a decision or an error"
        raise TypeError(msg)
    request_id = claim.claim_id
    answer = json.dumps(pa_decision(request_id, decision), separators=(",", ":")).encode()
    not_approved = decision.outcome in NOT_APPROVED
    return Outgoing(
        topic=settings.results_topic,  # the PA-decisions topic (request_settings)
        partition=record.partition,
        key=request_id.encode(),
        value=answer,
        headers=[(EVENT_ID_HEADER, request_id.encode())],
        outcome=decision.outcome,
        reason_codes=tuple(c.reason_code for c in decision.criteria if c.status != CriterionStatus.MET)
        if not_approved
        else (),
        criteria=tuple((c.criterion_id, c.status) for c in decision.criteria),
        claim_id=request_id,
        event_id=request_id,
        event_time=claim.event_time,
        decide_s=judgement.decide_s,
    )


REQUESTS = Door("pa-requests", judge_request, route_request, "request")
"""PA requests in, answers (or dead letters) out; an approval goes on file with source ``request``."""


def _request_metrics(view: Settings) -> tuple[Policy, CollectorRegistry, WorkerMetrics]:
    """Return the policy and the claims worker's metrics on a fresh registry (counting requests, answers).

    ``catalog_policy`` raises ``ConfigError`` (exit 2) naming the catalog's entries.
    """
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from worker import __version__  # noqa: PLC0415
    from worker.ops.metrics import WorkerMetrics  # noqa: PLC0415
    from worker.policy import catalog_policy  # noqa: PLC0415

    policy = catalog_policy(view.policy)
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, criterion_ids=policy.criterion_ids, reason_codes=policy.reason_codes)
    metrics.set_policy_info(policy.policy_id, policy.version, __version__)
    return policy, registry, metrics


def serve_requests(
    settings: Settings,
    stop: threading.Event,
    log: FilteringBoundLogger,
    *,
    lookup_facts: Callable[[Claim], Facts] | None = None,
    report: Callable[[str], None] = lambda _line: None,
) -> int:
    """Serve PA requests until ``stop`` (or idle past ``CLAIMS_EXIT_WHEN_IDLE_S``); return the exit code.

    Without ``lookup_facts`` the prescriber directory of ``CLAIMS_DIRECTORY_PATH`` (if set) is opened as
    the live worker opens it (``open_reference``: a missing or damaged index raises ``ConfigError``, exit 2,
    before any Kafka client). It serves the claims worker's metrics (counting requests and answers) and
    health endpoints on ``CLAIMS_METRICS_HOST:CLAIMS_METRICS_PORT``; a port in use raises ``ConfigError``.
    A fatal failure's one operator line goes to ``report`` (the CLI prints it on stderr, as
    ``claims-worker run`` does).
    """
    # Imported here: compose imports this module (the request door) at its top.
    from worker.kafka import io as kafka_io  # noqa: PLC0415
    from worker.kafka.failures import Kind, classify, describe  # noqa: PLC0415
    from worker.ops.health import HealthServer, Readiness  # noqa: PLC0415
    from worker.ops.metrics import DirectoryMetrics  # noqa: PLC0415
    from worker.runtime.compose import build_request_worker  # noqa: PLC0415
    from worker.runtime.reference import open_reference  # noqa: PLC0415

    view = request_settings(settings)
    policy, registry, metrics = _request_metrics(view)
    reference = None
    if lookup_facts is None:  # before any Kafka client: a bad index is exit 2
        directory = DirectoryMetrics(registry) if view.directory_path is not None else None
        reference = open_reference(view, log, stop, metrics=directory)
    metrics.set_prescriber_verified(lookup_facts is not None or reference is not None)
    readiness = Readiness()
    health = HealthServer(registry, readiness, host=view.metrics_host, port=view.metrics_port)
    try:
        log.info("metrics_serving", port=health.start())  # ConfigError (exit 2) when the port is taken
    except ConfigError:
        if reference is not None:
            reference.close()
        raise
    consumer = None
    try:
        consumer = kafka_io.make_consumer(view)
        made = consumer
        counts = kafka_io.bounded(  # a missing topic, or outputs smaller than the requests topic: exit 2
            lambda: kafka_io.check_topics(made, view, refresh=True), view.commit_timeout_s, "topic metadata"
        )
        worker = build_request_worker(
            settings,
            consumer=consumer,
            log=log,
            policy=policy,
            metrics=metrics,
            registry=registry,
            lookup_facts=lookup_facts,
            reference=reference,
            claims_partitions=counts[view.claims_topic],
        )
        consumer = None  # the worker owns and closes it now
        readiness.check = worker.readiness
        metrics.set_running(True)
        code = worker.run(stop)
        if worker.failure is not None:
            report(worker.failure)
    except Exception as exc:  # noqa: BLE001 - every start-up failure ends in a documented exit code
        kind = classify(exc)
        log.error("pa_requests_failed", error=type(exc).__name__)  # noqa: TRY400 - no payload
        if kind is Kind.TRANSIENT:  # the topic check timed out: no broker answered
            report(f"cannot reach Kafka at {view.bootstrap_servers} ({type(exc).__name__})")
        else:
            report(describe(exc, view))
        code = kind.exit_code  # a transient failure at start-up: 4 (unreachable); internal: 70
    finally:
        metrics.set_running(False)
        health.stop()
        if consumer is not None:
            consumer.close(autocommit=False)
        if reference is not None:
            reference.close()
    return int(code)
