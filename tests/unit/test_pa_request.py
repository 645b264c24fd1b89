"""PA requests: the pa-request contract, its decision under the claims policy, and the fill that pays against it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.unit.claims import NPIS, make_claim
from worker.contracts.model import InformationNeed, Outcome
from worker.contracts.pa_request import (
    decide_request,
    decode_pa_request,
    encode_pa_request,
    pa_decision,
    request_claim,
)
from worker.errors import BadRecord, DeadLetterClass
from worker.policy import decide, default_policy
from worker.policy.facts import Facts
from worker.state.authorizations import Authorizations, decode_authorization

POLICY = default_policy()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PATIENT = {
    "member_id": "PHIMEMBER8675309",
    "first_name": "ZZPHIFIRST",
    "last_name": "ZZPHILAST",
    "date_of_birth": date(1937, 4, 23),
}
PHI = ("PHIMEMBER8675309", "ZZPHIFIRST", "ZZPHILAST", "1937-04-23")


def _request(**overrides):
    record = {
        "request_id": "REQ-0001",
        "requested_at": NOW,
        "patient": PATIENT,
        "prescriber": {"npi": NPIS[0], "taxonomy": "207RX0202X"},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": "70020-1910-01", "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": date(2025, 3, 1),
    }
    record.update(overrides)
    return record


def _decide(request, store=None):
    claim = request_claim(decode_pa_request(encode_pa_request(request)))
    return claim, decide_request(claim, POLICY, NOW, lambda: decide(claim, Facts(), POLICY, NOW), store)


def test_an_approved_request_goes_on_file_and_the_fill_pays_against_it():
    """An approvable request is APPROVED with a PA number from its start date; a later clinical-data-free fill pays on file with that number."""
    store = Authorizations(b"unit-test-secret-0123456789", "store")
    claim, decision = _decide(_request(), store)
    assert decision.outcome is Outcome.APPROVED
    assert decision.authorization_effective == date(2025, 3, 1)
    record = store.issue(claim, decision, source_kind="request")
    assert record is not None
    assert decode_authorization(record.key, record.value).source_kind == "request"
    store.commit()
    fill = make_claim(patient={**PATIENT, "date_of_birth": "1937-04-23"}, dx=(), dos="2025-05-01")
    paid = store.decide(fill, POLICY, NOW, lambda: decide(fill, Facts(), POLICY, NOW))
    assert paid.outcome is Outcome.APPROVED
    assert paid.authorization_number == decision.authorization_number


def test_a_request_without_diagnoses_is_pended_with_what_is_needed_and_the_answer_has_no_phi():
    """A request with no diagnosis pends and its answer lists the need, with no member id, name or birth date."""
    _, decision = _decide(_request(diagnoses=[], disease_status="UNKNOWN"))
    assert decision.outcome is Outcome.PENDED
    answer = pa_decision("REQ-0001", decision)
    assert answer["pa_number"] is None
    assert InformationNeed.DIAGNOSIS_CODE.value in answer["needs"]
    assert all(phi not in str(answer) for phi in PHI)


def test_bad_requests_follow_the_dead_letter_rules():
    """Bytes that are not Avro, a truncated body and an invalid field raise BadRecord with the claims' classes."""
    with pytest.raises(BadRecord) as not_avro:
        decode_pa_request(b"garbage")
    assert not_avro.value.error_class is DeadLetterClass.NOT_AVRO
    good = encode_pa_request(_request())
    with pytest.raises(BadRecord) as truncated:
        decode_pa_request(good[:20])
    assert truncated.value.error_class is DeadLetterClass.TRUNCATED
    with pytest.raises(BadRecord) as invalid:
        request_claim(
            decode_pa_request(encode_pa_request(_request(prescriber={"npi": "123", "taxonomy": None})))
        )
    assert invalid.value.error_class is DeadLetterClass.INVALID_FIELD
    assert "123" not in invalid.value.reason
