"""Codes are checked against ICD-10-CM, and unspecified or unclassified codes ask instead of being read as other."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tests.unit.claims import make_claim
from tests.unit.fakes import Rec
from worker.config.settings import load_settings
from worker.contracts import icd10cm
from worker.contracts.codec import Codec
from worker.contracts.codes import InformationNeed, Outcome
from worker.contracts.model import Diagnosis
from worker.policy import Facts, decide, default_policy
from worker.runtime.judge import Decider, judge
from worker.runtime.route import route
from worker.state.dedupe import SeenEvents

NOW = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)
CODEC = Codec()
SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
POLICY = default_policy()
ICD10CM = {"icd-10-cm": icd10cm.RELEASE}


def _raw(dx: tuple[str, ...], **overrides) -> dict:
    """A valid claim's raw fields with the given ICD-10 codes (not validated: they may be malformed)."""
    raw = make_claim().model_dump()
    raw["diagnoses"] = [{"code": code, "qualifier": "02"} for code in dx]
    raw.update(overrides)
    return raw


def _result(raw: dict) -> dict:
    """Run raw claim fields through the worker's decode -> decide -> result path; return the result record."""
    judgement = judge(
        Rec(CODEC.encode_claim(raw)),
        codec=CODEC,
        seen=SeenEvents(10),
        decided_at=NOW,
        decider=Decider(POLICY),
    )
    out = route(judgement, codec=CODEC, settings=SETTINGS, at=NOW)
    assert out.topic == SETTINGS.results_topic
    return CODEC.decode_result(out.value)


class TestCodeSet:
    """The ICD-10-CM code set the worker checks codes against."""

    def test_release_names_fiscal_year_and_effective_date(self):
        """The release reads FY<year>/<date>; the package's April 2026 file is FY2026 (releases start 1 October)."""
        assert re.fullmatch(r"FY[0-9]{4}/[0-9]{4}-[0-9]{2}-01", icd10cm.RELEASE)
        assert icd10cm.RELEASE == "FY2026/2026-04-01"

    @pytest.mark.parametrize(
        ("code", "exists", "billable"),
        [
            pytest.param("C50.911", True, True, id="C50.911-billable"),
            pytest.param("C50911", True, True, id="C50911-without-dot"),
            pytest.param("C50", True, False, id="C50-category-exists-not-billable"),
            pytest.param("C50.9", True, False, id="C50.9-subcategory-exists-not-billable"),
            pytest.param("C50.A1", True, True, id="C50.A1-inflammatory-FY2026"),
            pytest.param("C80.1", True, True, id="C80.1"),
            pytest.param("Z17.411", True, True, id="Z17.411-added-FY2025"),
            pytest.param("C5O.911", False, False, id="C5O.911-letter-O-for-zero"),
            pytest.param("C50.99", False, False, id="C50.99-no-such-subdivision"),
            pytest.param("C50.9111", False, False, id="C50.9111-one-character-too-many"),
            pytest.param("A00-A09", False, False, id="block-range-is-not-a-code"),
        ],
    )
    def test_code_exists_and_billable(self, code, exists, billable):
        """Codes and categories of the release exist (dot optional); blocks and unknown codes do not."""
        assert (icd10cm.code_exists(code), icd10cm.is_billable(code)) == (exists, billable)

    def test_diagnosis_model_rejects_an_unknown_code_by_rule_name_only(self):
        """The model refuses C5O.911 with rule icd10_unknown, a shape failure with icd10_format; no value in the message."""
        with pytest.raises(ValidationError) as unknown:
            Diagnosis.model_validate({"code": "C5O.911", "qualifier": "02"})
        with pytest.raises(ValidationError) as shape:
            Diagnosis.model_validate({"code": "50.911", "qualifier": "02"})
        assert [e["type"] for e in unknown.value.errors()] == ["icd10_unknown"]
        assert [e["type"] for e in shape.value.errors()] == ["icd10_format"]
        assert "C5O" not in str(unknown.value.errors(include_input=False))

    def test_other_qualifiers_are_not_checked_against_icd10cm(self):
        """An ICD-9 code (qualifier 01) is not an ICD-10-CM code and is not checked as one."""
        assert Diagnosis.model_validate({"code": "174.9", "qualifier": "01"}).code == "174.9"


class TestUnknownCodeIsRejected:
    """A code with qualifier 02 that exists in no ICD-10-CM category is M/I (39), through decode -> decide -> result."""

    @pytest.mark.parametrize(
        ("dx", "field", "occurrence"),
        [
            pytest.param(("C5O.911", "C78.7"), "diagnoses.0.code", 1, id="C5O.911-letter-O"),
            pytest.param(("C50.911", "C5O911"), "diagnoses.1.code", 2, id="C5O911-undotted-second"),
            pytest.param(("C50.99", "C78.7"), "diagnoses.0.code", 1, id="C50.99-no-such-code"),
            pytest.param(("C80.1", "C79.99"), "diagnoses.1.code", 2, id="C79.99-no-such-code"),
            pytest.param(("C50", "C78.7"), "diagnoses.0.code", 1, id="C50-category-is-incomplete"),
            pytest.param(("C50.911", "C78"), "diagnoses.1.code", 2, id="C78-category-is-incomplete"),
            pytest.param(("C50.9", "C79.9"), "diagnoses.0.code", 1, id="C50.9-subcategory-is-incomplete"),
            pytest.param(("Z85.3", "C77"), "diagnoses.1.code", 2, id="C77-category-is-incomplete"),
        ],
    )
    def test_rejected_with_39_on_the_field(self, dx, field, occurrence):
        """The result is REJECTED, reject 39 on the code's path and occurrence, names the release, decides nothing."""
        record = _result(_raw(dx))
        assert record["outcome"] == Outcome.REJECTED.value
        assert record["reject_codes"] == ["39"]
        assert [(r["code"], r["field"], r["occurrence"]) for r in record["ncpdp"]["rejects"]] == [
            ("39", field, occurrence)
        ]
        assert record["criteria"] == []
        assert record["reference_versions"] == ICD10CM
        assert "OTHER_PRIMARY_CANCER" not in str(record)

    @pytest.mark.parametrize(
        "dx",
        [
            pytest.param(("C50.911", "C78.7"), id="dotted"),
            pytest.param(("C50911", "C787"), id="undotted"),
            pytest.param(("C50.919", "C79.9"), id="unspecified-site-codes-are-complete"),
            pytest.param(("Z85.3", "C77.3"), id="history-and-regional-nodes-complete-codes"),
        ],
    )
    def test_existing_codes_are_decided_and_name_the_release(self, dx):
        """Complete codes of the release (dot optional) reach the policy; the result names the release."""
        record = _result(_raw(dx))
        assert record["outcome"] == Outcome.APPROVED.value
        assert record["reference_versions"] == ICD10CM

    def test_a_claim_without_icd10_codes_names_no_release(self):
        """No ICD-10 code read, no release recorded (the pend asks for the diagnosis)."""
        record = _result(_raw(()))
        assert record["outcome"] == Outcome.PENDED.value
        assert record["reference_versions"] == {}


def _decide(claim, **options):
    return decide(claim, Facts(), POLICY, NOW, **options)


class TestUnknownIsNotOther:
    """Unspecified codes ask for what they do not say; they never recommend a denial (default version)."""

    @pytest.mark.parametrize(
        ("dx", "status", "reason", "needs"),
        [
            pytest.param(
                ("C80.1", "C78.7"), None, "PRIMARY_SITE_UNSPECIFIED", ("PRIMARY_DIAGNOSIS",), id="C80.1+liver"
            ),
            pytest.param(
                ("C80.1",), None, "PRIMARY_SITE_UNSPECIFIED", ("PRIMARY_DIAGNOSIS",), id="C80.1-alone"
            ),
            pytest.param(
                ("C80.1", "C77.3"),
                None,
                "PRIMARY_SITE_UNSPECIFIED",
                ("PRIMARY_DIAGNOSIS",),
                id="C80.1+axillary",
            ),
            pytest.param(
                ("C80.1", "C34.90"),
                None,
                "PRIMARY_SITE_UNSPECIFIED",
                ("PRIMARY_DIAGNOSIS",),
                id="C80.1+lung-primary",
            ),
            pytest.param(
                ("C80.1", "C79.51"),
                "METASTATIC",
                "PRIMARY_SITE_UNSPECIFIED",
                ("PRIMARY_DIAGNOSIS",),
                id="C80.1+METASTATIC",
            ),
            pytest.param(
                ("C80.1",), "EARLY", "PRIMARY_SITE_UNSPECIFIED", ("PRIMARY_DIAGNOSIS",), id="C80.1+EARLY"
            ),
            pytest.param(
                ("C80.1", "C78.7"),
                "LOCALLY_ADVANCED",
                "PRIMARY_SITE_UNSPECIFIED",
                ("DISEASE_STATUS", "PRIMARY_DIAGNOSIS"),
                id="C80.1+distant+LOCALLY_ADVANCED-conflict",
            ),
            pytest.param(
                ("C50.911", "C80.1", "C78.7"),
                None,
                "SECONDARY_ORIGIN_UNCLEAR",
                ("DISEASE_STATUS",),
                id="C50+C80.1+liver",
            ),
            pytest.param(
                ("C80.0",), None, "PRIMARY_SITE_NOT_SHOWN", ("PRIMARY_DIAGNOSIS",), id="C80.0-disseminated"
            ),
            pytest.param(
                ("C79.9",),
                None,
                "PRIMARY_SITE_NOT_SHOWN",
                ("PRIMARY_DIAGNOSIS",),
                id="C79.9-unspecified-site",
            ),
            pytest.param(
                ("C77.9",),
                None,
                "PRIMARY_SITE_NOT_SHOWN",
                ("PRIMARY_DIAGNOSIS",),
                id="C77.9-nodes-unspecified",
            ),
            pytest.param(
                ("C50.919", "C77.9"),
                None,
                "DISEASE_STATUS_NEEDED",
                ("DISEASE_STATUS",),
                id="C50.919+C77.9-regional",
            ),
            pytest.param(
                ("D49.3",),
                None,
                "DIAGNOSIS_CODE_MISSING",
                ("DIAGNOSIS_CODE",),
                id="D49.3-unspecified-behaviour",
            ),
        ],
    )
    @pytest.mark.parametrize("denials", [False, True], ids=["review", "automated-denials"])
    def test_unspecified_codes_pend(self, dx, status, reason, needs, denials):
        """Each unspecified code pends for what it does not say, even when the plan allows automated denials."""
        decision = _decide(make_claim(dx=dx, status=status), automated_denials=denials)
        assert decision.outcome is Outcome.PENDED
        assert decision.recommendation is None
        a = decision.criteria[0]
        assert (a.reason_code, a.needs) == (reason, tuple(InformationNeed(n) for n in needs))

    @pytest.mark.parametrize(
        "dx",
        [
            pytest.param(("C50.919", "C79.9"), id="C50.919-unspecified-site+C79.9"),
            pytest.param(("C50.919", "C80.0"), id="C50.919+C80.0-disseminated"),
            pytest.param(("C50.929", "C78.7"), id="C50.929-male-unspecified-laterality"),
        ],
    )
    def test_unspecified_breast_site_is_still_a_breast_primary(self, dx):
        """C50.9x (site unspecified) is a breast primary: with a distant secondary it meets A."""
        decision = _decide(make_claim(dx=dx))
        assert decision.outcome is Outcome.APPROVED
        assert decision.criteria[0].reason_code == "METASTATIC_BY_CODES"

    def test_c80_1_result_through_the_worker_path(self):
        """C80.1 with a secondary, through decode -> decide -> result: PENDED, needs the primary, no 3W or 3Y."""
        record = _result(_raw(("C80.1", "C78.7")))
        assert record["outcome"] == Outcome.PENDED.value
        assert record["needs"] == ["PRIMARY_DIAGNOSIS"]
        assert record["recommendation"] is None
        assert not {"3W", "3Y"} & set(record["reject_codes"])


class TestUnclassifiedProducts:
    """A not-otherwise-classified HCPCS code may be ixabepilone: it pends for the product's identity."""

    @pytest.mark.parametrize(
        ("code", "qualifier"),
        [
            pytest.param("J9999", "09", id="J9999-antineoplastic-NOC"),
            pytest.param("J9999", "00", id="J9999-under-unspecified-qualifier"),
            pytest.param("J3490", "09", id="J3490-unclassified-drugs"),
            pytest.param("C9399", "09", id="C9399-unclassified-drugs-or-biologicals"),
        ],
    )
    def test_noc_codes_pend_for_product_identity(self, code, qualifier):
        """The NOC code is UNIDENTIFIED: PENDED with PRODUCT_IDENTITY and reject 21, never NOT_APPLICABLE."""
        decision = _decide(make_claim(ndc=code, qualifier=qualifier))
        assert decision.outcome is Outcome.PENDED
        assert decision.needs == (InformationNeed.PRODUCT_IDENTITY,)
        assert decision.reject_codes == ("21",)

    @pytest.mark.parametrize("code", ["J3590", "J8999", "J9171"])
    def test_other_hcpcs_codes_stay_other_products(self, code):
        """Biologicals NOC, oral chemotherapy NOS and docetaxel are not ixabepilone: NOT_APPLICABLE."""
        assert _decide(make_claim(ndc=code, qualifier="09")).outcome is Outcome.NOT_APPLICABLE

    def test_j9999_result_through_the_worker_path(self):
        """J9999 through decode -> decide -> result: PENDED for the product's identity."""
        record = _result(_raw(("C50.911", "C78.7"), product={"product_id": "J9999", "qualifier": "09"}))
        assert (record["outcome"], record["needs"]) == (Outcome.PENDED.value, ["PRODUCT_IDENTITY"])
