"""Prior authorizations on file, end to end on a real broker: approve once, pay later fills, revoke, survive kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.integration import streams
from tests.integration.test_observability import (
    PHI_PATIENT,
    _get,
    _key,
    _metrics_port,
    _phi_hits,
    _scrape,
)
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.pa_request import encode_pa_request
from worker.directory.updates import ensure_topic
from worker.kafka.reads import read_topic
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

SECRET = "integration-demo-secret-0123456789"  # noqa: S105 - a test key, not a credential

# The PHI scan of the store topic, the worker logs and the operator command uses the same sentinels
# as the observability scan (test_observability.py).


def _settings(kafka_bootstrap):
    return load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})


def _env(kafka_bootstrap, topics, **extra):
    return streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_AUTHORIZATIONS_TOPIC=topics["store"],
        CLAIMS_MEMBER_PSEUDONYM_SECRET=SECRET,
        **extra,
    )


@pytest.fixture
def store_topics(kafka_bootstrap, topics, unique):
    """The claims topics plus a compacted authorization store topic (2 partitions)."""
    topics = {**topics, "store": f"authorizations-{unique}"}
    ensure_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}), topics["store"], partitions=2)
    return topics


def _run_until_idle(env, log, *, workers: int = 1):
    """Run ``workers`` worker processes (instances 0..n-1) until idle and assert each exits 0."""
    procs = [
        streams.start_worker({**env, "CLAIMS_INSTANCE": str(i)}, log.with_suffix(f".{i}.log"))
        for i in range(workers)
    ]
    for i, proc in enumerate(procs):
        code = proc.wait(timeout=180)
        assert code == ExitCode.OK, log.with_suffix(f".{i}.log").read_text(errors="replace")[-3000:]


def _results(kafka_bootstrap, topics):
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert outputs.dead_letters == []
    return {r["claim_id"]: r for r in outputs.results}


def _fill(n: int, member_of: int | None = None, **overrides):
    """A fill carrying no clinical data, for the member of claim ``member_of`` (default: the PHI sentinel member)."""
    member = PHI_PATIENT if member_of is None else streams.claim(member_of).patient.model_dump()
    served = overrides.get("date_of_service")
    if served is not None:  # a later fill is submitted on its own date of service (the edits compare them)
        overrides.setdefault("event_time", datetime.combine(served, datetime.min.time(), UTC))
    return streams.claim(n, patient=member, diagnoses=[], **overrides)


def _later(days: int) -> date:
    """The date ``days`` after the approvals' date of service."""
    return streams.SERVICE_DAY + timedelta(days=days)


def _cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "worker", "authorizations", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=streams.ROOT,
        check=False,
    )


def test_approval_pays_later_fills_on_file_until_revoked(kafka_bootstrap, store_topics, tmp_path):
    """Approve once; two workers pay the clinical-data-free fill on file, refuse another member's quoted number and a late fill; a revocation stops payment."""
    topics, codec = store_topics, Codec()
    env = _env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3")
    approval = streams.claim(1, patient=PHI_PATIENT)
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([approval], codec))
    _run_until_idle(env, tmp_path / "approve.log")
    approved = _results(kafka_bootstrap, topics)[approval.claim_id]
    assert approved["outcome"] == "APPROVED"
    number = approved["authorization_number"]

    store = list(read_topic(_settings(kafka_bootstrap), topics["store"], timeout_s=30))
    assert [r.key for r in store] == [number.encode()]
    assert not _phi_hits(repr([(r.key, r.value, r.headers) for r in store]))

    fill = _fill(2, date_of_service=_later(120))
    late = _fill(3, date_of_service=_later(440))
    other = streams.claim(4, diagnoses=[], prior_authorization_number=number)
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([fill, late, other], codec))
    _run_until_idle(env, tmp_path / "fills.log", workers=2)  # restarted: the table is read back from Kafka
    results = _results(kafka_bootstrap, topics)
    assert results[fill.claim_id]["outcome"] == "APPROVED"
    assert results[fill.claim_id]["authorization_number"] == number
    assert results[fill.claim_id]["authorization_effective"] == approved["authorization_effective"]
    assert results[fill.claim_id]["authorization_expiration"] == approved["authorization_expiration"]
    assert "on file" in results[fill.claim_id]["summary"]
    assert results[fill.claim_id]["decision_source"] == "ON_FILE"
    assert approved["decision_source"] == "AUTOMATED_RULE"
    assert results[late.claim_id]["outcome"] == "PENDED"
    assert results[other.claim_id]["outcome"] == "PENDED"
    assert f"Quoted PA number {number}" in results[other.claim_id]["summary"]
    assert "another member" in results[other.claim_id]["summary"]

    shown = _cli(env, "show", number)
    assert shown.returncode == 0, shown.stderr
    assert number in shown.stdout
    assert not _phi_hits(shown.stdout + shown.stderr)
    revoked = _cli(env, "revoke", number, "--reason", "ENTERED_IN_ERROR")
    assert revoked.returncode == 0, revoked.stderr
    again = _cli(env, "revoke", number, "--reason", "ENTERED_IN_ERROR")
    assert again.returncode == 0
    assert "nothing written" in again.stdout
    store = list(read_topic(_settings(kafka_bootstrap), topics["store"], timeout_s=30))
    assert len(store) == 2  # the approval and exactly one revocation event

    after = _fill(5, date_of_service=_later(151))
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([after], codec))
    # The same two slots again: with static membership a slot that stays away keeps its partitions until
    # the session timeout (45 s), so a single worker could go idle before claim 5's partition came back.
    _run_until_idle(env, tmp_path / "revoked.log", workers=2)
    assert _results(kafka_bootstrap, topics)[after.claim_id]["outcome"] == "PENDED"
    store = list(read_topic(_settings(kafka_bootstrap), topics["store"], timeout_s=30))
    assert not _phi_hits(repr([(r.key, r.value, r.headers) for r in store]))
    for log in tmp_path.glob("*.log"):
        assert not _phi_hits(log.read_text(errors="replace")), log.name


def test_kill_9_between_approval_and_fill_still_pays_on_file(kafka_bootstrap, store_topics, tmp_path):
    """A worker killed with SIGKILL right after committing an approval: the restarted worker pays the next fill on file."""
    topics, codec = store_topics, Codec()
    env = _env(kafka_bootstrap, topics)
    approval = streams.claim(11)
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([approval], codec))
    proc = streams.start_worker(env, tmp_path / "w1.log")
    try:
        done = streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) >= 1, 120
        )
    finally:
        proc.kill()  # SIGKILL: no clean-up
        proc.wait(timeout=30)
    assert done, (tmp_path / "w1.log").read_text(errors="replace")[-3000:]
    fill = _fill(12, member_of=11, date_of_service=_later(92))
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([fill], codec))
    _run_until_idle({**env, "CLAIMS_EXIT_WHEN_IDLE_S": "3"}, tmp_path / "w2.log")
    results = _results(kafka_bootstrap, topics)
    assert results[fill.claim_id]["outcome"] == "APPROVED"
    assert (
        results[fill.claim_id]["authorization_number"] == results[approval.claim_id]["authorization_number"]
    )
    assert results[fill.claim_id]["decision_source"] == "ON_FILE"


def test_request_approved_then_fill_paid_on_file(kafka_bootstrap, store_topics, make_topics, tmp_path):
    """A PA request is approved on the PA-decisions topic and goes on file; a bad or resent request is dead-lettered; the later fill pays on file with that number."""
    topics, codec = store_topics, Codec()
    requests, decisions = f"pa-requests-{topics['group']}", f"pa-decisions-{topics['group']}"
    make_topics(requests, decisions)
    env = _env(
        kafka_bootstrap,
        topics,
        CLAIMS_EXIT_WHEN_IDLE_S="3",
        CLAIMS_PA_REQUESTS_TOPIC=requests,
        CLAIMS_PA_DECISIONS_TOPIC=decisions,
    )
    request = {
        "request_id": "REQ-000021",
        "requested_at": datetime.now(UTC),
        "patient": PHI_PATIENT,
        "prescriber": {"npi": streams.NPI, "taxonomy": streams.ONCOLOGY},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": streams.IXEMPRA, "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": streams.SERVICE_DAY,
    }
    streams.produce(
        kafka_bootstrap,
        requests,
        [(b"REQ-000021", encode_pa_request(request)), (b"REQ-BAD", b"not a request")],
    )
    log = tmp_path / "requests.log"
    served, scraped = _cli_served_scraped(env, log)
    assert served == ExitCode.OK, log.read_text(errors="replace")[-3000:]
    # serve-requests serves the claims worker's metrics and health: the answer and the dead letter counted.
    assert scraped[_key("claims_worker_results_total", outcome="APPROVED")] == 1
    assert scraped[_key("claims_worker_dead_letters_total", error_class="NOT_AVRO")] == 1
    assert scraped[_key("claims_worker_authorizations_issued_total")] == 1
    assert not _phi_hits(repr(sorted(scraped, key=repr)))
    answers = [json.loads(r.value) for r in read_topic(_settings(kafka_bootstrap), decisions, timeout_s=30)]
    assert [(a["request_id"], a["outcome"]) for a in answers] == [("REQ-000021", "APPROVED")]
    number = answers[0]["pa_number"]
    assert number
    assert not _phi_hits(json.dumps(answers))
    letters = streams.read_all(kafka_bootstrap, topics["dead_letter"], codec, "dead_letter")
    assert [d["error_class"] for d in letters] == ["NOT_AVRO"]
    assert not _phi_hits(log.read_text(errors="replace"))

    # The same request resent after a restart: the filter restored from PA-decisions dead-letters it.
    streams.produce(kafka_bootstrap, requests, [(b"REQ-000021", encode_pa_request(request))])
    assert _cli_served(env, log) == ExitCode.OK, log.read_text(errors="replace")[-3000:]
    again = [json.loads(r.value) for r in read_topic(_settings(kafka_bootstrap), decisions, timeout_s=30)]
    assert [a["request_id"] for a in again] == ["REQ-000021"]  # answered once
    letters = streams.read_all(kafka_bootstrap, topics["dead_letter"], codec, "dead_letter")
    assert sorted(d["error_class"] for d in letters) == ["DUPLICATE_EVENT", "NOT_AVRO"]

    fill = _fill(22, date_of_service=_later(30))
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([fill], codec))
    _run_until_idle(env, tmp_path / "fill.log")
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    result = {r["claim_id"]: r for r in outputs.results}[fill.claim_id]
    assert (result["outcome"], result["authorization_number"], result["decision_source"]) == (
        "APPROVED",
        number,
        "ON_FILE",
    )
    assert (str(result["authorization_effective"]), str(result["authorization_expiration"])) == (
        answers[0]["effective"],
        answers[0]["expiration"],
    )
    assert len(outputs.dead_letters) == 2  # only the bad and the resent request's


def _cli_served(env, log):
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "authorizations", "serve-requests"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=streams.ROOT,
        )
    return proc.wait(timeout=180)


def _cli_served_scraped(env, log):
    """Run serve-requests; while it runs, scrape /metrics (and /readyz) until an answer is counted."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "authorizations", "serve-requests"],
            env={**env, "CLAIMS_METRICS_PORT": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=streams.ROOT,
        )
    port = _metrics_port(proc, log)
    scraped: dict = {}

    def answered() -> bool:
        nonlocal scraped
        if _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            return False
        scraped = _scrape(port)[0]
        return scraped.get(_key("claims_worker_results_total", outcome="APPROVED"), 0) >= 1

    assert streams.wait_for(answered, 120, 0.2), log.read_text(errors="replace")[-3000:]
    return proc.wait(timeout=180), scraped


# Found by a birthday search over authorization_number for streams.claim's pharmacy: one PA number.
_COLLIDING = (32600, 72964)


def test_colliding_pa_numbers_both_go_on_file_and_both_members_fills_pay(
    kafka_bootstrap, store_topics, tmp_path
):
    """Two approvals whose hashed PA numbers collide get distinct numbers (result = store record), the collision is logged by claim id, and both members' later fills pay on file."""
    from worker.policy.decision import authorization_number  # noqa: PLC0415

    topics, codec = store_topics, Codec()
    a, b = (streams.claim(n) for n in _COLLIDING)
    assert authorization_number("IXEMPRA-PA", a.service_provider_id, a.claim_id) == authorization_number(
        "IXEMPRA-PA", b.service_provider_id, b.claim_id
    )
    env = _env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3")
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([a, b], codec))
    log = tmp_path / "approve.log"
    _run_until_idle(env, log)
    approved = _results(kafka_bootstrap, topics)
    numbers = {approved[c.claim_id]["authorization_number"] for c in (a, b)}
    assert len(numbers) == 2
    assert {approved[c.claim_id]["outcome"] for c in (a, b)} == {"APPROVED"}
    store = list(read_topic(_settings(kafka_bootstrap), topics["store"], timeout_s=30))
    assert sorted(r.key.decode() for r in store) == sorted(numbers)
    text = log.with_suffix(".0.log").read_text(errors="replace")
    events = [json.loads(line) for line in text.splitlines() if "authorization_number_collision" in line]
    # Whichever of the two the worker decided second is renumbered (their partitions may interleave).
    [event] = events
    assert event["claim_id"] in {a.claim_id, b.claim_id}
    assert {event["pa_number"], event["resolved_pa_number"]} == numbers  # the hashed number and its rehash
    assert not any(c.patient.member_id in text or c.patient.last_name in text for c in (a, b))

    fills = [_fill(90_000 + i, member_of=n, date_of_service=_later(92)) for i, n in enumerate(_COLLIDING)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(fills, codec))
    _run_until_idle(env, tmp_path / "fills.log")  # restarted: both authorizations read back from Kafka
    results = _results(kafka_bootstrap, topics)
    for fill, approval in zip(fills, (a, b), strict=True):
        assert results[fill.claim_id]["outcome"] == "APPROVED"
        assert results[fill.claim_id]["decision_source"] == "ON_FILE"
        assert (
            results[fill.claim_id]["authorization_number"]
            == approved[approval.claim_id]["authorization_number"]
        )
