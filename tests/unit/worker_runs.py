"""Run the real worker loop over a few claims on the in-memory Kafka of ``fakes`` and read its results."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from tests.unit.fakes import FakeCluster, FakeConsumer, FakeProducer
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.runtime.compose import build_worker

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from worker.contracts.model import Claim

__all__ = ["results_of"]


def results_of(
    claims: Iterable[Claim] = (),
    *,
    at: datetime,
    cluster: FakeCluster | None = None,
    registry: CollectorRegistry | None = None,
    **parts: Any,
) -> dict[str, dict[str, Any]]:
    """Decode, decide and publish ``claims`` through ``build_worker`` (decided at ``at``) until idle.

    ``claims`` go to partition 0 of ``cluster`` (a fresh one-partition cluster by default; pass one
    already filled to spread records over partitions and to read what else it published). ``parts`` go
    to ``build_worker`` (e.g. ``reference=``, ``authorizations=``). Returns the decoded results by claim
    id; fails the test when the worker does not go idle within 10 s.
    """
    cluster = FakeCluster() if cluster is None else cluster
    codec = Codec()
    for claim in claims:
        cluster.append(0, codec.encode_claim(claim))
    stop = threading.Event()
    worker = build_worker(
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_EXIT_WHEN_IDLE_S": "0.2"}),
        consumer=FakeConsumer(cluster, stop),
        producer_factory=lambda: FakeProducer(cluster, {}),
        codec=codec,
        registry=CollectorRegistry() if registry is None else registry,
        log=structlog.get_logger(),
        readback=cluster.read_back,
        clock=lambda: at,
        claims_partitions=len(cluster.logs),
        **parts,
    )
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(10)
    if thread.is_alive():
        stop.set()
        thread.join()
        pytest.fail("the worker never went idle")
    return {r["claim_id"]: r for r in (codec.decode_result(p.value) for p in cluster.results())}
