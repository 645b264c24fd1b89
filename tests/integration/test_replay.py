"""Replay and diff on a real broker: a window replayed exactly once, resumed after kill -9, diffed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.wire import INHERITED_HEADER, REPLAY_ID_HEADER, REPLAY_POLICY_HEADER
from worker.directory.updates import ensure_topic
from worker.kafka.reads import read_topic
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

OLD, NEW = "IXEMPRA-PA/2020.09-1", "IXEMPRA-PA/2020.09-2"
NOW = datetime.now(UTC).replace(microsecond=0)
BEFORE, WINDOW, AFTER = NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)


def _produce_at(bootstrap, topic, records, at, partition=None):
    """Produce ``(key, value)`` records with the timestamp ``at``; return their (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=k, value=v, timestamp_ms=int(at.timestamp() * 1000), partition=partition)
            for k, v in records
        ]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def _mix(first: int, n: int):
    """``n`` claims numbered from ``first``: most approvable, some C77.2-only (pended under -1), other drugs."""
    claims = []
    for i in range(first, first + n):
        if i % 5 == 0:
            claims.append(streams.claim(i, product={"product_id": streams.CAPECITABINE, "qualifier": "03"}))
        elif i % 5 == 1:
            claims.append(
                streams.claim(
                    i,
                    diagnoses=[{"code": "C50.911", "qualifier": "02"}, {"code": "C77.2", "qualifier": "02"}],
                )
            )
        else:
            claims.append(streams.claim(i))
    return claims


def _replay(bootstrap, topics, *args, check=True, **extra):
    """Run ``claims-worker replay`` against the test topics (``extra``: more settings); return the process."""
    env = streams.worker_env(bootstrap, topics, **extra)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "replay", "--progress", "off", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=streams.ROOT,
        timeout=180,
        check=False,
    )
    if check:
        assert done.returncode == ExitCode.OK, done.stderr[-3000:] + done.stdout[-2000:]
    return done


def _live(bootstrap, topics, tmp_path, policy=OLD, **extra):
    """Run the live worker until idle over everything on the claims topic (``extra``: more settings)."""
    env = streams.worker_env(bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3", CLAIMS_POLICY=policy, **extra)
    log = tmp_path / "live.log"
    assert streams.start_worker(env, log).wait(timeout=120) == ExitCode.OK, log.read_text()[-3000:]


def _records(bootstrap, topic):
    """Every committed record of ``topic``."""
    return list(read_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), topic, timeout_s=30))


def _uncommitted_count(bootstrap, topic):
    """Count the data records in ``topic``'s log, committed or not (read_uncommitted)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends, seen = consumer.end_offsets(tps), 0
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            seen += sum(len(records) for records in consumer.poll(timeout_ms=500).values())
        return seen
    finally:
        consumer.close()


def _sources(codec, results, dead_letters):
    """(partition, offset) of the source of every replay output, results and dead letters together."""
    return sorted(
        [tuple(codec.decode_result(r.value)["source"].values())[1:] for r in results]
        + [tuple(codec.decode_dead_letter(r.value)["source"].values())[1:] for r in dead_letters]
    )


def test_replay_window_exactly_once_and_twice_adds_nothing(kafka_bootstrap, topics, tmp_path):
    """Each record of the window has exactly one replay output, naming the replay; a second run adds nothing."""
    codec = Codec()
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(0, 10), codec), BEFORE)
    window = _mix(100, 40)
    inside = _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(window, codec), WINDOW)
    # A redelivered event (same event id, same partition): the live worker dead-letters it as a duplicate.
    duplicate = _produce_at(
        kafka_bootstrap, topics["claims"], streams.encoded([window[2]], codec), WINDOW, partition=inside[2][0]
    )
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(200, 10), codec), AFTER)
    _live(kafka_bootstrap, topics, tmp_path)
    live_before = len(_records(kafka_bootstrap, topics["results"]))

    args = ("--from", WINDOW.isoformat(), "--to", AFTER.isoformat(), "--policy", NEW, "--replay-id", "w1")
    args += ("--output-topic", f"replayed-{topics['claims']}")
    metrics = tmp_path / "replay.prom"
    first = _replay(kafka_bootstrap, topics, *args, "--metrics-file", str(metrics))
    results = _records(kafka_bootstrap, f"replayed-{topics['claims']}")
    letters = _records(kafka_bootstrap, f"replayed-{topics['claims']}.dead-letter")

    assert _sources(codec, results, letters) == sorted(inside + duplicate)
    assert all(dict(r.headers)[REPLAY_ID_HEADER] == b"w1" for r in results + letters)
    assert all(dict(r.headers)[REPLAY_POLICY_HEADER] == NEW.encode() for r in results + letters)
    assert {codec.decode_result(r.value)["policy_version"] for r in results} == {"2020.09-2"}
    assert [dict(r.headers).get(INHERITED_HEADER) for r in letters] == [b"live-duplicate"]
    assert "41 records decided this run" in first.stdout
    prom = metrics.read_text()
    assert 'claims_replay_records_total{mode="replay",outcome="DEAD_LETTER:DUPLICATE_EVENT"} 1.0' in prom
    assert "claims_replay_remaining_records 0.0" in prom
    assert len(_records(kafka_bootstrap, topics["results"])) == live_before  # the live topic untouched

    second = _replay(kafka_bootstrap, topics, *args)
    assert "0 records decided this run (41 already done before)" in second.stdout
    assert len(_records(kafka_bootstrap, f"replayed-{topics['claims']}")) == len(results)


def test_replay_refuses_the_live_results_topic(kafka_bootstrap, topics):
    """Replaying into the live results topic without --allow-live-topic exits 2 and writes nothing."""
    done = _replay(
        kafka_bootstrap,
        topics,
        "--from",
        WINDOW.isoformat(),
        "--output-topic",
        topics["results"],
        check=False,
    )
    assert done.returncode == ExitCode.BAD_SETTINGS
    assert "--allow-live-topic" in done.stderr
    assert _records(kafka_bootstrap, topics["results"]) == []


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    from worker.config.settings import load_settings
    from worker.contracts.codec import Codec
    from worker.policy import catalog_policy
    from worker.runtime.replay import run_replay
    from worker.runtime.replay_job import ReplayJob

    import worker.runtime.replay as replay

    AT = int(sys.argv[3])

    def die(done):
        if sys.argv[4] == "after-commit" and done >= AT:
            os.kill(os.getpid(), signal.SIGKILL)

    commit, calls = replay._commit, [0]

    def open_then_die(job, producer, offsets):
        calls[0] += 1
        if sys.argv[4] == "mid-transaction" and calls[0] > AT // 20:
            producer.flush()  # the open transaction's outputs written to the log, never committed
            os.kill(os.getpid(), signal.SIGKILL)
        commit(job, producer, offsets)

    replay._commit = open_then_die

    run_replay(ReplayJob(
        settings=load_settings(), codec=Codec(), policy=catalog_policy("IXEMPRA-PA/2020.09-2"),
        replay_id="k1", start=datetime.fromisoformat(sys.argv[1]), output_topic=sys.argv[2],
        dead_letter_topic=sys.argv[2] + ".dead-letter", progress=False, batch_hook=die,
    ))
    """
)


@pytest.mark.parametrize("when", ["after-commit", "mid-transaction"])
def test_replay_killed_mid_way_resumes_exactly_once(kafka_bootstrap, topics, make_topics, when):
    """A replay killed with SIGKILL (between or inside transactions), then run again, has one output per input."""
    codec = Codec()
    inside = _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(_mix(0, 300), codec), WINDOW)
    output = f"replayed-{topics['claims']}"
    make_topics(output, f"{output}.dead-letter", partitions=2)
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_BATCH_MAX_RECORDS="20")
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, WINDOW.isoformat(), output, "60", when],
        env=env,
        cwd=streams.ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    partial = _records(kafka_bootstrap, output)
    assert 0 < len(partial) < 300  # some batches committed, not all
    if when == "mid-transaction":  # the killed transaction's outputs are in the log, never visible
        assert _uncommitted_count(kafka_bootstrap, output) > len(partial)

    resumed = _replay(
        kafka_bootstrap, topics, "--from", WINDOW.isoformat(), "--policy", NEW, "--replay-id", "k1",
        "--output-topic", output,
    )  # fmt: skip
    results = _records(kafka_bootstrap, output)
    letters = _records(kafka_bootstrap, f"{output}.dead-letter")
    assert _sources(codec, results, letters) == sorted(inside)
    assert "already done before" in resumed.stdout


def test_diff_between_policy_versions_reports_expected_transitions(kafka_bootstrap, topics, tmp_path):
    """Live under -1 then --diff under -2: exactly the C77.2 and C77.4 claims change, as expected, nothing published."""
    codec = Codec()
    claims = _mix(0, 20)  # 4 are C77.2-only: PENDED under -1, APPROVED under -2
    claims.append(
        streams.claim(
            99,
            diagnoses=[{"code": "C50.911", "qualifier": "02"}, {"code": "C77.4", "qualifier": "02"}],
            attestation={"disease_status": "LOCALLY_ADVANCED"},
        )
    )  # REFERRED under -1 (locally advanced); PENDED under -2 (the attestation conflicts with a distant code)
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded(claims, codec), WINDOW)
    _live(kafka_bootstrap, topics, tmp_path)
    changes = tmp_path / "changes.jsonl"

    done = _replay(
        kafka_bootstrap, topics, "--diff", "--from", WINDOW.isoformat(), "--policy", NEW,
        "--changes", str(changes), check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # a diff that found changes, as `diff`
    assert "PENDED -> APPROVED: 4" in done.stdout
    assert "REFERRED -> PENDED: 1" in done.stdout
    assert "A: UNKNOWN(DISEASE_STATUS_NEEDED) -> MET(METASTATIC_BY_CODES): 4" in done.stdout
    rows = [json.loads(line) for line in changes.read_text().splitlines()]
    assert sorted(r["claim_id"] for r in rows) == sorted(
        [c.claim_id for c in claims if any(d.code == "C77.2" for d in c.diagnoses)] + ["clm-000099"]
    )
    keys = {"claim_id", "topic", "partition", "offset", "before", "after", "why", "cause"}
    assert all(set(r) == keys for r in rows)
    assert {r["cause"] for r in rows} == {"CRITERIA"}
    assert "SYNTHMEM" not in changes.read_text()
    assert "21 records decided" in done.stdout
    assert "5 changed: 5 direct (criteria 5, reference data 0), 0 on file after them, 0 other" in done.stdout
    assert "16 unchanged" in done.stdout


def test_v1_encoded_claim_replays(kafka_bootstrap, topics):
    """A claim written with the v1 claim schema is decided by a replay like any other."""
    codec = Codec()
    claim = streams.claim(7)
    _produce_at(
        kafka_bootstrap, topics["claims"], [(b"k", codec.encode_claim(claim, version=1))], WINDOW, partition=0
    )
    output = f"replayed-{topics['claims']}"
    _replay(kafka_bootstrap, topics, "--from", WINDOW.isoformat(), "--policy", NEW, "--output-topic", output)
    results = [codec.decode_result(r.value) for r in _records(kafka_bootstrap, output)]
    assert [(r["claim_id"], r["outcome"]) for r in results] == [(claim.claim_id, "APPROVED")]
    assert _records(kafka_bootstrap, f"{output}.dead-letter") == []


def test_replay_refuses_an_output_topic_with_too_few_partitions(kafka_bootstrap, topics, make_topics):
    """An existing output topic with fewer partitions than the claims topic exits 2 naming it."""
    output = f"small-{topics['claims']}"
    make_topics(output, partitions=1)
    done = _replay(
        kafka_bootstrap, topics, "--from", WINDOW.isoformat(), "--output-topic", output, check=False
    )
    assert done.returncode == ExitCode.BAD_SETTINGS
    assert output in done.stderr


def test_diff_pins_the_authorizations_so_a_fill_paid_on_file_is_no_change(
    kafka_bootstrap, topics, unique, tmp_path
):
    """Approval then a fill without clinical data in the range: a diff under the same policy shows no change and writes no store record."""
    codec = Codec()
    store = f"authorizations-{unique}"
    ensure_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}), store, partitions=2)
    extra = {
        "CLAIMS_AUTHORIZATIONS_TOPIC": store,
        "CLAIMS_MEMBER_PSEUDONYM_SECRET": "replay-test-secret-0123456789",
    }
    approval = streams.claim(1)
    fill = streams.claim(
        2,
        patient=approval.patient.model_dump(),
        diagnoses=[],
        date_of_service=streams.SERVICE_DAY + timedelta(days=21),
    )
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded([approval], codec), WINDOW, partition=0)
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded([fill], codec), AFTER, partition=0)
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3", CLAIMS_POLICY=OLD, **extra)
    log = tmp_path / "live.log"
    assert streams.start_worker(env, log).wait(timeout=120) == ExitCode.OK, log.read_text()[-3000:]
    live = {codec.decode_result(r.value)["claim_id"]: r for r in _records(kafka_bootstrap, topics["results"])}
    assert codec.decode_result(live[fill.claim_id].value)["outcome"] == "APPROVED"  # paid on file live
    on_file = len(_records(kafka_bootstrap, store))
    assert on_file == 1

    diff = [
        sys.executable,
        "-m",
        "worker",
        "replay",
        "--progress",
        "off",
        "--diff",
        "--from",
        WINDOW.isoformat(),
    ]
    diff += ["--policy", OLD, "--changes", str(tmp_path / "changes.jsonl")]
    done = subprocess.run(
        diff, env=env, capture_output=True, text=True,
        cwd=streams.ROOT, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert "2 records decided" in done.stdout
    assert "0 changed: 0 direct (criteria 0, reference data 0), 0 on file after them" in done.stdout
    assert "2 unchanged" in done.stdout
    assert f"authorizations as of {WINDOW.isoformat()}: 0 on file at the range start, 1 issued" in done.stdout
    assert len(_records(kafka_bootstrap, store)) == on_file  # the replay never writes the live store


_BIG = 1_200_000
"""Bytes of an undecodable input: its dead letter, which carries it, exceeds the producer's 1 MiB default."""


def test_a_replayed_output_too_large_to_send_is_a_too_large_dead_letter_and_the_rerun_exits_0(
    kafka_bootstrap, unique, tmp_path
):
    """A record whose output exceeds max_request_size: the replay dead-letters it TOO_LARGE as the live worker does, and reruns exit 0."""
    from kafka.admin import KafkaAdminClient, NewTopic  # noqa: PLC0415 - a topic that takes the big input

    topics = {
        "claims": f"claims-{unique}",
        "results": f"results-{unique}",
        "dead_letter": f"dlq-{unique}",
        "group": f"grp-{unique}",
    }
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")
    try:
        admin.create_topics(
            [NewTopic(topics["claims"], 2, 1, topic_configs={"max.message.bytes": str(4 * _BIG)})]
            + [NewTopic(topics[kind], 2, 1) for kind in ("results", "dead_letter")]
        )
    finally:
        admin.close()
    codec = Codec()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=4 * _BIG)
    try:
        at = int(WINDOW.timestamp() * 1000)
        futures = [
            producer.send(topics["claims"], key=k, value=v, partition=0, timestamp_ms=at)
            for k, v in [*streams.encoded([streams.claim(1)], codec), (b"big", b"\x00" * _BIG)]
        ]
        producer.flush()
        inside = [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()
    _live(kafka_bootstrap, topics, tmp_path)
    live = [codec.decode_dead_letter(r.value) for r in _records(kafka_bootstrap, topics["dead_letter"])]
    assert [d["error_class"] for d in live] == ["TOO_LARGE"]

    output = f"replayed-{topics['claims']}"
    args = ("--from", WINDOW.isoformat(), "--policy", NEW, "--replay-id", "big1", "--output-topic", output)
    first = _replay(kafka_bootstrap, topics, *args)
    results = _records(kafka_bootstrap, output)
    letters = _records(kafka_bootstrap, f"{output}.dead-letter")
    assert _sources(codec, results, letters) == sorted(inside)
    (letter,) = [codec.decode_dead_letter(r.value) for r in letters]
    assert letter["error_class"] == "TOO_LARGE"
    assert letter["original_value"] is None
    assert tuple(letter["source"].values())[1:] == inside[1]
    assert dict(letters[0].headers)[REPLAY_ID_HEADER] == b"big1"
    assert "2 records decided this run" in first.stdout

    second = _replay(kafka_bootstrap, topics, *args)
    assert "0 records decided this run (2 already done before)" in second.stdout
    assert len(_records(kafka_bootstrap, f"{output}.dead-letter")) == 1
