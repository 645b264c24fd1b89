"""``claims-worker lag`` on the session broker: lag in records and seconds while the worker is stopped, 0 after."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration import streams
from worker.errors import ExitCode

pytestmark = [pytest.mark.kafka]

FIRST, MORE = 6, 5


def _lag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m worker lag`` with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "worker", "lag", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=streams.ROOT,
    )


def _lag_json(env: dict[str, str]) -> dict:
    """The lag as the JSON document; the command must exit 0."""
    proc = _lag(env, "--format", "json")
    assert proc.returncode == ExitCode.OK, proc.stderr
    return json.loads(proc.stdout)


def _drain(env: dict[str, str], log_name: str, tmp_path) -> None:
    """Run the worker until it has been idle for 3 s (it then leaves the group) and check it exited 0."""
    worker = streams.start_worker({**env, "CLAIMS_EXIT_WHEN_IDLE_S": "3"}, tmp_path / log_name)
    assert worker.wait(timeout=120) == ExitCode.OK, (tmp_path / log_name).read_text()


def _claims(first: int, count: int) -> list[tuple[bytes | None, bytes | None]]:
    return streams.encoded([streams.claim(n) for n in range(first, first + count)])


def test_lag_grows_while_the_worker_is_stopped_and_falls_to_zero_after(kafka_bootstrap, topics, tmp_path):
    """Stopped: lag > 0 records and its seconds grow between two readings, no members; drained: 0 and 0."""
    env = streams.worker_env(kafka_bootstrap, topics)
    streams.produce(kafka_bootstrap, topics["claims"], _claims(0, FIRST))
    _drain(env, "first.log", tmp_path)

    drained = _lag_json(env)
    assert sum(p["lag_records"] for p in drained["partitions"]) == 0
    assert sum(p["committed"] or 0 for p in drained["partitions"]) == FIRST

    streams.produce(kafka_bootstrap, topics["claims"], _claims(FIRST, MORE))
    first, second = _lag_json(env), _lag_json(env)
    assert (first["state"], first["members"], first["active"]) == ("Empty", [], False)
    assert sum(p["lag_records"] for p in first["partitions"]) == MORE
    waiting = [p["partition"] for p in first["partitions"] if p["lag_records"] > 0]
    assert waiting
    for before, after in zip(first["partitions"], second["partitions"], strict=True):
        if before["partition"] in waiting:
            assert before["oldest_waiting_timestamp"] == after["oldest_waiting_timestamp"]
            assert after["lag_seconds"] > before["lag_seconds"] > 0
        else:
            assert after["lag_seconds"] == before["lag_seconds"] == 0
    table = _lag(env)
    assert table.returncode == ExitCode.OK, table.stderr
    assert f"group {topics['group']} on {topics['claims']}: no members (group Empty)" in table.stdout
    assert "active" not in table.stdout

    _drain(env, "second.log", tmp_path)
    after = _lag_json(env)
    assert [(p["lag_records"], p["lag_seconds"]) for p in after["partitions"]] == [(0, 0), (0, 0)]
    assert sum(p["committed"] for p in after["partitions"]) == FIRST + MORE


def test_lag_of_a_group_that_does_not_exist_exits_1(kafka_bootstrap, topics):
    """A group the coordinator does not know exits 1, says so, and counts the lag from the log start."""
    streams.produce(kafka_bootstrap, topics["claims"], _claims(0, 3))
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_GROUP_ID=f"{topics['group']}-never")
    proc = _lag(env)
    assert proc.returncode == 1, proc.stderr
    assert "does not exist" in proc.stdout
    assert "total" in proc.stdout
    document = json.loads(_lag(env, "--format", "json").stdout)
    assert document["exists"] is False
    assert sum(p["lag_records"] for p in document["partitions"]) == 3


def test_lag_of_a_missing_topic_exits_2(kafka_bootstrap, topics):
    """A topic that does not exist is one clear line and exit 2; it is not created."""
    env = streams.worker_env(kafka_bootstrap, topics)
    proc = _lag(env, "--topic", f"{topics['claims']}-absent")
    assert proc.returncode == ExitCode.BAD_SETTINGS
    assert (
        proc.stderr.strip()
        == f"error: topic '{topics['claims']}-absent' does not exist (or this login may not describe it)"
    )
