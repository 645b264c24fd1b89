"""Helpers for pipeline tests: synthetic claim streams, a worker subprocess, and read-back of both outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.model import Claim
from worker.kafka.reads import read_topic

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
ONCOLOGY = "207RX0202X"
FAMILY = "207Q00000X"
IXEMPRA = "70020191001"
CAPECITABINE = "00093747489"
NPI = "1234567893"
SERVICE_DAY = datetime.now(UTC).date() - timedelta(days=30)
"""The claims' date of service: a month before the run, inside timely filing whenever the tests run."""


def claim(n: int, **overrides: object) -> Claim:
    """A valid Ixempra billing claim number ``n``; ``overrides`` replace top-level fields."""
    data: dict[str, object] = {
        "event_id": f"evt-{n:06d}",
        "event_time": datetime.now(UTC),
        "transaction_code": "B1",
        "claim_id": f"clm-{n:06d}",
        "service_provider_id": "1999999976",
        "prescription_reference_number": f"{n:012d}"[-12:],
        "fill_number": 0,
        "date_of_service": SERVICE_DAY,
        "patient": {
            "member_id": f"SYNTHMEM{n:06d}",
            "first_name": "TESTFIRST",
            "last_name": "TESTLAST",
            "date_of_birth": date(1960, 1, 1),
        },
        "product": {"product_id": IXEMPRA, "qualifier": "03"},
        "quantity": 1.0,
        "days_supply": 21,
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "prescriber": {"npi": NPI, "taxonomy": ONCOLOGY},
    }
    data.update(overrides)
    return Claim.model_validate(data)


def produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce ``(key, value)`` pairs idempotently and wait until all are acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def encoded(claims: list[Claim], codec: Codec | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """Encode claims as (key, value) records keyed by claim id."""
    codec = codec or Codec()
    return [(c.claim_id.encode(), codec.encode_claim(c)) for c in claims]


@dataclass
class Outputs:
    """Everything committed on the results and dead-letter topics."""

    results: list[dict]
    dead_letters: list[dict]

    def sources(self) -> list[tuple[int, int]]:
        """(partition, offset) of every input record accounted for, results and dead letters together."""
        return sorted(
            [(r["source"]["partition"], r["source"]["offset"]) for r in self.results]
            + [(d["source"]["partition"], d["source"]["offset"]) for d in self.dead_letters]
        )


def read_all(bootstrap: str, topic: str, codec: Codec, kind: str) -> list[dict]:
    """Read every committed record of ``topic`` up to its end offsets, decoding results or dead letters."""
    decode = codec.decode_result if kind == "result" else codec.decode_dead_letter
    return [
        decode(record.value)
        for record in read_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), topic, timeout_s=30)
    ]


def read_outputs(bootstrap: str, results_topic: str, dlq_topic: str) -> Outputs:
    """Read both output topics with read_committed."""
    codec = Codec()
    return Outputs(
        read_all(bootstrap, results_topic, codec, "result"),
        read_all(bootstrap, dlq_topic, codec, "dead_letter"),
    )


def worker_env(bootstrap: str, topics: dict[str, str], **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess bound to the given topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLAIMS_CLAIMS_TOPIC": topics["claims"],
            "CLAIMS_RESULTS_TOPIC": topics["results"],
            "CLAIMS_DEAD_LETTER_TOPIC": topics["dead_letter"],
            "CLAIMS_GROUP_ID": topics["group"],
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": topics["group"],
            "CLAIMS_METRICS_PORT": "0",
            "CLAIMS_LOG_FORMAT": "json",
            "CLAIMS_TRANSACTION_TIMEOUT_MS": "10000",
        }
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m worker run`` with stdout+stderr to ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (records fully processed)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def iter_log(log_path: Path) -> Iterator[str]:
    """Lines of a worker log file."""
    yield from log_path.read_text(errors="replace").splitlines()
