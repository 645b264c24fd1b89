"""Shared fixtures: one real Kafka broker per test session, and unique topics per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deploy.kafka import broker as local_broker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# pytester drives the guard's own tests; broker_marker refuses an unmarked test that needs the broker.
pytest_plugins = ("pytester", "tests.broker_marker")

# Transaction state topics on the testcontainers image need RF/ISR 1 like the local broker.
_CONTAINER_ENV = {
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
}


def _docker_answers() -> bool:
    """Tell whether a Docker engine (not just the client) answers."""
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap address of a real broker: $KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else local jars."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415 - only with Docker

        container = KafkaContainer().with_kraft()
        for key, value in _CONTAINER_ENV.items():
            container = container.with_env(key, value)
        with container:
            yield container.get_bootstrap_server()
        return
    state = tmp_path_factory.mktemp("kafka")
    started = local_broker.start_broker(state_dir=state)
    _OWN_BROKER.append(started)
    try:
        yield started.bootstrap
    finally:
        if request.session.testsfailed:
            print(
                f"\n--- broker log tail ({started.log_file}) ---\n{local_broker._tail(Path(started.log_file), 60)}"
            )
        local_broker.stop_broker(state)


_OWN_BROKER: list[local_broker.Broker] = []


@pytest.fixture
def own_broker(kafka_bootstrap: str) -> local_broker.Broker:
    """The session broker's process, for fault injection; skips when the broker is not ours to pause."""
    if not _OWN_BROKER or _OWN_BROKER[0].bootstrap != kafka_bootstrap:
        pytest.skip("the broker is external (KAFKA_BOOTSTRAP_SERVERS or a container): not ours to pause")
    return _OWN_BROKER[0]


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Iterator[Callable[..., list[str]]]:
    """Create topics on the session broker; returns a factory ``make_topics(*names, partitions=1)``."""
    from kafka.admin import KafkaAdminClient, NewTopic  # noqa: PLC0415 - unit tests never import kafka

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")

    def create(*names: str, partitions: int = 1) -> list[str]:
        admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
        return list(names)

    try:
        yield create
    finally:
        admin.close()
