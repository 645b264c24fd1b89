"""`make run`: broker (unless configured), topics, sample claims, the worker, then a table of decisions."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from worker.devtools import broker as local_broker

__all__ = ["main"]


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    """Run the demo end to end and return the worker's exit code (non-zero if any step fails)."""
    env = dict(os.environ)
    started = False
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        _step("starting a local single-node Kafka broker (KRaft, 127.0.0.1)")
        try:
            env["KAFKA_BOOTSTRAP_SERVERS"] = local_broker.start_broker().bootstrap
        except local_broker.BrokerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        started = True
        print(f"broker at {env['KAFKA_BOOTSTRAP_SERVERS']}")
    else:
        print(f"using KAFKA_BOOTSTRAP_SERVERS={env['KAFKA_BOOTSTRAP_SERVERS']}")
    # Fresh topic names per run, so the table shows this run's decisions only.
    run_id = uuid.uuid4().hex[:6]
    env.setdefault("CLAIMS_CLAIMS_TOPIC", f"demo-{run_id}.claims")
    env.setdefault("CLAIMS_RESULTS_TOPIC", f"demo-{run_id}.results")
    env.setdefault("CLAIMS_DEAD_LETTER_TOPIC", f"demo-{run_id}.dead-letter")
    env.setdefault("CLAIMS_GROUP_ID", f"demo-{run_id}")
    env.setdefault("CLAIMS_TRANSACTIONAL_ID_PREFIX", f"demo-{run_id}")
    env.setdefault("CLAIMS_EXIT_WHEN_IDLE_S", "3")
    env.setdefault("CLAIMS_METRICS_PORT", "0")
    env.setdefault("CLAIMS_LOG_FORMAT", "console")
    cli = [sys.executable, "-m", "worker"]
    try:
        for title, args in (
            (
                "creating topics (one local broker: one copy of each partition)",
                [
                    "create-topics",
                    "--partitions",
                    "2",
                    "--replication-factor",
                    "1",
                    "--min-insync-replicas",
                    "1",
                ],
            ),
            ("producing the bundled sample claims and poison records", ["seed-samples"]),
            ("running the worker until the topic is drained (idle 3 s)", ["run"]),
            ("what the worker decided (read back from the output topics)", ["show-results"]),
        ):
            _step(title)
            code = subprocess.run([*cli, *args], env=env, check=False).returncode
            if code != 0:
                print(f"error: `claims-worker {' '.join(args)}` exited {code}", file=sys.stderr)
                return code
    finally:
        if started:
            _step("stopping the local broker")
            local_broker.stop_broker()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
