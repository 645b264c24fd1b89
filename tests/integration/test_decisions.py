"""Decisions end to end on a real broker: REJECTED answers, referrals, PA numbers, and v1 results still read."""

from __future__ import annotations

import pytest

from tests.integration import streams
from worker.config.settings import WireFormat
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

BAD_CHECK_DIGIT_NPI = "1234567890"


def _run_worker(kafka_bootstrap, topics, tmp_path, records, **env_extra):
    """Produce ``records``, run the worker until idle, and return everything it committed."""
    streams.produce(kafka_bootstrap, topics["claims"], records)
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3", **env_extra)
    log = tmp_path / "worker.log"
    code = streams.start_worker(env, log).wait(timeout=120)
    assert code == ExitCode.OK, log.read_text(errors="replace")[-3000:]
    return streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])


def test_decisions_on_the_broker(kafka_bootstrap, topics, tmp_path):
    """A malformed NPI is REJECTED with 25 (no dead letter), not-met is REFERRED, an approval has a PA number."""
    codec = Codec()
    approvable = streams.claim(1)
    not_met = streams.claim(
        2,
        diagnoses=[{"code": "C50.911", "qualifier": "02"}],
        attestation={"disease_status": "LOCALLY_ADVANCED"},
    )
    pended = streams.claim(3, diagnoses=[])
    malformed = streams.claim(4).model_dump()
    malformed["prescriber"]["npi"] = BAD_CHECK_DIGIT_NPI
    records = [
        *streams.encoded([approvable, not_met, pended], codec),
        (malformed["claim_id"].encode(), codec.encode_claim(malformed)),
    ]
    outputs = _run_worker(kafka_bootstrap, topics, tmp_path, records)

    assert outputs.dead_letters == []
    by_claim = {r["claim_id"]: r for r in outputs.results}
    assert set(by_claim) == {approvable.claim_id, not_met.claim_id, pended.claim_id, malformed["claim_id"]}

    rejected = by_claim[malformed["claim_id"]]
    assert rejected["outcome"] == "REJECTED"
    assert rejected["reject_codes"] == ["25"]
    assert rejected["ncpdp"]["response_status"] == "R"
    assert [(r["code"], r["field"]) for r in rejected["ncpdp"]["rejects"]] == [("25", "prescriber.npi")]
    assert rejected["decision_source"] == "FIELD_EDIT"
    assert rejected["source_event_id"] == malformed["event_id"]

    referred = by_claim[not_met.claim_id]
    assert (referred["outcome"], referred["recommendation"]) == ("REFERRED", "DENY")
    assert referred["reject_codes"] == ["3W"]
    assert referred["source_criteria"] == ["A"]

    approved = by_claim[approvable.claim_id]
    assert approved["outcome"] == "APPROVED"
    assert approved["authorization_number"] is not None
    assert len(approved["authorization_number"]) == 11
    assert approved["authorization_number"].isdigit()
    assert approved["matched_product"]["code"] == streams.IXEMPRA
    assert approved["ncpdp"]["response_status"] == "A"
    assert approved["event_time"] is not None
    assert (approved["policy_id"], approved["policy_version"]) == ("IXEMPRA-PA", "2020.09-3")

    assert by_claim[pended.claim_id]["needs"] == ["DIAGNOSIS_CODE"]


def test_opt_in_denials_and_policy_selection(kafka_bootstrap, topics, tmp_path):
    """CLAIMS_AUTOMATED_DENIALS=true denies (3Y) what is otherwise referred; CLAIMS_POLICY names the version."""
    codec = Codec()
    not_met = streams.claim(
        10,
        diagnoses=[{"code": "C50.911", "qualifier": "02"}],
        attestation={"disease_status": "EARLY"},
    )
    outputs = _run_worker(
        kafka_bootstrap,
        topics,
        tmp_path,
        streams.encoded([not_met], codec),
        CLAIMS_AUTOMATED_DENIALS="true",
        CLAIMS_POLICY="IXEMPRA-PA/2020.09-1",
    )
    (result,) = outputs.results
    assert (result["outcome"], result["reject_codes"]) == ("DENIED", ["3Y"])
    assert result["decision_source"] == "AUTOMATED_RULE"
    assert (result["policy_id"], result["policy_version"]) == ("IXEMPRA-PA", "2020.09-1")


def test_v1_result_on_the_topic_still_reads(kafka_bootstrap, topics):
    """A result written with the v1 schema, committed on the results topic, decodes as v2 with defaults."""
    v1 = {
        "claim_id": "clm-v1",
        "source_event_id": "evt-v1",
        "transaction_code": "B1",
        "outcome": "DENIED",
        "criteria": [],
        "reject_codes": ["75"],
        "authorization_effective": None,
        "authorization_expiration": None,
        "summary": "Denied under the v1 worker.",
        "policy_id": "IXEMPRA-PA",
        "policy_version": "2020.09-1",
        "decided_at": streams.claim(0).event_time,
        "worker_version": "0.9.0",
        "source": SourceCoordinates("claims", 0, 0).as_record(),
    }
    values = []
    for framing in WireFormat:
        writer = Codec(wire_format=framing)
        values.append((b"clm-v1", writer._encode(writer._families["result"].versions[1], v1)))
    streams.produce(kafka_bootstrap, topics["results"], values)
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    assert len(outputs.results) == len(WireFormat)
    for decoded in outputs.results:
        assert (decoded["claim_id"], decoded["outcome"], decoded["reject_codes"]) == (
            "clm-v1",
            "DENIED",
            ["75"],
        )
        assert decoded["ncpdp"]["response_status"] is None
        assert decoded["needs"] == []
        assert decoded["decision_source"] == "AUTOMATED_RULE"
