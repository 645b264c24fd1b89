"""explain against the session broker: the worker decides claims, and explain shows each decision's criteria and evidence."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration import streams
from tests.integration.test_feed_show import _cli
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.directory.updates import ensure_topic
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

SECRET = "integration-explain-secret-0123456789"  # noqa: S105 - a test key, not a credential
CONSULTANT_NPI = "1987654328"
_CRITERION_KEYS = ("criterion_id", "status", "reason_code", "evidence", "needs", "explanation")


def _run_until_idle(env: dict[str, str], log) -> None:
    """Run one worker until it has been idle 3 s and assert it stopped cleanly."""
    proc = streams.start_worker({**env, "CLAIMS_EXIT_WHEN_IDLE_S": "3"}, log)
    assert proc.wait(timeout=180) == ExitCode.OK, log.read_text(errors="replace")[-3000:]


def _topics(kafka_bootstrap: str) -> dict[str, str]:
    """Fresh claims, results and dead-letter topics (2 partitions), a group, and a compacted store topic."""
    from kafka.admin import KafkaAdminClient, NewTopic  # noqa: PLC0415 - as tests/conftest.py's make_topics

    unique = uuid.uuid4().hex[:10]
    prefixes = {"claims": "claims", "results": "results", "dead_letter": "dlq", "group": "grp"}
    names = {kind: f"{prefix}-{unique}" for kind, prefix in prefixes.items()}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")
    try:
        topics = [names["claims"], names["results"], names["dead_letter"]]
        admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in topics])
    finally:
        admin.close()
    names["store"] = f"authorizations-{unique}"
    ensure_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}), names["store"], partitions=2)
    return names


@pytest.fixture(scope="module")
def decided(kafka_bootstrap, tmp_path_factory):
    """Run the worker (authorization store on) over an approval, a pended claim, its re-submission and a fill paid on file.

    Module-scoped: the tests below only read what these two worker runs committed. Returns the worker
    environment, the claims by role and every committed result read back, by claim id (in read order).
    """
    topics = _topics(kafka_bootstrap)
    tmp_path = tmp_path_factory.mktemp("explain")
    store = topics["store"]
    env = streams.worker_env(
        kafka_bootstrap, topics, CLAIMS_AUTHORIZATIONS_TOPIC=store, CLAIMS_MEMBER_PSEUDONYM_SECRET=SECRET
    )
    family = {"npi": streams.NPI, "taxonomy": streams.FAMILY}
    claims = {
        "approved": streams.claim(1),
        "pended": streams.claim(2, prescriber=family),  # B: a family physician, consultation not stated
    }
    codec = Codec()
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(list(claims.values()), codec))
    _run_until_idle(env, tmp_path / "first.log")

    served = streams.SERVICE_DAY + timedelta(days=21)
    claims["fill"] = streams.claim(
        3,
        patient=claims["approved"].patient.model_dump(),
        diagnoses=[],
        date_of_service=served,
        event_time=datetime.combine(served, datetime.min.time(), UTC),
    )
    consultation = {
        "status": "YES",
        "consultant_npi": CONSULTANT_NPI,
        "consultant_taxonomy": streams.ONCOLOGY,
    }
    claims["resubmitted"] = streams.claim(
        2,
        event_id="evt-000002-resubmitted",
        prescriber=family,
        attestation={"disease_status": "METASTATIC", "consultation": consultation},
    )
    later = [claims["fill"], claims["resubmitted"]]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(later, codec))
    _run_until_idle(env, tmp_path / "second.log")

    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert outputs.dead_letters == []
    results: dict[str, list[dict]] = {}
    for result in outputs.results:
        results.setdefault(result["claim_id"], []).append(result)
    return env, claims, results


def _criteria(result: dict) -> list[dict]:
    """The criteria of a result read back, as explain's JSON shows them."""
    return [{key: c[key] for key in _CRITERION_KEYS} for c in result["criteria"]]


def test_explain_by_coordinates_shows_the_decisions_criteria_and_evidence(decided):
    """explain --at P@O (JSON) shows exactly the criteria, evidence, PA number and window of the approval there."""
    env, claims, results = decided
    (approved,) = results[claims["approved"].claim_id]
    assert approved["outcome"] == "APPROVED"
    at = f"{approved['source']['partition']}@{approved['source']['offset']}"
    proc = _cli(["explain", "--at", at, "--format", "json"], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    (shown,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert shown["claim_id"] == claims["approved"].claim_id
    assert shown["criteria"] == _criteria(approved)
    assert {c["status"] for c in shown["criteria"]} == {"MET"}
    assert shown["authorization"] == {
        "number": approved["authorization_number"],
        "effective": approved["authorization_effective"].isoformat(),
        "expiration": approved["authorization_expiration"].isoformat(),
    }
    assert shown["paid_on_file"] is False
    assert shown["policy"] == {
        "id": approved["policy_id"],
        "version": approved["policy_version"],
        "selection": approved["policy_selection"],
    }
    assert shown["reference_versions"] == approved["reference_versions"]
    assert shown["source"] == approved["source"]
    assert f"1 result for source {at}" in proc.stderr

    text = _cli(["explain", "--at", at.replace("@", ":")], env)
    assert text.returncode == ExitCode.OK, text.stderr
    for criterion in approved["criteria"]:
        assert f"  {criterion['criterion_id']}  MET      {criterion['reason_code']}" in text.stdout
        for item in criterion["evidence"]:
            assert item in text.stdout
    assert f"  PA            {approved['authorization_number']}, window" in text.stdout


def test_explain_by_claim_id_shows_each_result_newest_last_with_needs(decided):
    """A pended claim and its re-submission: both results, newest last, the pended one's unknown criterion, evidence and need."""
    env, claims, results = decided
    claim_id = claims["pended"].claim_id
    pended, resubmitted = sorted(results[claim_id], key=lambda r: r["decided_at"])
    assert (pended["outcome"], resubmitted["outcome"]) == ("PENDED", "APPROVED")

    proc = _cli(["explain", "--claim-id", claim_id, "--format", "json"], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    shown = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["source_event_id"] for s in shown] == [
        pended["source_event_id"],
        resubmitted["source_event_id"],
    ]
    assert [s["criteria"] for s in shown] == [_criteria(pended), _criteria(resubmitted)]
    (unknown,) = [c for c in shown[0]["criteria"] if c["status"] == "UNKNOWN"]
    assert unknown["evidence"] == [f"prescriber taxonomy {streams.FAMILY} (source=claim)"]
    assert shown[0]["needed"] == [
        {
            "need": "CONSULTATION_STATUS",
            "message": "PA: SEND ONCOLOGY CONSULT STATUS",
            "criteria": [{"criterion_id": unknown["criterion_id"], "reason_code": unknown["reason_code"]}],
        }
    ]
    assert f"2 results for claim id {claim_id}, newest last" in proc.stderr

    text = _cli(["explain", "--claim-id", claim_id], env)
    assert text.returncode == ExitCode.OK, text.stderr
    out = text.stdout
    assert out.index("[1 of 2]") < out.index("PENDED: more information needed") < out.index("[2 of 2]")
    assert (
        "CONSULTATION_STATUS: PA: SEND ONCOLOGY CONSULT STATUS (criterion B CONSULTATION_STATUS_NEEDED)"
        in out
    )
    assert f"consultant taxonomy {streams.ONCOLOGY} (source=claim)" in out.split("[2 of 2]")[1]


def test_explain_a_fill_paid_on_file(decided):
    """The later fill is shown paid on file, under the approval's PA number and original window, no criterion evaluated."""
    env, claims, results = decided
    (approved,) = results[claims["approved"].claim_id]
    (fill,) = results[claims["fill"].claim_id]
    assert fill["decision_source"] == "ON_FILE"
    proc = _cli(["explain", "--claim-id", claims["fill"].claim_id], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    window = f"{approved['authorization_effective']} through {approved['authorization_expiration']}"
    assert f"  PA            {approved['authorization_number']}, window {window}" in proc.stdout
    assert "  paid on file  yes: paid against the authorization on file" in proc.stdout
    assert "criteria: none evaluated: paid against the authorization on file" in proc.stdout


def test_explain_nothing_matched_and_a_missing_topic(decided):
    """An id no result answers exits 1 after a complete read; a missing --topic exits 2 with one line."""
    env, _, results = decided
    total = sum(len(found) for found in results.values())
    none = _cli(["explain", "--claim-id", "clm-nobody"], env)
    assert none.returncode == 1
    assert f"no result for claim id clm-nobody: {total} records read" in none.stderr
    missing = _cli(
        ["explain", "--claim-id", "clm-nobody", "--topic", f"{env['CLAIMS_RESULTS_TOPIC']}-missing"], env
    )
    assert missing.returncode == ExitCode.BAD_SETTINGS
    assert missing.stderr.strip().startswith("error: topic ")
    assert "Traceback" not in missing.stderr


def test_explain_live_and_replay_topics_together(decided):
    """After a replay, explain over the live and replay topics shows both decisions of a claim, the replay's named."""
    env, claims, results = decided
    replayed = f"{env['CLAIMS_RESULTS_TOPIC']}.replay.explain"
    replay = _cli(
        [
            "replay",
            "--progress",
            "off",
            "--from",
            "2000-01-01",
            "--replay-id",
            "explain",
            "--output-topic",
            replayed,
        ],
        env,
    )
    assert replay.returncode == ExitCode.OK, replay.stderr
    (live,) = results[claims["approved"].claim_id]
    argv = ["explain", "--claim-id", claims["approved"].claim_id, "--format", "json"]
    proc = _cli([*argv, "--topic", env["CLAIMS_RESULTS_TOPIC"], "--topic", replayed], env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    shown = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["record"]["topic"] for s in shown] == [env["CLAIMS_RESULTS_TOPIC"], replayed]  # newest last
    assert shown[0]["replay"] == {}
    assert shown[1]["replay"]["id"] == "explain"
    assert shown[1]["source"] == shown[0]["source"] == live["source"]
    assert shown[1]["criteria"] == shown[0]["criteria"] == _criteria(live)
