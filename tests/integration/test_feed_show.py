"""feed and show-results against the session broker: all-or-nothing feeds, and every result shown and filtered."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration import streams
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_result
from worker.policy import Facts, decide, default_policy
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

RESULTS_40K = 40_000
FED = 6


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m worker`` with ``env``; no timeout of the command's own (the test's is enough)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=streams.ROOT,
    )


def _feed_line(n: int, **overrides: object) -> str:
    """One claim as a feed line: the streams claim as JSON with dates as ISO strings."""
    return streams.claim(n, **overrides).model_dump_json()


def _end_offsets(bootstrap: str, topic: str) -> int:
    """The sum of ``topic``'s end offsets (every record ever written)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_feed_with_one_bad_line_sends_nothing(kafka_bootstrap, topics, tmp_path):
    """A feed file with one bad line exits 2, names that line and field, and leaves the claims topic empty."""
    path = tmp_path / "claims.jsonl"
    bad = json.loads(_feed_line(2))
    bad["prescriber"]["npi"] = "1234567890"
    path.write_text("\n".join([_feed_line(1), json.dumps(bad), _feed_line(3)]) + "\n")
    proc = _cli(["feed", str(path)], streams.worker_env(kafka_bootstrap, topics))
    assert proc.returncode == ExitCode.BAD_SETTINGS, proc.stderr
    assert f"{path}:2: prescriber.npi: npi_check_digit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _end_offsets(kafka_bootstrap, topics["claims"]) == 0


def test_fed_claims_are_decided_by_the_worker(kafka_bootstrap, topics, tmp_path):
    """N good feed lines are sent keyed by claim id, and the worker answers each with one result."""
    path = tmp_path / "claims.jsonl"
    path.write_text("\n".join(_feed_line(n) for n in range(FED)) + "\n")
    env = streams.worker_env(kafka_bootstrap, topics)
    proc = _cli(["feed", str(path)], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert f"sent {FED} claims to {topics['claims']}" in proc.stdout
    worker = streams.start_worker({**env, "CLAIMS_EXIT_WHEN_IDLE_S": "3"}, tmp_path / "worker.log")
    assert worker.wait(timeout=120) == ExitCode.OK
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert outputs.dead_letters == []
    assert sorted(r["claim_id"] for r in outputs.results) == [f"clm-{n:06d}" for n in range(FED)]
    assert {r["outcome"] for r in outputs.results} == {"APPROVED"}
    shown = _cli(["show-results", "--format", "json"], env)
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert len(shown.stdout.splitlines()) == FED


@pytest.fixture
def results_40k(kafka_bootstrap, topics):
    """40,000 results produced directly with the codec (running the worker for 40k would take minutes).

    Result n answers source (n % 2, n // 2); every tenth is REFERRED-looking by outcome, the rest APPROVED.
    """
    codec = Codec()
    policy, now = default_policy(), datetime.now(UTC)
    approved = streams.claim(0)
    referred = streams.claim(
        1,
        diagnoses=[{"code": "C50.911", "qualifier": "02"}],
        attestation={"disease_status": "LOCALLY_ADVANCED"},
    )
    decisions = {0: decide(approved, Facts(), policy, now), 1: decide(referred, Facts(), policy, now)}
    records = []
    for n in range(RESULTS_40K):
        kind = 1 if n % 10 == 0 else 0
        claim = (referred if kind else approved).model_copy(update={"claim_id": f"clm-{n:06d}"})
        source = SourceCoordinates(topics["claims"], n % 2, n // 2)
        record = build_result(claim, decisions[kind], source=source, worker_version="test")
        records.append((claim.claim_id.encode(), codec.encode_result(record)))
    streams.produce(kafka_bootstrap, topics["results"], records)
    return {d.outcome.value for d in decisions.values()}, decisions[1].outcome.value


def test_show_results_shows_all_40k_and_filters(kafka_bootstrap, topics, results_40k):
    """show-results prints every one of 40,000 results (count and claim ids), and each filter selects exactly."""
    _, referred = results_40k
    env = streams.worker_env(kafka_bootstrap, topics)
    proc = _cli(["show-results", "--format", "json"], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == RESULTS_40K
    assert sorted(line["record"]["claim_id"] for line in lines) == [
        f"clm-{n:06d}" for n in range(RESULTS_40K)
    ]
    assert f"{RESULTS_40K} of {RESULTS_40K} records" in proc.stderr

    table = _cli(["show-results"], env)
    assert table.returncode == ExitCode.OK, table.stderr
    assert len(table.stdout.splitlines()) == 2 + RESULTS_40K + 1  # header, rule, rows, summary

    outcome = _cli(["show-results", "--format", "json", "--outcome", referred], env)
    ids = sorted(json.loads(line)["record"]["claim_id"] for line in outcome.stdout.splitlines())
    assert ids == [f"clm-{n:06d}" for n in range(0, RESULTS_40K, 10)]

    coordinates = _cli(["show-results", "--format", "json", "--partition", "1", "--offsets", "100-199"], env)
    ids = sorted(json.loads(line)["record"]["claim_id"] for line in coordinates.stdout.splitlines())
    assert ids == [f"clm-{2 * o + 1:06d}" for o in range(100, 200)]

    one = _cli(["show-results", "--claim-id", "clm-012345"], env)
    assert one.returncode == ExitCode.OK, one.stderr
    assert "clm-012345" in one.stdout
    assert "1 of 40000 records" in one.stdout

    none = _cli(["show-results", "--until", "2000-01-01"], env)
    assert none.returncode == 1
    assert f"0 of {RESULTS_40K} records" in none.stdout


def test_show_results_on_a_missing_topic(kafka_bootstrap, topics):
    """A topic that does not exist is one line on stderr, exit 2, no traceback, and is not created."""
    env = streams.worker_env(kafka_bootstrap, topics)
    proc = _cli(["show-results", "--topic", f"{topics['results']}-missing"], env)
    assert proc.returncode == ExitCode.BAD_SETTINGS
    assert proc.stderr.strip().splitlines() == [
        f"error: topic '{topics['results']}-missing' does not exist (or this login may not describe it)"
    ]
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert f"{topics['results']}-missing" not in consumer.topics()
    finally:
        consumer.close()
