"""The admin commands and start-up refusals against the session broker: topics, replication, metrics port."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

pytestmark = pytest.mark.kafka


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m worker`` with exactly ``env`` (plus PATH)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(bootstrap: str, unique: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLAIMS_CLAIMS_TOPIC": f"claims-{unique}",
        "CLAIMS_RESULTS_TOPIC": f"results-{unique}",
        "CLAIMS_DEAD_LETTER_TOPIC": f"dlq-{unique}",
        "CLAIMS_GROUP_ID": f"grp-{unique}",
        "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"tx-{unique}",
    }


def test_create_topics_sets_replication_and_min_insync_replicas(kafka_bootstrap, unique):
    """create-topics with RF 1 and min ISR 1 makes three topics whose min.insync.replicas config is 1."""
    env = _env(kafka_bootstrap, unique)
    args = ["create-topics", "--partitions", "3", "--replication-factor", "1", "--min-insync-replicas", "1"]
    proc = _cli(args, env)
    assert proc.returncode == 0, proc.stderr
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")
    try:
        names = [f"claims-{unique}", f"results-{unique}", f"dlq-{unique}"]
        described = admin.describe_topics(names)
        assert sorted((t["name"], len(t["partitions"])) for t in described) == sorted((n, 3) for n in names)
        assert {len(p["replica_nodes"]) for t in described for p in t["partitions"]} == {1}
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, configs=["min.insync.replicas"]) for n in names
        ]
        configs = admin.describe_configs(resources)["topic"]
        for name in names:
            entry = configs[name]["min.insync.replicas"]
            assert (entry["value"], entry["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG")
    finally:
        admin.close()


def test_default_replication_on_a_single_broker_exits_2_naming_the_fix(kafka_bootstrap, unique):
    """The real-cluster default (RF 3) on a one-broker cluster exits 2 with one line that names --replication-factor 1."""
    proc = _cli(["create-topics"], _env(kafka_bootstrap, unique))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "replication factor 3" in lines[0]
    assert "--replication-factor 1" in lines[0]


def test_metrics_port_in_use_exits_2_with_one_line(kafka_bootstrap, unique):
    """`run` with CLAIMS_METRICS_PORT already taken exits 2 with one clear line and no traceback."""
    env = _env(kafka_bootstrap, unique)
    created = _cli(["create-topics", "--replication-factor", "1", "--min-insync-replicas", "1"], env)
    assert created.returncode == 0, created.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env |= {
            "CLAIMS_METRICS_HOST": "127.0.0.1",
            "CLAIMS_METRICS_PORT": str(port),
            "CLAIMS_LOG_FORMAT": "json",
        }
        proc = _cli(["run"], env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"127.0.0.1:{port}" in errors[0]
