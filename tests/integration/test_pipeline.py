"""The worker end to end on a real broker: outcomes, dead letters, duplicates, crashes, fencing, rebalances."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer

from tests.integration import streams
from worker.contracts.codec import Codec
from worker.errors import ExitCode
from worker.policy import Facts, decide, default_policy
from worker.samples import poison_records, sample_claims

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _assert_exactly_once(outputs: streams.Outputs, produced: int) -> None:
    """Every input offset is accounted for exactly once, by a result or a dead letter."""
    sources = outputs.sources()
    assert len(sources) == produced, f"{len(sources)} outputs for {produced} inputs"
    assert len(set(sources)) == produced, "an input offset has two outputs"
    per_partition = Counter(p for p, _ in sources)
    for partition, count in per_partition.items():
        offsets = sorted(o for p, o in sources if p == partition)
        assert offsets == list(range(count)), f"gap or duplicate on partition {partition}"


def _assigned_lines(log) -> str:
    """The worker log's non-empty partition assignments, one JSON line each (order-insensitive check)."""
    lines = [json.loads(x) for x in streams.iter_log(log) if x.startswith("{")] if log.exists() else []
    return "\n".join(
        f'"partitions_assigned", "partitions": {line["partitions"]}'
        for line in lines
        if line.get("event") == "partitions_assigned" and line["partitions"]
    )


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout_s)


def test_every_outcome_end_to_end(kafka_bootstrap, topics, tmp_path):
    """The bundled samples produce every outcome, each as the policy decides it; malformed claims are REJECTED.

    Poison that cannot be answered (not Avro, truncated, unknown schema) is dead-lettered.
    """
    codec = Codec()
    samples = sample_claims()
    records = [
        (s.claim.claim_id.encode(), codec.encode_claim(s.claim, version=s.schema_version)) for s in samples
    ]
    poison = poison_records()
    streams.produce(kafka_bootstrap, topics["claims"], records + poison)
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3")
    proc = streams.start_worker(env, tmp_path / "worker.log")
    assert proc.wait(timeout=120) == ExitCode.OK, (tmp_path / "worker.log").read_text()[-3000:]
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    _assert_exactly_once(outputs, len(records) + len(poison))
    by_claim = {r["claim_id"]: r for r in outputs.results}
    now = datetime.now(UTC)
    for sample in samples:
        expected = decide(sample.claim, Facts(), default_policy(), now).outcome.value
        assert by_claim[sample.claim.claim_id]["outcome"] == expected, sample.label
    assert {r["outcome"] for r in outputs.results} == {
        "APPROVED",
        "REFERRED",
        "PENDED",
        "NOT_APPLICABLE",
        "REVERSED",
        "REJECTED",
    }
    answered = [(k, v) for k, v in poison if k in {b"SYNTH-POISON-BAD-NPI", b"SYNTH-POISON-B2-NO-ORIGINAL"}]
    assert sorted(r["reject_codes"] for r in outputs.results if r["outcome"] == "REJECTED") == [
        ["25"],
        ["85"],
    ]
    assert len(outputs.dead_letters) == len(poison) - len(answered)
    assert all(d["error_class"] and d["reason"] for d in outputs.dead_letters)
    originals = {(d["original_key"], d["original_value"]) for d in outputs.dead_letters}
    assert originals == set(poison) - set(answered), "dead letters must carry the original bytes untouched"


def test_poison_does_not_stop_the_worker(kafka_bootstrap, topics, tmp_path):
    """A poison record between good claims is dead-lettered while the worker keeps running; SIGTERM exits 0."""
    codec = Codec()
    good = [streams.claim(i) for i in range(3)]
    values = [(good[0].claim_id.encode(), codec.encode_claim(good[0])), (b"poison", b"not avro at all")]
    values += [(c.claim_id.encode(), codec.encode_claim(c)) for c in good[1:]]
    proc = streams.start_worker(streams.worker_env(kafka_bootstrap, topics), tmp_path / "worker.log")
    try:
        streams.produce(kafka_bootstrap, topics["claims"], values)
        done = streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 4, 60
        )
        assert done, (tmp_path / "worker.log").read_text()[-3000:]
        assert proc.poll() is None, "the worker must still be running after a poison record"
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    _assert_exactly_once(outputs, 4)
    assert [d["error_class"] for d in outputs.dead_letters] == ["NOT_AVRO"]


def test_duplicate_event_yields_one_result_across_restart(kafka_bootstrap, topics, tmp_path):
    """The same event delivered twice (in one batch, and again after a restart) gets one result."""
    codec = Codec()
    original = streams.claim(1)
    record = (original.claim_id.encode(), codec.encode_claim(original))
    streams.produce(kafka_bootstrap, topics["claims"], [record, record])
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="2")
    assert streams.start_worker(env, tmp_path / "w1.log").wait(timeout=120) == ExitCode.OK
    streams.produce(kafka_bootstrap, topics["claims"], [record])
    assert streams.start_worker(env, tmp_path / "w2.log").wait(timeout=120) == ExitCode.OK
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    _assert_exactly_once(outputs, 3)
    assert [r["source_event_id"] for r in outputs.results] == [original.event_id]
    assert [d["error_class"] for d in outputs.dead_letters] == ["DUPLICATE_EVENT", "DUPLICATE_EVENT"]


def test_kill_9_midstream_then_restart_is_exactly_once(kafka_bootstrap, topics, tmp_path):
    """kill -9 in the middle of 10k claims, then a restart: one result per event, poison in dead letters."""
    codec = Codec()
    total_claims, poison_every = 10_000, 1_000
    values: list[tuple[bytes | None, bytes | None]] = []
    for i in range(total_claims):
        c = streams.claim(i)
        values.append((c.claim_id.encode(), codec.encode_claim(c)))
        if i % poison_every == 0:
            values.append((f"poison-{i}".encode(), b"garbage" + bytes([i % 256])))
    streams.produce(kafka_bootstrap, topics["claims"], values)
    # Transactions of 500 (a poll takes what the open transaction has room for): the kill lands mid-stream.
    env = streams.worker_env(
        kafka_bootstrap, topics, CLAIMS_BATCH_MAX_RECORDS="200", CLAIMS_TRANSACTION_MAX_RECORDS="500"
    )
    proc = streams.start_worker(env, tmp_path / "w1.log")
    progressed = streams.wait_for(
        lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) >= 2_000, 120, 0.2
    )
    proc.kill()  # SIGKILL: no clean-up at all, a transaction may be open
    proc.wait(timeout=30)
    assert progressed, (tmp_path / "w1.log").read_text()[-3000:]
    done_before = streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"])
    assert done_before < len(values), "the kill must land mid-stream"
    proc = streams.start_worker(env, tmp_path / "w2.log")
    try:
        finished = streams.wait_for(
            lambda: (
                streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == len(values)
            ),
            300,
            1.0,
        )
        assert finished, (tmp_path / "w2.log").read_text()[-3000:]
    finally:
        assert _stop(proc) == ExitCode.OK
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    _assert_exactly_once(outputs, len(values))
    event_ids = [r["source_event_id"] for r in outputs.results]
    assert len(event_ids) == total_claims
    assert len(set(event_ids)) == total_claims
    assert len(outputs.dead_letters) == total_claims // poison_every


def test_a_producer_fenced_while_the_slot_is_ours_gets_a_fresh_producer(kafka_bootstrap, topics, tmp_path):
    """Fenced by a producer that holds no group slot (as the broker's timeout abort does): a new producer, exactly once."""
    codec = Codec()
    env = streams.worker_env(kafka_bootstrap, topics)
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        first = streams.claim(1)
        streams.produce(
            kafka_bootstrap, topics["claims"], [(first.claim_id.encode(), codec.encode_claim(first))]
        )
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 1, 60
        ), log.read_text()[-3000:]
        # Bumps the epoch of the worker's transactional id without joining the group: the worker's
        # static member id stays its own, so no live twin holds the slot.
        usurper = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topics['group']}-0")
        usurper.init_transactions()
        usurper.close()
        second = streams.claim(2)
        streams.produce(
            kafka_bootstrap, topics["claims"], [(second.claim_id.encode(), codec.encode_claim(second))]
        )
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 2, 60
        ), log.read_text()[-3000:]
        assert proc.poll() is None, "the slot is still this worker's: no exit 3"
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK
    events = [json.loads(line).get("event") for line in streams.iter_log(log) if line.startswith("{")]
    assert "producer_fenced_slot_ours" in events
    assert "recovered" in events
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert sorted(r["claim_id"] for r in outputs.results) == sorted([first.claim_id, second.claim_id])


def test_rebalance_between_two_workers_loses_and_duplicates_nothing(
    kafka_bootstrap, make_topics, unique, tmp_path
):
    """A second worker joining mid-stream takes partitions over without loss or double publish."""
    names = {
        "claims": f"rb-claims-{unique}",
        "results": f"rb-results-{unique}",
        "dead_letter": f"rb-dlq-{unique}",
        "group": f"rb-{unique}",
    }
    make_topics(names["claims"], names["results"], names["dead_letter"], partitions=4)
    codec = Codec()
    claims = [streams.claim(i) for i in range(4_000)]
    streams.produce(kafka_bootstrap, names["claims"], streams.encoded(claims[:2_000], codec))
    first = streams.start_worker(
        streams.worker_env(kafka_bootstrap, names, CLAIMS_INSTANCE="0", CLAIMS_BATCH_MAX_RECORDS="50"),
        tmp_path / "a.log",
    )
    second = None
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, names["group"], names["claims"]) >= 500, 120, 0.2
        ), (tmp_path / "a.log").read_text()[-3000:]
        second = streams.start_worker(
            streams.worker_env(kafka_bootstrap, names, CLAIMS_INSTANCE="1", CLAIMS_BATCH_MAX_RECORDS="50"),
            tmp_path / "b.log",
        )
        # The second half arrives only once the second worker holds partitions, so both must work on it.
        assert streams.wait_for(
            lambda: '"partitions_assigned", "partitions": [' in _assigned_lines(tmp_path / "b.log"), 60
        )
        streams.produce(kafka_bootstrap, names["claims"], streams.encoded(claims[2_000:], codec))
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, names["group"], names["claims"]) == len(claims),
            300,
            1.0,
        ), (tmp_path / "b.log").read_text()[-3000:]
    finally:
        codes = [_stop(p) for p in (first, second) if p is not None]
    assert codes == [ExitCode.OK, ExitCode.OK]
    outputs = streams.read_outputs(kafka_bootstrap, names["results"], names["dead_letter"])
    _assert_exactly_once(outputs, len(claims))
    assert sorted(r["source_event_id"] for r in outputs.results) == sorted(c.event_id for c in claims)
    b_log = (tmp_path / "b.log").read_text()
    assert "batch_committed" in b_log, "the second worker must have taken over some partitions"


def test_missing_topic_is_a_clear_error_and_exit_2(kafka_bootstrap, unique, tmp_path):
    """With auto-create off, a missing input topic stops the worker with a message naming it and exit 2."""
    names = {
        "claims": f"absent-{unique}",
        "results": f"absent-r-{unique}",
        "dead_letter": f"absent-d-{unique}",
        "group": f"g-{unique}",
    }
    log = tmp_path / "worker.log"
    proc = streams.start_worker(streams.worker_env(kafka_bootstrap, names), log)
    assert proc.wait(timeout=120) == 2
    text = log.read_text()
    assert f"absent-{unique}" in text
    assert "does not exist" in text
    assert "Traceback" not in text


def test_make_run_demo_shows_every_outcome(kafka_bootstrap, tmp_path):
    """The `make run` demo, pointed at the session broker, prints a table with every outcome and the dead letters."""
    env = streams.worker_env(
        kafka_bootstrap, {"claims": "x", "results": "y", "dead_letter": "z", "group": "g"}
    )
    for name in (
        "CLAIMS_CLAIMS_TOPIC",
        "CLAIMS_RESULTS_TOPIC",
        "CLAIMS_DEAD_LETTER_TOPIC",
        "CLAIMS_GROUP_ID",
        "CLAIMS_TRANSACTIONAL_ID_PREFIX",
    ):
        env.pop(name)
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.demo.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=streams.ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("what the worker decided", 1)[1]
    for outcome in (
        "APPROVED",
        "REFERRED",
        "PENDED",
        "REJECTED",
        "NOT_APPLICABLE",
        "REVERSED",
        "DEAD LETTER NOT_AVRO",
    ):
        assert outcome in table
    # 17 bundled records plus 5 claims without taxonomy that the prescriber directory decides.
    assert "22 records from" in table
    assert "directory nppes-sample-" in table


def _serving_port(log) -> int | None:
    """The metrics port from the worker's ``metrics_serving`` line, once it is logged."""
    for line in streams.iter_log(log) if log.exists() else ():
        if line.startswith("{") and json.loads(line).get("event") == "metrics_serving":
            return int(json.loads(line)["port"])
    return None


def test_sigterm_while_kafka_is_unreachable_exits_0_and_health_answers_meanwhile(unique, tmp_path):
    """A worker still retrying a closed port serves /healthz, and SIGTERM ends it with exit 0."""
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens here once the socket closes
    names = {"claims": "c", "results": "r", "dead_letter": "d", "group": f"g-{unique}"}
    env = streams.worker_env(f"127.0.0.1:{closed_port}", names, CLAIMS_STARTUP_RETRIES="1000")
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(lambda: _serving_port(log) is not None, 60, 0.1), log.read_text()[-3000:]
        port = _serving_port(log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        print(f"\nexit {code} {time.monotonic() - started:.2f}s after SIGTERM while connecting")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == ExitCode.OK, log.read_text()[-3000:]


def test_partitions_added_while_running_are_served(kafka_bootstrap, make_topics, unique, tmp_path):
    """Partitions added to the claims and output topics while the worker runs are served exactly once."""
    from kafka.admin import KafkaAdminClient, NewPartitions  # noqa: PLC0415

    names = {
        "claims": f"grow-c-{unique}",
        "results": f"grow-r-{unique}",
        "dead_letter": f"grow-d-{unique}",
        "group": f"grow-{unique}",
    }
    make_topics(names["claims"], names["results"], names["dead_letter"], partitions=1)
    codec = Codec()
    claims = [streams.claim(i) for i in range(400)]
    streams.produce(kafka_bootstrap, names["claims"], streams.encoded(claims[:200], codec))
    env = streams.worker_env(kafka_bootstrap, names)
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, names["group"], names["claims"]) == 200, 120
        ), log.read_text()[-3000:]
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.create_partitions(
                {names["results"]: NewPartitions(3), names["dead_letter"]: NewPartitions(3)}
            )
            admin.create_partitions({names["claims"]: NewPartitions(3)})
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for i, claim in enumerate(claims[200:]):
            producer.send(
                names["claims"], key=claim.claim_id.encode(), value=codec.encode_claim(claim), partition=i % 3
            )
        producer.flush()
        producer.close()
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, names["group"], names["claims"]) == 400, 180
        ), log.read_text()[-3000:]
        assert proc.poll() is None, "the worker must still run"
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK, log.read_text()[-3000:]
    outputs = streams.read_outputs(kafka_bootstrap, names["results"], names["dead_letter"])
    _assert_exactly_once(outputs, 400)
    assert "Traceback" not in log.read_text()


def test_two_live_workers_on_one_slot_end_with_exit_3_not_a_fencing_loop(kafka_bootstrap, topics, tmp_path):
    """A second live process started with the same CLAIMS_INSTANCE makes the older one exit 3; the newer goes on.

    The older one never re-initialises its producer once the newer one holds the static member id: it
    asks the group coordinator first (``kafka_io.slot_membership``), so the two cannot fence each other
    in a loop (issue 14: before that check the NEWER process sometimes exited 3 under load).
    """
    codec = Codec()
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_INSTANCE="5")
    first = streams.start_worker(env, tmp_path / "a.log")
    second = None
    try:
        records = streams.encoded([streams.claim(i) for i in range(10)], codec)
        streams.produce(kafka_bootstrap, topics["claims"], records[:5])
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 5, 60
        ), (tmp_path / "a.log").read_text()[-3000:]
        second = streams.start_worker(env, tmp_path / "b.log")
        # Once the newer worker holds the slot (its producer fenced the older one's), more claims come:
        # the older worker meets the fence on its next batch.
        assert streams.wait_for(lambda: '"state_restored"' in (tmp_path / "b.log").read_text(), 60), (
            tmp_path / "b.log"
        ).read_text()[-3000:]
        streams.produce(kafka_bootstrap, topics["claims"], records[5:])
        code = first.wait(timeout=120)
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 10, 120
        ), (tmp_path / "b.log").read_text()[-3000:]
        assert second.poll() is None, "the newer worker keeps its slot"
    finally:
        if first.poll() is None:
            first.kill()
        second_code = _stop(second) if second is not None else None
    assert code == ExitCode.FENCED, (tmp_path / "a.log").read_text()[-3000:]
    assert second_code == ExitCode.OK
    lines = [json.loads(x) for x in streams.iter_log(tmp_path / "a.log") if x.startswith("{")]
    fenced = [x for x in lines if x.get("event") in ("producer_fenced", "member_fenced")]
    assert fenced, "the older worker says why it stopped"
    assert "CLAIMS_INSTANCE" in fenced[0]["message"]
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    _assert_exactly_once(outputs, 10)
