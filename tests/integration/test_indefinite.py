"""Indefinite transaction outcomes (KAFKA-17754): the producer is replaced, never reused, and nothing is lost or doubled."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import structlog
from prometheus_client import CollectorRegistry

from tests.integration import streams
from worker.config.settings import load_settings
from worker.kafka import io as kafka_io
from worker.kafka.failures import ExitCode
from worker.runtime.compose import build_worker

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _run_pipeline(
    settings, patch_first: Callable[[kafka_io.KafkaProducer], None]
) -> tuple[int, CollectorRegistry, int]:
    """Run the real worker in this process until idle; the first producer gets ``patch_first`` applied."""
    registry = CollectorRegistry()
    made: list[kafka_io.KafkaProducer] = []

    def factory() -> kafka_io.KafkaProducer:
        producer = kafka_io.make_producer(settings)
        if not made:
            patch_first(producer)
        made.append(producer)
        return producer

    worker = build_worker(settings, producer_factory=factory, registry=registry, log=structlog.get_logger())
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", worker.run(threading.Event())))
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the worker did not stop"
    return result["code"], registry, len(made)


@pytest.mark.parametrize(
    "commit_lands_first",
    [
        pytest.param(False, id="delayed-commit-arrives-after-the-watchdog-and-is-fenced"),
        pytest.param(True, id="commit-lands-but-its-answer-is-late"),
    ],
)
def test_indefinite_commit_replaces_the_producer_without_loss_or_duplicates(
    kafka_bootstrap, make_topics, unique, commit_lands_first
):
    """A commit whose answer outlives the watchdog leads to a fresh producer and a rewind; output stays exactly once."""
    names = {"claims": f"ind-c-{unique}", "results": f"ind-r-{unique}", "dead_letter": f"ind-d-{unique}"}
    make_topics(*names.values(), partitions=1)
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CLAIMS_CLAIMS_TOPIC": names["claims"],
            "CLAIMS_RESULTS_TOPIC": names["results"],
            "CLAIMS_DEAD_LETTER_TOPIC": names["dead_letter"],
            "CLAIMS_GROUP_ID": f"ind-{unique}",
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"ind-{unique}",
            "CLAIMS_COMMIT_TIMEOUT_S": "1",
            "CLAIMS_TRANSACTION_TIMEOUT_MS": "10000",
            "CLAIMS_BATCH_MAX_RECORDS": "50",
            "CLAIMS_EXIT_WHEN_IDLE_S": "3",
        }
    )
    claims = [streams.claim(i) for i in range(200)]
    streams.produce(kafka_bootstrap, names["claims"], streams.encoded(claims))

    def patch(producer: kafka_io.KafkaProducer) -> None:
        real = producer.commit_transaction
        calls = {"n": 0}

        def slow_commit() -> None:
            calls["n"] += 1
            if calls["n"] > 1:
                real()
                return
            if commit_lands_first:
                real()
                time.sleep(3)  # the commit landed, but the worker only learns of it too late
            else:
                # The EndTxn would leave after the watchdog gave up on it; by then the new producer's
                # init_transactions has fenced this epoch and aborted its transaction, so whatever
                # this late call does, the batch is re-done once (checked on the output below).
                time.sleep(3)
                real()

        producer.commit_transaction = slow_commit  # type: ignore[method-assign]

    code, registry, producers = _run_pipeline(settings, patch)
    assert code == ExitCode.OK
    assert producers >= 2, "the producer must be replaced after an indefinite outcome"
    assert registry.get_sample_value("claims_worker_producer_recreations_total") >= 1
    outputs = streams.read_outputs(kafka_bootstrap, names["results"], names["dead_letter"])
    event_ids = [r["source_event_id"] for r in outputs.results]
    assert sorted(event_ids) == sorted(c.event_id for c in claims), "every claim exactly once"
    assert sorted(outputs.sources()) == [(0, i) for i in range(len(claims))]
