"""Replay's exits on a real broker: SIGINT is exit 130 with a resume line that finishes it; offsets select."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys

import pytest

from tests.integration import streams
from tests.integration.test_replay import NEW, WINDOW, _mix, _produce_at, _records, _replay, _sources
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.errors import ExitCode
from worker.runtime.replay_job import replay_group_id

pytestmark = [pytest.mark.kafka]


def test_an_interrupted_replay_exits_130_and_its_resume_line_finishes_it_exactly_once(
    kafka_bootstrap, topics, make_topics
):
    """SIGINT mid-replay: exit 130 and one line with the command; that command completes every claim once."""
    codec = Codec()
    inside = _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(0, 3000), codec), WINDOW)
    output = f"replayed-{topics['claims']}"
    make_topics(output, f"{output}.dead-letter", partitions=2)
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_BATCH_MAX_RECORDS="5")
    argv = ["--from", WINDOW.isoformat(), "--policy", NEW, "--replay-id", "i1", "--output-topic", output]
    replay = subprocess.Popen(
        [sys.executable, "-m", "worker", "replay", "--progress", "off", *argv],
        env=env,
        cwd=streams.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    group = replay_group_id(load_settings({}).model_copy(update={"group_id": topics["group"]}), "i1")
    try:
        # Progress, not a sleep: the replay's group has committed at least one batch beyond the start.
        progressed = streams.wait_for(
            lambda: (
                replay.poll() is not None
                or streams.committed_total(kafka_bootstrap, group, topics["claims"]) > 0
            ),
            timeout_s=120,
            interval_s=0.1,
        )
        assert progressed
        assert replay.poll() is None, "the replay ended before it could be interrupted"
        replay.send_signal(signal.SIGINT)
        stdout, stderr = replay.communicate(timeout=120)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == ExitCode.INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "interrupted before the end of its range" in line]
    assert len(lines) == 1, stderr[-3000:]
    command = shlex.split(lines[0].split(" run: ", 1)[1])
    assert command[:2] == ["claims-worker", "replay"]
    assert "--replay-id" in command
    assert "records decided this run" in stdout  # the summary so far
    partial = _records(kafka_bootstrap, output)
    assert 0 < len(partial) < len(inside)

    resumed = _replay(kafka_bootstrap, topics, *command[2:])
    assert "already done before" in resumed.stdout
    results = _records(kafka_bootstrap, output)
    letters = _records(kafka_bootstrap, f"{output}.dead-letter")
    assert _sources(codec, results, letters) == sorted(inside)


def test_a_replay_over_an_offset_range_decides_exactly_those_claims(kafka_bootstrap, topics, make_topics):
    """--partition 0 --offsets 10-19 decides the ten claims at those coordinates, and nothing else."""
    codec = Codec()
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(0, 30), codec), WINDOW, partition=0)
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(100, 30), codec), WINDOW, partition=1)
    output = f"picked-{topics['claims']}"
    done = _replay(
        kafka_bootstrap, topics, "--from", WINDOW.isoformat(), "--policy", NEW, "--output-topic", output,
        "--partition", "0", "--offsets", "10-19",
    )  # fmt: skip
    results = _records(kafka_bootstrap, output)
    letters = _records(kafka_bootstrap, f"{output}.dead-letter")
    assert _sources(codec, results, letters) == [(0, offset) for offset in range(10, 20)]
    assert "10 records decided this run" in done.stdout

    missing = _replay(
        kafka_bootstrap, topics, "--from", WINDOW.isoformat(), "--output-topic", output, "--partition", "7",
        check=False,
    )  # fmt: skip
    assert missing.returncode == ExitCode.BAD_SETTINGS
    assert "no partition 7" in missing.stderr
    assert "Traceback" not in missing.stderr
