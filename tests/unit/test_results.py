"""Tests of the result and dead-letter builders: schema shape, untouched originals, and no PHI."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from worker.contracts.codec import Codec
from worker.contracts.codes import CriterionStatus, DecisionSource, InformationNeed, Outcome, PolicySelection
from worker.contracts.model import Claim, CriterionResult, Decision, Reject
from worker.contracts.registry import SCHEMAS_DIR
from worker.contracts.results import (
    MESSAGE_MAX_CHARS,
    NEED_MESSAGES,
    REJECT_MESSAGES,
    SourceCoordinates,
    build_dead_letter,
    build_rejected,
    build_result,
    ncpdp_answer,
)
from worker.errors import BadRecord, DeadLetterClass, DecodeError, InvalidClaim, MalformedClaim
from worker.policy import Facts, decide, default_policy
from worker.samples import poison_records, sample_claims

# The samples as they were first written (served 2025-03-10): fixed, not the wall clock.
SAMPLES_AT = datetime(2025, 3, 12, 14, 30, tzinfo=UTC)
CLAIMS = {sample.label: sample.claim for sample in sample_claims(SAMPLES_AT)}
SOURCE = SourceCoordinates("claims.v1", 5, 9_000_000_001)
NOW = datetime(2025, 3, 10, 14, 30, 5, tzinfo=UTC)
PHI_MEMBER = "PHIMEMBERSENTINEL"
PHI_FIRST = "PHIFIRSTSENTINEL"
PHI_LAST = "PHILASTSENTINEL"
PHI_DOB = date(1901, 2, 3)


@pytest.fixture(scope="module")
def raw_result_schemas():
    return {
        name: json.loads((SCHEMAS_DIR / name).read_text())
        for name in ("result.v2.avsc", "result.v3.avsc", "result.v4.avsc")
    }


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
                reason_code="ATTESTED_LOCALLY_ADVANCED",
                evidence=("C50.911",),
                explanation="Locally advanced disease does not meet criterion A.",
            ),
            CriterionResult(
                criterion_id="B",
                status=CriterionStatus.MET,
                reason_code="PRESCRIBER_IS_SPECIALIST",
                evidence=("207RX0202X",),
                explanation="Prescriber taxonomy is Medical Oncology.",
            ),
        ),
        rejects=(Reject(code="75"), Reject(code="3Y")),
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
        assert list(record) == _schema_fields("result.v4.avsc")

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
            "reason_code": "ATTESTED_LOCALLY_ADVANCED",
            "evidence": ["C50.911"],
            "explanation": "Locally advanced disease does not meet criterion A.",
            "needs": [],
        }
        assert record["event_time"] == claim.event_time
        assert record["ncpdp"]["response_status"] == "R"
        assert [r["code"] for r in record["ncpdp"]["rejects"]] == ["75", "3Y"]
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
        model = _decision()
        criterion_type = dataclasses.make_dataclass(
            "Criterion", list(CriterionResult.model_fields), frozen=True
        )
        plain_type = dataclasses.make_dataclass("PlainDecision", list(Decision.model_fields), frozen=True)
        plain = plain_type(
            **{
                **{name: getattr(model, name) for name in Decision.model_fields},
                "criteria": tuple(criterion_type(**dict(c)) for c in model.criteria),
            }
        )
        claim = CLAIMS["approve-codes"]
        expected = build_result(claim, model, source=SOURCE, worker_version="1")
        assert build_result(claim, plain, source=SOURCE, worker_version="1") == expected


POLICY = default_policy()


def _decide(claim, **options):
    return decide(claim, Facts(), POLICY, NOW, **options)


class TestResultV2:
    """The v2 record carries the PA number, product match, NCPDP answer, needs, source and versions."""

    def test_approval_carries_pa_number_product_and_answer_a(self, codec):
        """An approval has an 11-digit PA number, the matched NDC-11 and how it was read, and status A."""
        claim = CLAIMS["approve-ixempra-45mg-hyphenated"]
        record = build_result(claim, _decide(claim), source=SOURCE, worker_version="1")
        assert record["outcome"] == "APPROVED"
        assert len(record["authorization_number"]) == 11
        assert record["authorization_number"].isdigit()
        assert record["matched_product"] == {
            "code": "70020191101",
            "system": "NDC11",
            "reading": "NDC_5_4_2_HYPHENATED",
            "name": "IXEMPRA kit 45 mg (R-Pharm US)",
        }
        assert record["ncpdp"] == {"response_status": "A", "rejects": [], "messages": ["PA APPROVED"]}
        assert record["decision_source"] == "AUTOMATED_RULE"
        assert (record["policy_id"], record["policy_version"]) == ("IXEMPRA-PA", "2020.09-3")
        assert codec.decode_result(codec.encode_result(record)) == record

    def test_pended_lists_needs_and_short_messages(self, codec):
        """A pend lists its needs (closed set) and answers R with 75/39 and one short message per need."""
        claim = CLAIMS["pend-no-diagnosis"]
        record = build_result(claim, _decide(claim), source=SOURCE, worker_version="1")
        assert record["outcome"] == "PENDED"
        assert record["needs"] == ["DIAGNOSIS_CODE"]
        assert record["decision_source"] == "INFORMATION_MISSING"
        assert record["source_criteria"] == ["A"]
        answer = record["ncpdp"]
        assert answer["response_status"] == "R"
        assert [(r["code"], r["field"]) for r in answer["rejects"]] == [("75", None), ("39", "diagnoses")]
        assert answer["messages"] == [NEED_MESSAGES[InformationNeed.DIAGNOSIS_CODE]]
        assert codec.decode_result(codec.encode_result(record)) == record

    def test_referred_recommends_deny_with_3w(self, codec):
        """A referral answers R with 3W (PA in process) and carries the DENY recommendation for the reviewer."""
        claim = CLAIMS["deny-locally-advanced"]
        record = build_result(claim, _decide(claim), source=SOURCE, worker_version="1")
        assert (record["outcome"], record["recommendation"]) == ("REFERRED", "DENY")
        assert record["decision_source"] == "CRITERIA_NOT_MET"
        assert record["reject_codes"] == ["3W"]
        assert record["ncpdp"]["messages"] == ["PA IN CLINICAL REVIEW"]
        assert codec.decode_result(codec.encode_result(record))["outcome"] == "REFERRED"

    def test_not_applicable_has_no_ncpdp_answer(self):
        """NOT_APPLICABLE leaves the pharmacy answer to downstream adjudication: no status, rejects or text."""
        claim = CLAIMS["not-applicable-capecitabine"]
        record = build_result(claim, _decide(claim), source=SOURCE, worker_version="1")
        assert record["outcome"] == "NOT_APPLICABLE"
        assert record["ncpdp"] == {"response_status": None, "rejects": [], "messages": []}

    def test_every_fixed_message_is_short(self):
        """Every pharmacy message fits one 40-character line and is upper case."""
        for message in (*REJECT_MESSAGES.values(), *NEED_MESSAGES.values()):
            assert len(message) <= MESSAGE_MAX_CHARS
            assert message == message.upper()
        assert set(NEED_MESSAGES) == set(InformationNeed)
        for outcome in Outcome:
            answer = ncpdp_answer(outcome, (Reject(code="ZZ"),), tuple(InformationNeed))
            for line in [*answer["messages"], *(r["message"] for r in answer["rejects"])]:
                assert len(line) <= MESSAGE_MAX_CHARS

    def test_v1_result_reads_as_v2_with_defaults(self, codec):
        """A result written with the v1 schema decodes into v2 with every added field at its default."""
        from worker.config.settings import WireFormat  # noqa: PLC0415

        v1 = {
            "claim_id": "clm-1",
            "source_event_id": "evt-1",
            "transaction_code": "B1",
            "outcome": "DENIED",
            "criteria": [
                {
                    "criterion_id": "A",
                    "status": "NOT_MET",
                    "reason_code": "ATTESTED_EARLY",
                    "evidence": ["C50.911"],
                    "explanation": "x",
                }
            ],
            "reject_codes": ["75"],
            "authorization_effective": None,
            "authorization_expiration": None,
            "summary": "Denied.",
            "policy_id": "IXEMPRA-PA",
            "policy_version": "2020.09-1",
            "decided_at": NOW,
            "worker_version": "0.9",
            "source": SOURCE.as_record(),
        }
        for framing in WireFormat:
            writer = Codec(wire_format=framing)
            v1_schema = writer._families["result"].versions[1]
            decoded = codec.decode_result(writer._encode(v1_schema, v1))
            assert {k: decoded[k] for k in v1 if k != "criteria"} == {
                k: v for k, v in v1.items() if k != "criteria"
            }
            assert decoded["criteria"][0]["needs"] == []
            assert decoded["needs"] == []
            assert decoded["ncpdp"] == {"response_status": None, "rejects": [], "messages": []}
            assert decoded["event_time"] is None
            assert decoded["authorization_number"] is None
            assert decoded["decision_source"] == "AUTOMATED_RULE"
            assert decoded["reference_versions"] == {}


class TestResultV3:
    """Result v3 adds the ON_FILE decision source; v2 results still read, and v2 readers still read v3."""

    @staticmethod
    def _on_file_record():
        decision = Decision(
            outcome=Outcome.APPROVED,
            authorization_effective=date(2026, 11, 1),
            authorization_expiration=date(2027, 10, 31),
            authorization_number="12345678901",
            decision_source=DecisionSource.ON_FILE,
            policy_id="IXEMPRA-PA",
            policy_version="2020.09-2",
            decided_at=NOW,
            summary="Approved on file: prior authorization 12345678901.",
        )
        return build_result(CLAIMS["approve-codes"], decision, source=SOURCE, worker_version="t")

    def test_v3_differs_from_v2_only_by_the_on_file_symbol(self, raw_result_schemas):
        """v3 is v2 plus the DecisionSource symbol ON_FILE, and that enum has a default (the old-reader rule)."""
        v2, v3 = raw_result_schemas["result.v2.avsc"], raw_result_schemas["result.v3.avsc"]
        source_v2 = next(f for f in v2["fields"] if f["name"] == "decision_source")["type"]
        source_v3 = next(f for f in v3["fields"] if f["name"] == "decision_source")["type"]
        assert source_v3["symbols"] == [*source_v2["symbols"], "ON_FILE"]
        assert source_v2["default"] == source_v3["default"] == "AUTOMATED_RULE"
        strip = lambda s: [  # noqa: E731 - a local shape comparison
            {k: v for k, v in f.items() if k not in {"doc", "type"}} for f in s["fields"]
        ]
        assert strip(v2) == strip(v3)

    def test_an_on_file_result_round_trips_and_a_v2_reader_sees_the_default(self, codec):
        """The codec writes v3 (ON_FILE, PA number, window); a reader holding only v2 reads AUTOMATED_RULE, not an error."""
        import io  # noqa: PLC0415

        import fastavro  # noqa: PLC0415

        record = self._on_file_record()
        decoded = codec.decode_result(codec.encode_result(record))
        assert decoded["decision_source"] == "ON_FILE"
        assert decoded["authorization_number"] == "12345678901"
        assert (decoded["authorization_effective"], decoded["authorization_expiration"]) == (
            date(2026, 11, 1),
            date(2027, 10, 31),
        )
        family = codec._families["result"]
        assert family.current.file_name == "result.v4.avsc"
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, family.versions[3].parsed, record)
        buffer.seek(0)
        old = fastavro.schemaless_reader(buffer, family.versions[3].parsed, family.versions[2].parsed)
        assert old["decision_source"] == "AUTOMATED_RULE"
        assert old["authorization_number"] == "12345678901"

    def test_a_v2_result_still_reads(self, codec):
        """A result written with the v2 schema (before ON_FILE) decodes with the v3 codec, unchanged."""
        record = build_result(CLAIMS["approve-codes"], _decision(), source=SOURCE, worker_version="t")
        v2 = codec._families["result"].versions[2]
        decoded = codec.decode_result(codec._encode(v2, record))
        assert decoded["claim_id"] == record["claim_id"]
        assert decoded["decision_source"] == record["decision_source"]


class TestResultV4:
    """Result v4 adds policy_selection (why the version applied); v3 results still read, and v3 readers read v4."""

    def test_v4_is_v3_plus_the_optional_selection(self, raw_result_schemas):
        """v4 keeps every v3 field as it was and appends policy_selection, nullable with a null default."""
        v3, v4 = raw_result_schemas["result.v3.avsc"], raw_result_schemas["result.v4.avsc"]
        assert v4["fields"][:-1] == v3["fields"]
        added = v4["fields"][-1]
        assert (added["name"], added["default"], added["type"][0]) == ("policy_selection", None, "null")
        assert added["type"][1]["symbols"] == [member.value for member in PolicySelection]

    @pytest.mark.parametrize("selection", [*PolicySelection, None], ids=str)
    def test_the_selection_round_trips(self, codec, selection):
        """The codec writes v4: the selection the worker passed reads back; None reads back as null."""
        record = build_result(
            CLAIMS["approve-codes"], _decision(), source=SOURCE, worker_version="t", selection=selection
        )
        decoded = codec.decode_result(codec.encode_result(record))
        assert decoded["policy_selection"] == (None if selection is None else selection.value)
        assert codec._families["result"].current.file_name == "result.v4.avsc"

    def test_a_v3_result_reads_with_a_null_selection_and_a_v3_reader_reads_v4(self, codec):
        """A v3-written result decodes under v4 with policy_selection null; a v3 reader skips the new field."""
        import io  # noqa: PLC0415

        import fastavro  # noqa: PLC0415

        record = build_result(
            CLAIMS["approve-codes"],
            _decision(),
            source=SOURCE,
            worker_version="t",
            selection=PolicySelection.IN_EFFECT,
        )
        family = codec._families["result"]
        v3_record = {key: value for key, value in record.items() if key != "policy_selection"}
        decoded = codec.decode_result(codec._encode(family.versions[3], v3_record))
        assert decoded["policy_selection"] is None
        assert decoded["claim_id"] == record["claim_id"]
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, family.versions[4].parsed, record)
        buffer.seek(0)
        old = fastavro.schemaless_reader(buffer, family.versions[4].parsed, family.versions[3].parsed)
        assert "policy_selection" not in old
        assert old["policy_version"] == record["policy_version"]

    def test_a_rejected_answer_names_no_selection(self):
        """A malformed claim's REJECTED answer applied no version: its policy_selection is null."""
        error = MalformedClaim(
            "claim_id: ok",
            claim_id="C1",
            event_id="E1",
            transaction_code="B1",
            event_time=NOW,
            fields=("prescriber.npi",),
            reject_codes=("25",),
        )
        record = build_rejected(
            error,
            source=SOURCE,
            policy_id="IXEMPRA-PA",
            policy_version="2020.09-3",
            decided_at=NOW,
            worker_version="1",
        )
        assert record["policy_selection"] is None


class TestBuildRejected:
    """build_rejected answers a malformed claim with outcome REJECTED and its M/I reject codes."""

    def _error(self, **overrides):
        fields = {
            "claim_id": "clm-9",
            "event_id": "evt-9",
            "transaction_code": "B1",
            "fields": ("prescriber.npi", "diagnoses.1.code"),
            "reject_codes": ("25", "39"),
            "event_time": NOW,
        }
        fields.update(overrides)
        return MalformedClaim("prescriber.npi: npi_check_digit; diagnoses.1.code: icd10_format", **fields)

    def test_rejected_record(self, codec):
        """The record is REJECTED, answers R with 25 and 39 (occurrence 2 for the second diagnosis), FIELD_EDIT."""
        record = build_rejected(
            self._error(),
            source=SOURCE,
            policy_id="IXEMPRA-PA",
            policy_version="2020.09-2",
            decided_at=NOW,
            worker_version="1",
        )
        assert list(record) == _schema_fields("result.v4.avsc")
        assert record["outcome"] == "REJECTED"
        assert record["decision_source"] == "FIELD_EDIT"
        assert record["reject_codes"] == ["25", "39"]
        assert record["ncpdp"]["response_status"] == "R"
        assert [
            (r["code"], r["occurrence"], r["field"], r["message"]) for r in record["ncpdp"]["rejects"]
        ] == [
            ("25", None, "prescriber.npi", "M/I PRESCRIBER ID"),
            ("39", 2, "diagnoses.1.code", "M/I DIAGNOSIS CODE"),
        ]
        assert record["event_time"] == NOW
        assert codec.decode_result(codec.encode_result(record)) == record

    def test_unreadable_event_id_becomes_empty(self, codec):
        """A REJECTED claim whose event id is malformed still encodes, with an empty source_event_id."""
        record = build_rejected(
            self._error(event_id=None),
            source=SOURCE,
            policy_id="IXEMPRA-PA",
            policy_version="2020.09-2",
            decided_at=NOW,
            worker_version="1",
        )
        assert (record["source_event_id"], record["transaction_code"]) == ("", "B1")
        assert codec.decode_result(codec.encode_result(record))["outcome"] == "REJECTED"


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

    @pytest.mark.parametrize("index", range(len(poison_records(now=SAMPLES_AT))))
    def test_poison_records_dead_letter_byte_for_byte(self, codec, index):
        """Each poison record becomes a dead letter whose original value is byte-identical after a round trip."""
        key, value = poison_records(codec, SAMPLES_AT)[index]
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
