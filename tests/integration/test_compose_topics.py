"""The local-demo compose file's set-up (deploy/compose/local-demo.yaml), run for real: its commands against a fresh one-broker cluster.

No Docker engine here, so the containers are not started. What they run is: `create-topics` with the
compose service's arguments, then the `worker` service's command. Both run here as `python -m worker`
(the image's entry point) against a new local KRaft broker with empty storage and one node, as the
compose `kafka` service is on a first `up` (tests/unit/test_deploy.py checks that its one-node settings
are the local broker's). The compose environment is kept; only the broker's address is this one's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from deploy.kafka import broker as local_broker

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "local-demo.yaml"  # the one-broker local demo
DEFAULT_TOPICS = ("pharmacy.claims", "pharmacy.claims.adjudicated", "pharmacy.claims.dead-letter")


def _service(name: str) -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m worker`` (the image's entry point) with exactly ``env`` (plus PATH)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )


def _default(text: str) -> str:
    """Compose's ``${VAR:-default}`` as its default; anything else as it is."""
    return text.split(":-", 1)[1].rstrip("}") if text.startswith("${") and ":-" in text else text


def _compose(name: str, bootstrap: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the compose service's command with its environment, the broker's address being ``bootstrap``."""
    service = _service(name)
    env = {key: _default(str(value)) for key, value in service["environment"].items()}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, **extra}
    return _cli([_default(part) for part in service["command"]], env)


@pytest.fixture
def fresh_broker(tmp_path):
    """A new one-node KRaft broker with empty storage (the compose `kafka` service on a first `up`)."""
    started = local_broker.start_broker(state_dir=tmp_path / "kafka")
    try:
        yield started.bootstrap
    finally:
        local_broker.stop_broker(tmp_path / "kafka")


def test_compose_topic_set_up_comes_up_cleanly_on_one_broker(fresh_broker):
    """create-topics as the compose file runs it exits 0 on one broker, again on a re-run, and the worker
    service's command then starts on those topics and stops cleanly; the production defaults would fail."""
    defaults = _cli(["create-topics", "--partitions", "4"], {"KAFKA_BOOTSTRAP_SERVERS": fresh_broker})
    assert defaults.returncode != 0, "replication factor 3 on one broker should be refused"

    first = _compose("create-topics", fresh_broker)
    assert first.returncode == 0, first.stdout + first.stderr
    again = _compose("create-topics", fresh_broker)  # a restarted container finds them: still 0
    assert again.returncode == 0, again.stdout + again.stderr

    command = _service("create-topics")["command"]
    partitions = int(command[command.index("--partitions") + 1])
    admin = KafkaAdminClient(bootstrap_servers=fresh_broker, client_id="tests-compose")
    try:
        described = admin.describe_topics(list(DEFAULT_TOPICS))
        assert sorted((t["name"], len(t["partitions"])) for t in described) == sorted(
            (name, partitions) for name in DEFAULT_TOPICS
        )
        assert {len(p["replica_nodes"]) for t in described for p in t["partitions"]} == {1}
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, n, configs=["min.insync.replicas"])
                for n in DEFAULT_TOPICS
            ]
        )["topic"]
        assert {configs[n]["min.insync.replicas"]["value"] for n in DEFAULT_TOPICS} == {"1"}
    finally:
        admin.close()

    # The worker service (`run --processes N`) on those topics: every child starts, finds nothing to
    # read and stops cleanly (metrics on any free port, as several tests may run at once).
    worker = _compose("worker", fresh_broker, CLAIMS_EXIT_WHEN_IDLE_S="3", CLAIMS_METRICS_PORT="0")
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
