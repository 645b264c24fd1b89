"""One secured broker for the security tests: SASL_SSL with SCRAM-SHA-512, StandardAuthorizer, documented ACLs.

Started once per test session (``secured`` in tests/integration/conftest.py) and shared by
test_security.py (the worker's own rights) and test_security_requests.py (serve-requests' rights).
Principals: ``worker`` holds exactly the ACLs of docs/security.md; ``nowrite`` the same minus WRITE on the
results topic; ``notxn`` minus the transactional id; ``revoked`` for the revocation test; ``requests``
for serve-requests' own rights; ``admin`` is the super user that creates topics, seeds claims and reads back.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from kafka.structs import TopicPartition

from deploy.kafka import broker as local_broker
from worker.config.settings import load_settings
from worker.kafka.access import Operation, Resource, acl_bindings, worker_needs
from worker.kafka.clients import Role, new_consumer

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
USERS = ("worker", "nowrite", "notxn", "revoked", "deleted", "requests")


class Secured:
    """The module's secured broker, its topics, and every output captured from it (for the secret scan)."""

    def __init__(self, broker: local_broker.Broker, tag: str, passwords: dict[str, str]) -> None:
        self.broker = broker
        self.tag = tag
        self.topics = {
            "CLAIMS_CLAIMS_TOPIC": f"claims-{tag}",
            "CLAIMS_RESULTS_TOPIC": f"results-{tag}",
            "CLAIMS_DEAD_LETTER_TOPIC": f"dlq-{tag}",
        }
        self.passwords = passwords
        self.outputs: list[str] = []

    def env(self, user: str, group: str, **extra: str) -> dict[str, str]:
        """Environment for a CLI subprocess connecting as ``user`` with the module's topics."""
        base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
        return {
            **base,
            **self.broker.client_env(user),
            **self.topics,
            "CLAIMS_GROUP_ID": group,
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": group,
            "CLAIMS_METRICS_PORT": "0",
            "CLAIMS_LOG_FORMAT": "json",
            "CLAIMS_STARTUP_RETRIES": "0",
            "CLAIMS_TRANSACTION_TIMEOUT_MS": "10000",
            **extra,
        }

    def cli(self, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python -m worker <args>``; keep its output for the secret scan."""
        done = subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def own_topics(self, tag: str, *, seed: bool = False) -> tuple[dict[str, str], dict[str, str]]:
        """Create a test's own claims/results/dead-letter topics (2 partitions), seeded with the samples if asked.

        Returns the ``CLAIMS_*_TOPIC`` settings and the admin's environment with them.
        """
        topics = {
            "CLAIMS_CLAIMS_TOPIC": f"claims-{tag}",
            "CLAIMS_RESULTS_TOPIC": f"results-{tag}",
            "CLAIMS_DEAD_LETTER_TOPIC": f"dlq-{tag}",
        }
        admin_env = {**self.env("admin", f"grp-admin-{tag}"), **topics}
        made = self.cli(
            admin_env,
            "create-topics",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--min-insync-replicas",
            "1",
        )
        assert made.returncode == 0, made.stderr
        if seed:
            seeded = self.cli(admin_env, "seed-samples")
            assert seeded.returncode == 0, seeded.stderr
        return topics, admin_env

    def start_worker(self, env: dict[str, str], tag: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """Start ``python -m worker run``; return it and the files its stdout and stderr go to."""
        stdout_path = Path(self.broker.state_dir) / f"{tag}.stdout"
        stderr_path = Path(self.broker.state_dir) / f"{tag}.stderr"
        with stderr_path.open("w") as err, stdout_path.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"], env=env, stdout=out, stderr=err, cwd=ROOT
            )
        return proc, stdout_path, stderr_path

    def settings(self, user: str, group: str = "unused"):
        return load_settings(self.env(user, group))

    def committed(self, group: str) -> dict[int, int | None]:
        """The group's committed offsets on the claims topic, read as admin."""
        consumer = new_consumer(
            self.settings("admin", group), Role.REPORT, group_id=group, enable_auto_commit=False
        )
        try:
            topic = self.topics["CLAIMS_CLAIMS_TOPIC"]
            return {
                p: consumer.committed(TopicPartition(topic, p))
                for p in sorted(consumer.partitions_for_topic(topic))
            }
        finally:
            consumer.close()


def grant_documented(secured: Secured, user: str, group: str, *, without=()) -> None:
    needs = [
        n
        for n in worker_needs(secured.settings(user, group))
        if (n.resource, n.operation, n.name) not in without
    ]
    local_broker.grant(secured.broker, f"User:{user}", acl_bindings(needs, f"User:{user}"))


def start_secured(tmp_path_factory) -> Iterator[Secured]:
    """A SASL_SSL broker with users worker/nowrite/notxn/revoked, the module's topics (2 partitions) and seeded samples."""
    tag = uuid.uuid4().hex[:8]
    passwords = {name: f"{name}-{uuid.uuid4().hex}" for name in USERS}
    state = tmp_path_factory.mktemp("secure-kafka")
    broker = local_broker.start_broker(state_dir=state, secure=True, users=passwords)
    passwords["admin"] = Path(broker.password_files["admin"]).read_text()
    try:
        secured = Secured(broker, tag, passwords)
        grant_documented(secured, "worker", f"grp-worker-{tag}")
        results = secured.topics["CLAIMS_RESULTS_TOPIC"]
        grant_documented(
            secured, "nowrite", f"grp-nowrite-{tag}", without={(Resource.TOPIC, Operation.WRITE, results)}
        )
        notxn = f"grp-notxn-{tag}"
        grant_documented(
            secured, "notxn", notxn, without={(Resource.TRANSACTIONAL_ID, Operation.WRITE, f"{notxn}-")}
        )
        secured.own_topics(tag, seed=True)  # the module's topics (Secured.topics)
        yield secured
    finally:
        local_broker.stop_broker(state)


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0]
    assert "Traceback" not in done.stdout + done.stderr


def secrets_of(secured: Secured) -> list[str]:
    """Every password and every private key's body that must never appear in an output."""
    tls = Path(secured.broker.state_dir) / "tls"
    keys = [
        line
        for name in ("broker.key", "ca.key", "client.key")
        for line in (tls / name).read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    store = (Path(secured.broker.state_dir) / "server.properties").read_text()
    store_password = next(
        line.split("=", 1)[1] for line in store.splitlines() if line.startswith("ssl.keystore.password=")
    )
    client_key_password = Path(secured.broker.mtls_env()["CLAIMS_KAFKA_SSL_KEY_PASSWORD_FILE"]).read_text()
    return [*secured.passwords.values(), store_password, client_key_password, *keys]
