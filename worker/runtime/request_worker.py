"""The PA-request worker's start-up: ``serve_requests`` (the door itself is ``runtime/requests.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.config.roles import request_settings
from worker.errors import ConfigError
from worker.kafka import io as kafka_io
from worker.kafka.failures import Kind, classify, describe
from worker.ops.directory_metrics import DirectoryMetrics
from worker.ops.health import HealthServer, Readiness
from worker.ops.metrics import WorkerMetrics
from worker.runtime.compose import build_request_worker
from worker.runtime.reference import open_reference

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry
    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim
    from worker.policy import PolicyChoice
    from worker.policy.facts import Facts

__all__ = ["serve_requests"]


def _request_metrics(view: Settings) -> tuple[PolicyChoice, CollectorRegistry, WorkerMetrics]:
    """Return the policy choice and the claims worker's metrics on a fresh registry (requests, answers).

    ``catalog_choice`` raises ``ConfigError`` (exit 2) naming the catalog's entries or a bad chain.
    """
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from worker import __version__  # noqa: PLC0415
    from worker.policy import catalog_choice  # noqa: PLC0415

    policies = catalog_choice(view.policy)
    registry = CollectorRegistry()
    metrics = WorkerMetrics(
        registry, criterion_ids=policies.criterion_ids, reason_codes=policies.reason_codes
    )
    metrics.set_policy_info(policies.named.policy_id, policies.version_label, __version__)
    return policies, registry, metrics


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
    view = request_settings(settings)
    policies, registry, metrics = _request_metrics(view)
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
            policies=policies,
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
