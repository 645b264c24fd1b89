"""Faults an operator causes, on a real broker: each ends the worker with one line naming it and its exit code.

A deleted claims topic (reported, /readyz false, exit 2 after CLAIMS_TOPIC_MISSING_LIMIT_S, never
"healed"), a results topic recreated with fewer partitions (exit 2 naming it, from the watch and from the
loop alone), a broker replaced by a fresh cluster (exit 2 naming both cluster ids), and a twin taking an
idle worker's slot (exit 3 without any input arriving).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from deploy.kafka import broker as local_broker
from tests.integration import streams
from worker.kafka.failures import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Checks once a second, so each fault is seen soon after it is made; the limits are what is tested.
FAST_WATCH = {"CLAIMS_GROUP_WATCH_INTERVAL_S": "1"}


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in streams.iter_log(log) if line.startswith("{")]


def _named(log: Path, event: str) -> list[dict]:
    return [e for e in _events(log) if e.get("event") == event]


def _error_lines(log: Path) -> list[str]:
    return [line for line in streams.iter_log(log) if line.startswith("error: ")]


def _readyz(log: Path) -> tuple[int, str]:
    port = next(e["port"] for e in _events(log) if e.get("event") == "metrics_serving")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-faults")


def _assigned(log: Path) -> bool:
    return bool(_named(log, "partitions_assigned"))


def _wait_exit(proc, log: Path, timeout_s: float = 240) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(log.read_text(errors="replace")[-4000:]) from None


def test_a_deleted_claims_topic_is_named_unready_never_healed_and_ends_in_exit_2(
    kafka_bootstrap, topics, tmp_path
):
    """Delete the claims topic under a running worker: one line names it, /readyz is false, exit 2 at the limit."""
    env = streams.worker_env(
        kafka_bootstrap, topics, CLAIMS_INSTANCE="w0", CLAIMS_TOPIC_MISSING_LIMIT_S="20", **FAST_WATCH
    )
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        # Restored state is installed after the assignment's topic check: the deletion comes later.
        assert streams.wait_for(lambda: _named(log, "state_restored"), 120), log.read_text(errors="replace")[
            -3000:
        ]
        admin = _admin(kafka_bootstrap)
        try:
            admin.delete_topics([topics["claims"]])
        finally:
            admin.close()
        assert streams.wait_for(lambda: _named(log, "topic_missing") or proc.poll() is not None, 120)
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        status, body = _readyz(log)
    except BaseException:
        proc.kill()
        raise
    code = _wait_exit(proc, log)
    assert code == ExitCode.BAD_SETTINGS, log.read_text(errors="replace")[-3000:]
    assert [e["topic"] for e in _named(log, "topic_missing")] == [topics["claims"]]
    assert status == 503, body
    assert topics["claims"] in body
    lines = _error_lines(log)
    assert len(lines) == 1, lines
    assert f"topic '{topics['claims']}' was deleted while the worker ran" in lines[0]
    assert "CLAIMS_TOPIC_MISSING_LIMIT_S=20" in lines[0]
    assert not _named(log, "group_heal_requested"), "a vanished topic must not be healed"
    assert not _named(log, "internal_error")


def _recreate_smaller(bootstrap: str, topic: str) -> None:
    """Delete ``topic`` and create it again with one partition (the claims topic has two)."""
    admin = _admin(bootstrap)
    try:
        admin.delete_topics([topic])
        assert streams.wait_for(lambda: topic not in admin.list_topics(), 60, 0.2)
        created = streams.wait_for(lambda: _create(admin, topic), 60, 0.5)
        assert created, f"could not create {topic} again"
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, topic: str, partitions: int = 1) -> bool:
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except Exception:  # noqa: BLE001 - the deletion may still be in progress: try again
        return False
    return True


@pytest.mark.parametrize(
    "watch_interval",
    [pytest.param("1", id="seen-by-the-watch"), pytest.param("3600", id="met-by-the-loop-alone")],
)
def test_a_results_topic_recreated_smaller_is_named_and_ends_in_exit_2(
    kafka_bootstrap, topics, tmp_path, watch_interval
):
    """Results topic deleted and recreated with 1 partition of 2: exit 2 naming it, not exit 70 after a minute.

    ``met-by-the-loop-alone`` keeps the watch from looking (one check an hour): the loop's own paths
    (a send to a partition that is gone, the state read-back) must name the fault too.
    """
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_INSTANCE="w0",
        CLAIMS_GROUP_WATCH_INTERVAL_S=watch_interval,
        CLAIMS_COMMIT_TIMEOUT_S="5",
    )
    log = tmp_path / "worker.log"
    claims = [streams.claim(i) for i in range(40)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims[:20]))
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 20, 120
        ), log.read_text(errors="replace")[-3000:]
        _recreate_smaller(kafka_bootstrap, topics["results"])
        streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims[20:]))
    except BaseException:
        proc.kill()
        raise
    code = _wait_exit(proc, log, 400)
    text = log.read_text(errors="replace")
    assert code == ExitCode.BAD_SETTINGS, text[-4000:]
    lines = _error_lines(log)
    assert len(lines) == 1, lines
    assert f"topic '{topics['results']}' has 1 partitions; it needs at least 2" in lines[0]
    assert not _named(log, "internal_error")


@pytest.mark.parametrize(
    "watch_interval",
    [pytest.param("1", id="seen-by-the-watch"), pytest.param("3600", id="met-by-the-loop")],
)
def test_a_broker_replaced_by_a_fresh_cluster_is_named_and_ends_in_exit_2(
    tmp_path_factory, tmp_path, watch_interval
):
    """Replace the broker by a fresh cluster on the same address (topics made again): exit 2 naming both ids.

    ``met-by-the-loop``: the watch does not look (one check an hour) and new claims arrive on the new
    cluster; the group rejoins there and the assignment's topic check (fresh metadata) sees the new id
    before a record is judged (was exit 70: an offset that "went back").
    """
    state = tmp_path_factory.mktemp("replaced")
    ports = tuple(local_broker._free_ports(3))
    first = local_broker.start_broker(state_dir=state, ports=ports)
    try:
        names = {
            "claims": "claims-fresh",
            "results": "results-fresh",
            "dead_letter": "dlq-fresh",
            "group": "grp-fresh",
        }
        _make_topics(first.bootstrap, names)
        streams.produce(
            first.bootstrap, names["claims"], streams.encoded([streams.claim(i) for i in range(10)])
        )
        env = streams.worker_env(
            first.bootstrap, names, CLAIMS_INSTANCE="w0", CLAIMS_GROUP_WATCH_INTERVAL_S=watch_interval
        )
        log = tmp_path / "worker.log"
        proc = streams.start_worker(env, log)
        try:
            assert streams.wait_for(
                lambda: streams.committed_total(first.bootstrap, names["group"], names["claims"]) == 10, 120
            ), log.read_text(errors="replace")[-3000:]
            local_broker.stop_broker(state)
            second = local_broker.start_broker(state_dir=state, ports=ports)
            assert second.bootstrap == first.bootstrap
            _make_topics(second.bootstrap, names)
            streams.produce(
                second.bootstrap, names["claims"], streams.encoded([streams.claim(i) for i in range(10, 20)])
            )
        except BaseException:
            proc.kill()
            raise
        code = _wait_exit(proc, log, 300)
    finally:
        local_broker.stop_broker(state)
    assert code == ExitCode.BAD_SETTINGS, log.read_text(errors="replace")[-4000:]
    lines = _error_lines(log)
    assert len(lines) == 1, lines
    assert "now belong to another Kafka cluster" in lines[0]
    assert not _named(log, "internal_error")


def _make_topics(bootstrap: str, names: dict[str, str]) -> None:
    admin = _admin(bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(names[k], num_partitions=2, replication_factor=1)
                for k in ("claims", "results", "dead_letter")
            ]
        )
    finally:
        admin.close()


def test_an_idle_worker_whose_slot_a_twin_takes_exits_3_without_input(kafka_bootstrap, topics, tmp_path):
    """A twin starts on an idle worker's slot: the idle one notices with no claim arriving and exits 3."""
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_INSTANCE="w0", **FAST_WATCH)
    first_log, twin_log = tmp_path / "first.log", tmp_path / "twin.log"
    first = streams.start_worker(env, first_log)
    twin = None
    try:
        assert streams.wait_for(lambda: _assigned(first_log), 120), first_log.read_text(errors="replace")[
            -3000:
        ]
        twin = streams.start_worker(env, twin_log)
        code = _wait_exit(first, first_log)
        assert twin.poll() is None, "the twin (the newer process) keeps the slot and runs on"
    finally:
        for proc in (first, twin):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    assert code == ExitCode.FENCED, first_log.read_text(errors="replace")[-4000:]
    lines = _error_lines(first_log)
    assert len(lines) == 1, lines
    assert "another live worker uses instance slot 'w0'" in lines[0]
    assert streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 0, "no input came"


def test_a_claims_topic_deleted_and_recreated_at_once_is_answered_from_its_start(
    kafka_bootstrap, topics, tmp_path
):
    """Claims topic deleted and made again (same partitions) between two watch checks: its claims are answered.

    Not a fault the worker ends on: the group forgets the old topic's offsets with it, so the new topic is
    read from its start. It must not end in an internal error (an offset that "went back").
    """
    env = streams.worker_env(
        kafka_bootstrap, topics, CLAIMS_INSTANCE="w0", CLAIMS_GROUP_WATCH_INTERVAL_S="3600"
    )
    log = tmp_path / "worker.log"
    first = [streams.claim(i) for i in range(30)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(first))
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 30, 120
        ), log.read_text(errors="replace")[-3000:]
        admin = _admin(kafka_bootstrap)
        try:
            admin.delete_topics([topics["claims"]])
            assert streams.wait_for(lambda: topics["claims"] not in admin.list_topics(), 60, 0.2)
            assert streams.wait_for(lambda: _create(admin, topics["claims"], 2), 60, 0.5)
        finally:
            admin.close()
        second = [streams.claim(i) for i in range(100, 110)]
        streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(second))
        answered = streams.wait_for(
            lambda: (
                proc.poll() is not None
                or streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 10
            ),
            180,
        )
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        assert answered
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert sorted(r["claim_id"] for r in outputs.results) == sorted(c.claim_id for c in first + second)
    assert not _named(log, "internal_error")
