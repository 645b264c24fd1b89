"""The broker foundation: a real broker serves transactional produce and read_committed consume."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.kafka


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        values: list[bytes] = []
        for record in consumer:
            values.append(record.value)
            if len(values) >= expected:
                break
        return values
    finally:
        consumer.close()


def test_transactional_produce_is_visible_to_read_committed(kafka_bootstrap, make_topics, unique):
    """Committed transactions are read by a read_committed consumer; aborted ones are not."""
    (topic,) = make_topics(f"broker-check-{unique}")
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"broker-check-{unique}",
        transaction_timeout_ms=15000,
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, b"aborted-1")
        producer.abort_transaction()
        producer.begin_transaction()
        for i in range(3):
            producer.send(topic, f"committed-{i}".encode())
        producer.commit_transaction()
    finally:
        producer.close()
    # Sentinel read stops at 3 records; a 4th (the aborted one) must not be there at all.
    values = _read_all(kafka_bootstrap, topic, expected=4)
    assert values == [b"committed-0", b"committed-1", b"committed-2"]
