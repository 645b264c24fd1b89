"""The one composition root: ``build_worker`` wires settings, clients, stores, codec, policy and metrics.

Used by the CLI, the benchmark and the tests, so each runs the worker as it is assembled in production;
tests replace a collaborator by passing it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from worker.config.roles import request_settings
from worker.contracts.codec import Codec
from worker.kafka import io as kafka_io
from worker.ops.logs import get_logger
from worker.ops.metrics import WorkerMetrics
from worker.policy import PolicyChoice, catalog_choice
from worker.runtime.doors import CLAIMS
from worker.runtime.pipeline import Pipeline
from worker.runtime.requests import REQUESTS
from worker.state.authorization_table import AuthorizationMetrics
from worker.state.authorizations import Authorizations
from worker.state.dedupe import SeenEvents

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim
    from worker.kafka.io import KafkaConsumer, KafkaProducer, Membership
    from worker.policy import Policy
    from worker.policy.facts import Facts
    from worker.runtime.doors import Door
    from worker.runtime.reference import ReferenceData
    from worker.state.store import Restored

__all__ = ["build_request_worker", "build_worker", "event_id_reader", "readback_timeout_s"]


def readback_timeout_s(settings: Settings) -> float:
    """How long one partition's read-back may take before it is cut short (and counted)."""
    return settings.transaction_timeout_ms / 1000 + 5


def event_id_reader(settings: Settings) -> Callable[[int, threading.Event], Restored]:
    """Return the duplicate filter's read-back: the newest event ids of one results partition."""

    def read(partition: int, stop: threading.Event) -> Restored:
        return kafka_io.read_event_ids(
            settings,
            settings.results_topic,
            partition,
            settings.dedup_window,
            timeout_s=readback_timeout_s(settings),
            stop=stop,
        )

    return read


def build_worker(
    settings: Settings,
    *,
    consumer: KafkaConsumer | None = None,
    producer_factory: Callable[[], KafkaProducer] | None = None,
    codec: Codec | None = None,
    policy: Policy | None = None,
    policies: PolicyChoice | None = None,
    registry: CollectorRegistry | None = None,
    metrics: WorkerMetrics | None = None,
    log: FilteringBoundLogger | None = None,
    readback: Callable[[int, threading.Event], Restored] | None = None,
    lookup_facts: Callable[[Claim], Facts] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    claims_partitions: int | None = None,
    reference: ReferenceData | None = None,
    authorizations: Authorizations | None = None,
    door: Door = CLAIMS,
    membership: Callable[[], Membership] | None = None,
    fault: Callable[[str], None] | None = None,
) -> Pipeline:
    """Return a worker ready to ``run(stop)``: nothing connects until then (except a default consumer).

    ``reference`` (``worker.runtime.reference.open_reference``) supplies the prescriber directory: its
    ``facts`` is the lookup and its ``refresh`` runs once per loop pass; the caller closes it. With
    ``CLAIMS_AUTHORIZATIONS_TOPIC`` set the authorization store is built too (its follower reads the
    store topic on the worker's first pass); its metrics go on ``registry`` when one is given.
    ``policies`` is the catalog a claim's version is chosen from (``worker.policy.catalog``); without
    it a given ``policy`` is pinned, else ``CLAIMS_POLICY`` names the choice. ``membership`` replaces
    the group-coordinator check made before a producer replacement (``kafka_io.slot_membership``;
    tests pass a fake); ``fault`` is the test-only abort hook (``tests.chaos.faults``), None in
    production.
    """
    if reference is not None and lookup_facts is None:
        lookup_facts = reference.facts
    if policies is None:
        policies = PolicyChoice.pin(policy) if policy is not None else catalog_choice(settings.policy)
    if authorizations is None and settings.authorizations_topic is not None:
        authorizations = Authorizations.connect(
            settings,
            metrics=AuthorizationMetrics(registry if registry is not None else CollectorRegistry()),
            log=log or get_logger("claims_worker"),
        )
    if metrics is None:
        metrics = WorkerMetrics(
            registry if registry is not None else CollectorRegistry(),
            criterion_ids=policies.criterion_ids,
            reason_codes=policies.reason_codes,
        )
    return Pipeline(
        settings,
        consumer if consumer is not None else kafka_io.make_consumer(settings),
        producer_factory or (lambda: kafka_io.make_producer(settings)),
        codec or Codec(wire_format=settings.wire_format.value),
        metrics,
        log or get_logger("claims_worker"),
        seen=SeenEvents(
            settings.dedup_window, readback if readback is not None else event_id_reader(settings)
        ),
        policies=policies,
        lookup_facts=lookup_facts,
        clock=clock,
        claims_partitions=claims_partitions,
        refresh=reference.refresh if reference is not None else None,
        authorizations=authorizations,
        door=door,
        membership=membership,
        fault=fault,
    )


def build_request_worker(
    settings: Settings,
    **parts: Any,  # noqa: ANN401 - build_worker's keyword arguments, passed through
) -> Pipeline:
    """Return the PA-request worker: the same ``Pipeline`` with the request door (``requests.REQUESTS``).

    ``settings`` are the worker's; the pipeline runs on ``config.roles.request_settings(settings)`` (requests
    in, PA decisions out, group ``<group>-pa-requests``, transactional id prefix ``<prefix>-pa-requests``),
    with the authorization store and the answered-requests filter (read back from PA decisions).
    """
    return build_worker(request_settings(settings), door=REQUESTS, **parts)
