"""Tests of the result and dead-letter builders: schema shape, untouched originals, and no PHI."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from worker.contracts.codec import Codec
from worker.contracts.model import Claim, CriterionResult, CriterionStatus, Decision, Outcome
from worker.contracts.registry import SCHEMAS_DIR
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_result
from worker.devtools.samples import poison_records, sample_claims
from worker.errors import BadRecord, DeadLetterClass, DecodeError, InvalidClaim

CLAIMS = {sample.label: sample.claim for sample in sample_claims()}
SOURCE = SourceCoordinates("claims.v1", 5, 9_000_000_001)
NOW = datetime(2025, 3, 10, 14, 30, 5, tzinfo=UTC)
PHI_MEMBER = "PHIMEMBERSENTINEL"
PHI_FIRST = "PHIFIRSTSENTINEL"
PHI_LAST = "PHILASTSENTINEL"
PHI_DOB = date(1901, 2, 3)


@pytest.fixture(scope="module")
def codec():
    """One codec for the module."""
    return Codec()


def _schema_fields(file_name):
    """Return the top-level field names of a schema file, in order."""
    return [f["name"] for f in json.loads((SCHEMAS_DIR / file_name).read_text())["fields"]]


def _phi_claim():
    """Return a sample claim whose patient fields hold sentinel values."""
    claim = CLAIMS["approve-codes"]
    patient = claim.patient.model_copy(
        update={
            "member_id": PHI_MEMBER,
            "first_name": PHI_FIRST,
            "last_name": PHI_LAST,
            "date_of_birth": PHI_DOB,
        }
    )
    return claim.model_copy(update={"patient": patient})


def _decision(outcome=Outcome.DENIED):
    """Return a hand-built decision with two criteria and reject codes."""
    return Decision(
        outcome=outcome,
        criteria=(
            CriterionResult(
                criterion_id="A",
                status=CriterionStatus.NOT_MET,
                reason_code="LOCALLY_ADVANCED_ONLY",
                evidence=("C50.911",),
                explanation="Locally advanced disease does not meet criterion A.",
            ),
            CriterionResult(
                criterion_id="B",
                status=CriterionStatus.MET,
                reason_code="PRESCRIBER_IS_ONCOLOGIST",
                evidence=("207RX0202X",),
                explanation="Prescriber taxonomy is Medical Oncology.",
            ),
        ),
        reject_codes=("75", "3Y"),
        policy_id="000_da38be68fa2ba257",
        policy_version="1",
        decided_at=NOW,
        summary="Denied: criterion A not met.",
    )


class TestBuildResult:
    """build_result produces the AdjudicationResult record from a claim and a decision."""

    def test_fields_match_schema(self):
        """The record has exactly the schema's fields."""
        record = build_result(CLAIMS["approve-codes"], _decision(), source=SOURCE, worker_version="1.2.3")
        assert list(record) == _schema_fields("result.avsc")

    def test_values(self, codec):
        """Identifiers come from the claim, the rest from the decision, enums as their string values."""
        claim = CLAIMS["deny-locally-advanced"]
        record = build_result(claim, _decision(), source=SOURCE, worker_version="1.2.3")
        assert record["claim_id"] == claim.claim_id
        assert record["source_event_id"] == claim.event_id
        assert record["transaction_code"] == "B1"
        assert record["outcome"] == "DENIED"
        assert record["criteria"][0] == {
            "criterion_id": "A",
            "status": "NOT_MET",
            "reason_code": "LOCALLY_ADVANCED_ONLY",
            "evidence": ["C50.911"],
            "explanation": "Locally advanced disease does not meet criterion A.",
        }
        assert record["reject_codes"] == ["75", "3Y"]
        assert record["authorization_effective"] is None
        assert record["source"] == {"topic": "claims.v1", "partition": 5, "offset": 9_000_000_001}
        assert codec.decode_result(codec.encode_result(record)) == record

    def test_reversal(self, codec):
        """A B2 reversal result carries B2 and REVERSED and encodes."""
        claim = CLAIMS["reversal-b2"]
        record = build_result(claim, _decision(Outcome.REVERSED), source=SOURCE, worker_version="1")
        assert (record["transaction_code"], record["outcome"]) == ("B2", "REVERSED")
        assert codec.decode_result(codec.encode_result(record))["outcome"] == "REVERSED"

    def test_no_phi_in_result(self, codec):
        """Sentinel PHI in the claim appears in no result key, value or encoded byte."""
        record = build_result(_phi_claim(), _decision(), source=SOURCE, worker_version="1")
        text = repr(record)
        encoded = codec.encode_result(record)
        for value in (PHI_MEMBER, PHI_FIRST, PHI_LAST):
            assert value not in text
            assert value.encode() not in encoded
        assert PHI_DOB not in record.values()
        assert "1901" not in text
        for key in ("patient", "member_id", "first_name", "last_name", "date_of_birth"):
            assert key not in record

    def test_works_with_dataclass_decisions(self):
        """Frozen dataclasses with the same field names as Decision and CriterionResult build the same record."""

        @dataclasses.dataclass(frozen=True)
        class Criterion:
            criterion_id: str
            status: CriterionStatus
            reason_code: str
            evidence: tuple[str, ...]
            explanation: str

        @dataclasses.dataclass(frozen=True)
        class PlainDecision:
            outcome: Outcome
            criteria: tuple[Criterion, ...]
            reject_codes: tuple[str, ...]
            authorization_effective: date | None
            authorization_expiration: date | None
            policy_id: str
            policy_version: str
            decided_at: datetime
            summary: str

        model = _decision()
        plain = PlainDecision(
            **{
                **{name: getattr(model, name) for name in Decision.model_fields},
                "criteria": tuple(Criterion(**c.model_dump()) for c in model.criteria),
            }
        )
        claim = CLAIMS["approve-codes"]
        expected = build_result(claim, model, source=SOURCE, worker_version="1")
        assert build_result(claim, plain, source=SOURCE, worker_version="1") == expected


class TestBuildDeadLetter:
    """build_dead_letter keeps the original record untouched and names why it was rejected."""

    def test_fields_and_values(self, codec):
        """The record has the schema's fields, the original bytes and headers as given, and the error's class."""
        error = InvalidClaim(DeadLetterClass.INVALID_FIELD, "prescriber.npi: value_error")
        headers = [("traceparent", b"00-abc"), ("nothing", None), ("traceparent", b"dup")]
        record = build_dead_letter(
            key=b"\x00key",
            value=b"\xc3\x01raw",
            headers=headers,
            source=SOURCE,
            error=error,
            worker_version="1.2.3",
            dead_lettered_at=NOW,
        )
        assert list(record) == _schema_fields("dead_letter.v2.avsc")
        assert record["original_key"] == b"\x00key"
        assert record["original_value"] == b"\xc3\x01raw"
        assert record["original_headers"] == [{"key": k, "value": v} for k, v in headers]
        assert (record["error_class"], record["reason"]) == ("INVALID_FIELD", "prescriber.npi: value_error")
        assert codec.decode_dead_letter(codec.encode_dead_letter(record)) == record

    def test_null_key_and_value(self, codec):
        """A tombstone (no key, no value) dead-letters and round-trips."""
        record = build_dead_letter(
            key=None,
            value=None,
            headers=[],
            source=SOURCE,
            error=DecodeError(DeadLetterClass.NOT_AVRO, "record value is null"),
            worker_version="1",
            dead_lettered_at=NOW,
        )
        assert codec.decode_dead_letter(codec.encode_dead_letter(record)) == record

    @pytest.mark.parametrize("index", range(len(poison_records())))
    def test_poison_records_dead_letter_byte_for_byte(self, codec, index):
        """Each poison record becomes a dead letter whose original value is byte-identical after a round trip."""
        key, value = poison_records(codec)[index]
        with pytest.raises(BadRecord) as info:
            codec.decode_claim(value)
        record = build_dead_letter(
            key=key,
            value=value,
            headers=[("source", b"test")],
            source=SOURCE,
            error=info.value,
            worker_version="1",
            dead_lettered_at=NOW,
        )
        decoded = codec.decode_dead_letter(codec.encode_dead_letter(record))
        assert decoded["original_value"] == value
        assert decoded["original_key"] == key
        assert decoded["error_class"] == str(info.value.error_class)

    def test_reason_of_invalid_phi_claim_has_no_phi(self, codec):
        """A claim invalid in its PHI fields dead-letters with a reason free of the sentinels."""
        record = _phi_claim().model_dump()
        record["patient"] = {**record["patient"], "last_name": PHI_LAST * 3}
        with pytest.raises(InvalidClaim) as info:
            codec.decode_claim(codec.encode_claim(record))
        letter = build_dead_letter(
            key=None,
            value=None,
            headers=[],
            source=SOURCE,
            error=info.value,
            worker_version="1",
            dead_lettered_at=NOW,
        )
        assert letter["reason"] == "patient.last_name: string_too_long"
        for value in (PHI_MEMBER, PHI_FIRST, PHI_LAST):
            assert value not in letter["reason"]


class TestSourceCoordinates:
    """SourceCoordinates is a small immutable value."""

    def test_frozen(self):
        """Assigning to a field raises."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            SOURCE.offset = 1

    def test_as_record(self):
        """as_record gives the Avro record with the same three fields."""
        assert SOURCE.as_record() == {"topic": "claims.v1", "partition": 5, "offset": 9_000_000_001}
        assert isinstance(CLAIMS["approve-codes"], Claim)
