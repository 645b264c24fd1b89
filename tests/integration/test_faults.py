"""Broker faults mid-stream: the worker rides out a frozen broker and still publishes exactly once."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.integration import streams
from worker.kafka.failures import ExitCode

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


BUSY_CLAIMS = 20_000


def _events(log) -> list[str]:
    return [json.loads(line).get("event", "") for line in streams.iter_log(log) if line.startswith("{")]


def test_frozen_broker_mid_stream_loses_and_duplicates_nothing(kafka_bootstrap, own_broker, topics, tmp_path):
    """SIGSTOP the broker while the worker is busy, resume it, and the output is still exactly once."""
    # The worker must still be at work when the freeze comes. A poll takes what the open transaction has
    # room for (CLAIMS_TRANSACTION_MAX_RECORDS, not CLAIMS_BATCH_MAX_RECORDS, at a commit interval), so
    # with the defaults 3,000 claims were answered in one transaction before the test's check of the
    # committed offsets saw the first 300, and an idle worker does not notice a frozen broker within the
    # minute. More claims, in transactions of 500.
    claims = [streams.claim(i) for i in range(BUSY_CLAIMS)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims))
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_COMMIT_TIMEOUT_S="3",
        CLAIMS_BATCH_MAX_RECORDS="100",
        CLAIMS_TRANSACTION_MAX_RECORDS="500",
    )
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) >= 300,
            120,
            0.1,
        ), log.read_text()[-3000:]
        os.kill(own_broker.pid, signal.SIGSTOP)
        try:
            # Hold the broker frozen until the worker has noticed (a call past its watchdog or timeout), at most 60 s.
            noticed = streams.wait_for(
                lambda: any(
                    e in ("producer_replaced", "transaction_aborting", "kafka_transient")
                    for e in _events(log)
                ),
                60,
                0.5,
            )
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        done = streams.wait_for(
            lambda: (
                streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == len(claims)
            ),
            240,
            1.0,
        )
        assert done, log.read_text()[-3000:]
        assert proc.poll() is None, "the worker must survive the outage"
    finally:
        code = proc.send_signal(signal.SIGTERM) or proc.wait(timeout=60)
    assert code == ExitCode.OK
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert sorted(outputs.sources()) == sorted(
        (p, o) for p, n in _per_partition(outputs).items() for o in range(n)
    )
    assert sorted(r["source_event_id"] for r in outputs.results) == sorted(c.event_id for c in claims)
    assert outputs.dead_letters == []
    assert noticed, "the frozen broker should have made a Kafka call outlive its timeout"


def _per_partition(outputs: streams.Outputs) -> dict[int, int]:
    counts: dict[int, int] = {}
    for partition, _ in outputs.sources():
        counts[partition] = counts.get(partition, 0) + 1
    return counts


def test_sigterm_during_an_outage_exits_0(kafka_bootstrap, own_broker, topics, tmp_path):
    """SIGTERM while the broker is frozen and the worker is recovering ends the worker with exit 0."""
    import time  # noqa: PLC0415

    claims = [streams.claim(i) for i in range(BUSY_CLAIMS)]  # busy at the freeze, as above
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims))
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_COMMIT_TIMEOUT_S="3",
        CLAIMS_BATCH_MAX_RECORDS="100",
        CLAIMS_TRANSACTION_MAX_RECORDS="500",
        CLAIMS_OUTAGE_LIMIT_S="600",
    )
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    code = None
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) >= 300,
            120,
            0.1,
        ), log.read_text()[-3000:]
        os.kill(own_broker.pid, signal.SIGSTOP)
        try:
            in_outage = streams.wait_for(
                lambda: any(e in ("producer_replaced", "kafka_transient") for e in _events(log)), 90, 0.2
            )
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            print(f"\nexit {code} {time.monotonic() - started:.2f}s after SIGTERM during an outage")
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert in_outage, log.read_text()[-3000:]
    assert code == ExitCode.OK, log.read_text()[-3000:]
