"""Operator commands' exits on a real broker: a missing topic is one line and exit 2, a closed pipe 141."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration import streams
from worker.errors import ExitCode

pytestmark = [pytest.mark.kafka]


def _cli(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m worker`` with ``env`` (stdout and stderr captured unless ``kwargs`` say otherwise)."""
    options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run(  # noqa: PLW1510 - the exit code is what each test asserts
        [sys.executable, "-m", "worker", *args], env=env, text=True, cwd=streams.ROOT, timeout=180, **options
    )


def test_seed_samples_to_a_missing_claims_topic_is_one_line_and_exit_2(kafka_bootstrap, topics):
    """seed-samples names the missing claims topic in one line (it used to wait 60 s and exit 4)."""
    env = streams.worker_env(kafka_bootstrap, {**topics, "claims": f"{topics['claims']}-missing"})
    done = _cli(["seed-samples"], env)
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr[-2000:]
    missing = f"{topics['claims']}-missing"
    assert done.stderr.strip().splitlines() == [
        f"error: topic '{missing}' does not exist (or this login may not describe it); see create-topics"
    ]


def test_check_access_names_the_command_that_creates_a_missing_store_topic(kafka_bootstrap, topics):
    """A missing authorization store topic: exit 2, and the line names `authorizations create-topic`."""
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_AUTHORIZATIONS_TOPIC=f"store-{topics['group']}",
        CLAIMS_MEMBER_PSEUDONYM_SECRET="integration-demo-secret-0123456789",  # noqa: S106 - a test key
    )
    done = _cli(["check-access", "--no-transaction-probe"], env)
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stdout + done.stderr
    assert f"  store-{topics['group']}: claims-worker authorizations create-topic" in done.stdout
    assert "claims-worker create-topics" not in done.stdout  # the three worker topics exist
    assert "Traceback" not in done.stderr


def test_show_results_into_a_closed_pipe_exits_141_without_a_traceback(kafka_bootstrap, topics):
    """show-results whose stdout reader is gone (`| head` that exited) ends with 141 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = _cli(["show-results"], streams.worker_env(kafka_bootstrap, topics), stdout=write_end)
    finally:
        os.close(write_end)
    assert done.returncode == ExitCode.PIPE_CLOSED, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
