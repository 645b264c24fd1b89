"""Ixempra PA policy table tests: each row is a claim, the expected outcome and each criterion's reason."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.claims import CONSULTANT_NPI, NPIS, make_claim
from worker.contracts.model import CriterionStatus, Decision, Outcome
from worker.policy import decide, default_policy
from worker.policy.criteria import (
    DiseaseStageRule,
    SpecialistRule,
    prescribed_by_or_with_specialist,
    recurrent_or_metastatic,
)
from worker.policy.window import approval_window

DECIDED_AT = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)
ONCOLOGY = ("207RX0202X", "207RH0003X", "2086X0206X", "2085R0001X", "207VX0201X", "2080P0207X")
MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
OUTCOME_FOR_A = {MET: Outcome.APPROVED, NOT_MET: Outcome.DENIED, UNKNOWN: Outcome.PENDED}


def _criterion(decision: Decision, criterion_id: str) -> tuple[CriterionStatus, str]:
    (result,) = [c for c in decision.criteria if c.criterion_id == criterion_id]
    return result.status, result.reason_code


def _a(
    dx: tuple[str | tuple[str, str], ...],
    status: str | None,
    expected: CriterionStatus,
    reason: str,
    rid: str,
):
    return pytest.param({"dx": dx, "status": status}, expected, reason, id=rid)


CRITERION_A_CASES = [
    # Metastatic by codes: a breast code (C50* or Z85.3) plus a distant secondary (C78/C79 but C79.81, C80.0).
    _a(("C50.911", "C78.7"), None, MET, "METASTATIC_BY_CODES", "A-met:C50+C78.7-metastatic-by-codes"),
    _a(("C78.01", "Z17.0", "C50.912"), None, MET, "METASTATIC_BY_CODES", "A-met:secondary-listed-before-C50"),
    _a(("Z85.3", "C79.51"), None, MET, "METASTATIC_BY_CODES", "A-met:Z85.3-history+C79.51-bone"),
    _a(("C50.919", "C80.0"), None, MET, "METASTATIC_BY_CODES", "A-met:C50+C80.0-disseminated"),
    _a(("C50.A1", "C79.31"), None, MET, "METASTATIC_BY_CODES", "A-met:C50.A1-inflammatory+C79.31-brain"),
    _a(("C50911", "C787"), None, MET, "METASTATIC_BY_CODES", "A-met:undotted-C50911+C787-normalised"),
    _a((" c50.911 ", "c79.9"), None, MET, "METASTATIC_BY_CODES", "A-met:lower-case-and-spaces-normalised"),
    _a(("C50.921", "C79.52"), None, MET, "METASTATIC_BY_CODES", "A-met:male-breast-C50.921+bone-marrow"),
    _a(
        ("C34.90", "C50.911", "C78.7"), None, MET, "METASTATIC_BY_CODES", "A-met:other-primary-does-not-block"
    ),
    _a(
        (("174.9", "01"), "C50.911", "C78.7"),
        None,
        MET,
        "METASTATIC_BY_CODES",
        "A-met:ICD-9-ignored-ICD-10-decides",
    ),
    _a(
        ("C50.911", "C78.7"),
        "RECURRENT",
        MET,
        "METASTATIC_BY_CODES",
        "A-met:codes-metastatic+RECURRENT-attested",
    ),
    # Recurrence inferred from history (a heuristic, reported as such).
    _a(
        ("Z85.3", "C50.912"),
        None,
        MET,
        "RECURRENCE_INFERRED_FROM_HISTORY",
        "A-met:Z85.3+C50-recurrence-inferred",
    ),
    _a(
        ("C77.3", "Z85.3"),
        None,
        MET,
        "RECURRENCE_INFERRED_FROM_HISTORY",
        "A-met:Z85.3+C77.3-recurrence-inferred",
    ),
    # Attested status with a breast code.
    _a(("C50.911",), "METASTATIC", MET, "ATTESTED_METASTATIC", "A-met:C50+METASTATIC-attested"),
    _a(("Z85.3",), "RECURRENT", MET, "ATTESTED_RECURRENT", "A-met:Z85.3+RECURRENT-attested"),
    _a(("C50.911", "C77.3"), "RECURRENT", MET, "ATTESTED_RECURRENT", "A-met:C50+C77.3+RECURRENT-attested"),
    _a(("C50.911",), "EARLY", NOT_MET, "ATTESTED_EARLY", "A-not-met:C50+EARLY-attested"),
    _a(
        ("C50.911", "C77.3"),
        "LOCALLY_ADVANCED",
        NOT_MET,
        "ATTESTED_LOCALLY_ADVANCED",
        "A-not-met:C50+C77+LA-attested",
    ),
    _a(
        ("Z85.3", "C50.911"),
        "LOCALLY_ADVANCED",
        NOT_MET,
        "ATTESTED_LOCALLY_ADVANCED",
        "A-not-met:attested-LA-beats-history-inference",
    ),
    _a((), "EARLY", NOT_MET, "ATTESTED_EARLY", "A-not-met:no-codes+EARLY-attested"),
    _a(
        ("C77.3",), "LOCALLY_ADVANCED", NOT_MET, "ATTESTED_LOCALLY_ADVANCED", "A-not-met:C77-only+LA-attested"
    ),
    # Attestation conflicts with codes that show distant disease: ask.
    _a(
        ("C50.911", "C78.7"),
        "EARLY",
        UNKNOWN,
        "ATTESTATION_CONFLICTS_WITH_CODES",
        "A-unknown:C50+C78.7+EARLY-conflict",
    ),
    _a(
        ("Z85.3", "C79.51"),
        "LOCALLY_ADVANCED",
        UNKNOWN,
        "ATTESTATION_CONFLICTS_WITH_CODES",
        "A-unknown:Z85.3+C79.51+LA-conflict",
    ),
    _a(
        ("C78.7",),
        "EARLY",
        UNKNOWN,
        "ATTESTATION_CONFLICTS_WITH_CODES",
        "A-unknown:C78.7-only+EARLY-conflict",
    ),
    # Breast codes that cannot tell the stage apart: ask for the disease status.
    _a(("C50.911",), None, UNKNOWN, "DISEASE_STATUS_NEEDED", "A-unknown:C50-alone-needs-disease-status"),
    _a(
        ("C50.911", "C77.3"),
        None,
        UNKNOWN,
        "DISEASE_STATUS_NEEDED",
        "A-unknown:C50+C77-regional-nodes-not-distant",
    ),
    _a(("C50.911",), "UNKNOWN", UNKNOWN, "DISEASE_STATUS_NEEDED", "A-unknown:C50+attestation-UNKNOWN"),
    _a(("Z85.3",), None, UNKNOWN, "DISEASE_STATUS_NEEDED", "A-unknown:Z85.3-history-alone"),
    _a(("C50.911", "C79.81"), None, UNKNOWN, "DISEASE_STATUS_NEEDED", "A-unknown:C50+C79.81-is-not-distant"),
    _a(
        ("Z85.3", "D05.11"),
        None,
        UNKNOWN,
        "DISEASE_STATUS_NEEDED",
        "A-unknown:in-situ-does-not-infer-recurrence",
    ),
    # Secondaries without a breast primary do not prove breast cancer.
    _a(("C78.7",), None, UNKNOWN, "PRIMARY_SITE_NOT_SHOWN", "A-unknown:C78.7-no-breast-primary"),
    _a(
        ("C79.51",),
        "METASTATIC",
        UNKNOWN,
        "PRIMARY_SITE_NOT_SHOWN",
        "A-unknown:secondary+METASTATIC-no-primary",
    ),
    _a(("C77.3",), None, UNKNOWN, "PRIMARY_SITE_NOT_SHOWN", "A-unknown:C77.3-nodes-no-primary"),
    _a(("C79.81", "C78.7"), None, UNKNOWN, "PRIMARY_SITE_NOT_SHOWN", "A-unknown:C79.81+C78.7-no-primary"),
    # Not breast cancer.
    _a(("C79.81",), None, NOT_MET, "METASTASIS_TO_SITE_ONLY", "A-not-met:C79.81-alone-metastasis-TO-breast"),
    _a(("C79.81",), "METASTATIC", NOT_MET, "METASTASIS_TO_SITE_ONLY", "A-not-met:C79.81+METASTATIC-attested"),
    _a(("C79.81", "C34.90"), None, NOT_MET, "OTHER_PRIMARY_CANCER", "A-not-met:C79.81+lung-primary"),
    _a(("C34.90", "C78.7"), None, NOT_MET, "OTHER_PRIMARY_CANCER", "A-not-met:lung-primary+liver-secondary"),
    _a(("C80.1",), None, NOT_MET, "OTHER_PRIMARY_CANCER", "A-not-met:C80.1-primary-unspecified-not-breast"),
    _a(
        ("C18.9",),
        "METASTATIC",
        NOT_MET,
        "OTHER_PRIMARY_CANCER",
        "A-not-met:colon-primary+METASTATIC-attested",
    ),
    _a(("D05.11",), None, NOT_MET, "IN_SITU_ONLY", "A-not-met:D05.11-in-situ-only"),
    _a(
        ("D05.10", "Z17.0"),
        "METASTATIC",
        NOT_MET,
        "IN_SITU_ONLY",
        "A-not-met:in-situ+Z17-receptor-decides-nothing",
    ),
    # No usable diagnosis code.
    _a((), None, UNKNOWN, "DIAGNOSIS_CODE_MISSING", "A-unknown:no-codes-no-attestation"),
    _a((), "METASTATIC", UNKNOWN, "DIAGNOSIS_CODE_MISSING", "A-unknown:METASTATIC-attested-without-any-code"),
    _a(("Z17.0", "Z17.421"), None, UNKNOWN, "DIAGNOSIS_CODE_MISSING", "A-unknown:Z17-receptor-status-only"),
    _a(
        (("174.9", "01"),),
        None,
        UNKNOWN,
        "DIAGNOSIS_CODE_MISSING",
        "A-unknown:only-ICD-9-qualifier-01-ignored",
    ),
    _a(
        (("C50.911", "01"), ("C78.7", "01")),
        None,
        UNKNOWN,
        "DIAGNOSIS_CODE_MISSING",
        "A-unknown:C50-under-qualifier-01",
    ),
    _a(("I10", "E11.9"), None, UNKNOWN, "DIAGNOSIS_CODE_MISSING", "A-unknown:unrelated-codes-only"),
]


@pytest.mark.parametrize(("overrides", "expected", "reason"), CRITERION_A_CASES)
def test_criterion_a(overrides, expected, reason):
    """Criterion A (recurrent or metastatic breast cancer) reads codes and attestation as the lead decided."""
    decision = decide(make_claim(**overrides), DECIDED_AT)
    assert _criterion(decision, "A") == (expected, reason)
    assert _criterion(decision, "B") == (MET, "PRESCRIBER_IS_SPECIALIST")
    assert decision.outcome is OUTCOME_FOR_A[expected]


def _b(taxonomy: str | None, consult: dict | None, expected: CriterionStatus, reason: str, rid: str):
    return pytest.param({"taxonomy": taxonomy, "consult": consult}, expected, reason, id=rid)


CRITERION_B_CASES = [
    *(
        _b(code, None, MET, "PRESCRIBER_IS_SPECIALIST", f"B-met:prescriber-{code}-physician-oncology")
        for code in ONCOLOGY
    ),
    _b(
        "207RX0202X",
        {"status": "NO"},
        MET,
        "PRESCRIBER_IS_SPECIALIST",
        "B-met:oncologist-needs-no-consultation",
    ),
    _b(
        "207Q00000X",
        {"status": "YES", "consultant_taxonomy": "207RX0202X"},
        MET,
        "CONSULTANT_IS_SPECIALIST",
        "B-met:family-medicine+consultation-YES-with-medical-oncologist",
    ),
    _b(
        None,
        {"status": "YES", "consultant_taxonomy": "2085R0001X", "consultant_npi": CONSULTANT_NPI},
        MET,
        "CONSULTANT_IS_SPECIALIST",
        "B-met:unknown-specialty+consultation-YES-with-radiation-oncologist",
    ),
    _b(
        "207R00000X",
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        MET,
        "CONSULTATION_ATTESTED",
        "B-met:consultation-YES-consultant-NPI-only-attested",
    ),
    _b(
        "207Q00000X",
        {"status": "YES", "consultant_taxonomy": "163WX0200X"},
        NOT_MET,
        "CONSULTANT_NOT_SPECIALIST",
        "B-not-met:consultant-is-RN-oncology-not-a-physician",
    ),
    _b(
        None,
        {"status": "YES", "consultant_taxonomy": "207RH0000X", "consultant_npi": CONSULTANT_NPI},
        NOT_MET,
        "CONSULTANT_NOT_SPECIALIST",
        "B-not-met:consultant-is-hematology-not-oncology",
    ),
    _b(
        "207Q00000X",
        {"status": "NO"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:family-medicine+consultation-NO",
    ),
    _b(
        "207RH0000X",
        {"status": "NO"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:hematology-is-not-oncology+consultation-NO",
    ),
    _b(
        "364SX0200X",
        {"status": "NO"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:CNS-oncology-not-a-physician+consultation-NO",
    ),
    _b(
        "1835X0200X",
        {"status": "NO"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:oncology-pharmacist+consultation-NO",
    ),
    _b(
        "2085R0202X",
        {"status": "NO"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:trap-2085R0202X-is-diagnostic-radiology",
    ),
    _b(
        "207Q00000X",
        {"status": "NO", "consultant_taxonomy": "207RX0202X"},
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "B-not-met:consultant-named-but-consultation-NO-is-ignored",
    ),
    _b(
        "207Q00000X",
        {"status": "YES"},
        UNKNOWN,
        "CONSULTANT_NOT_IDENTIFIED",
        "B-unknown:consultation-YES-without-consultant-NPI-or-taxonomy",
    ),
    _b(
        None,
        {"status": "NO"},
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_UNKNOWN",
        "B-unknown:consultation-NO+specialty-unknown",
    ),
    _b(
        None,
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_UNKNOWN",
        "B-unknown:specialty-unknown+no-consultation-info",
    ),
    _b(
        "207RH0000X", None, UNKNOWN, "CONSULTATION_STATUS_NEEDED", "B-unknown:hematology-no-consultation-info"
    ),
    _b(
        "207R00000X",
        {"status": "UNKNOWN"},
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "B-unknown:consultation-UNKNOWN",
    ),
    _b(
        "2080P0203X",
        None,
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "B-unknown:trap-2080P0203X-is-critical-care",
    ),
    _b(
        "261QX0200X",
        None,
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "B-unknown:oncology-clinic-is-not-a-physician",
    ),
    _b(
        "207Q00000X",
        {"status": "UNKNOWN", "consultant_taxonomy": "207RX0202X"},
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "B-unknown:consultant-named-but-status-UNKNOWN-is-not-YES",
    ),
]


@pytest.mark.parametrize(("overrides", "expected", "reason"), CRITERION_B_CASES)
def test_criterion_b(overrides, expected, reason):
    """Criterion B (prescribed by or in consultation with a physician oncologist) follows the lead's table."""
    decision = decide(make_claim(**overrides), DECIDED_AT)
    assert _criterion(decision, "A") == (MET, "METASTATIC_BY_CODES")
    assert _criterion(decision, "B") == (expected, reason)
    assert decision.outcome is OUTCOME_FOR_A[expected]


COMBINATION_CASES = [
    pytest.param({}, Outcome.APPROVED, (), MET, MET, id="approve:A-met+B-met-no-reject-codes"),
    pytest.param(
        {"dx": ("C50.911",), "status": "EARLY", "taxonomy": None},
        Outcome.DENIED,
        ("75",),
        NOT_MET,
        UNKNOWN,
        id="deny:A-not-met+B-unknown-any-NOT_MET-denies",
    ),
    pytest.param(
        {"dx": ("C50.911",), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.DENIED,
        ("75",),
        UNKNOWN,
        NOT_MET,
        id="deny:A-unknown+B-not-met",
    ),
    pytest.param(
        {"dx": ("C34.90",), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.DENIED,
        ("75",),
        NOT_MET,
        NOT_MET,
        id="deny:both-not-met",
    ),
    pytest.param(
        {"dx": (), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.DENIED,
        ("75",),
        UNKNOWN,
        NOT_MET,
        id="deny:missing-diagnosis-but-B-not-met-no-39",
    ),
    pytest.param(
        {"dx": ("C50.911",)},
        Outcome.PENDED,
        ("75",),
        UNKNOWN,
        MET,
        id="pend:A-needs-disease-status-reject-75-only",
    ),
    pytest.param(
        {"dx": ()}, Outcome.PENDED, ("75", "39"), UNKNOWN, MET, id="pend:A-no-diagnosis-code-reject-75+39"
    ),
    pytest.param(
        {"dx": (("174.9", "01"),)},
        Outcome.PENDED,
        ("75", "39"),
        UNKNOWN,
        MET,
        id="pend:only-ICD-9-code-reject-75+39",
    ),
    pytest.param(
        {"dx": (), "taxonomy": None},
        Outcome.PENDED,
        ("75", "39"),
        UNKNOWN,
        UNKNOWN,
        id="pend:no-dx+no-specialty-75+39",
    ),
    pytest.param(
        {"dx": ("C78.7",), "taxonomy": "207RH0000X"},
        Outcome.PENDED,
        ("75",),
        UNKNOWN,
        UNKNOWN,
        id="pend:primary-not-shown+consultation-unknown-75-only",
    ),
    pytest.param({"taxonomy": None}, Outcome.PENDED, ("75",), MET, UNKNOWN, id="pend:A-met+B-unknown"),
]


@pytest.mark.parametrize(("overrides", "outcome", "rejects", "a_status", "b_status"), COMBINATION_CASES)
def test_outcome_and_reject_codes(overrides, outcome, rejects, a_status, b_status):
    """APPROVED needs every criterion MET, any NOT_MET denies (75), else PENDED (75, plus 39 with no usable code)."""
    decision = decide(make_claim(**overrides), DECIDED_AT)
    assert decision.outcome is outcome
    assert decision.reject_codes == rejects
    assert [c.status for c in decision.criteria] == [a_status, b_status]
    assert (decision.authorization_effective is not None) is (outcome is Outcome.APPROVED)
    assert (decision.authorization_expiration is not None) is (outcome is Outcome.APPROVED)


@pytest.mark.parametrize(
    ("ndc", "qualifier"),
    [
        pytest.param("00093-7474-89", "03", id="NA:capecitabine-Teva-11-digit"),
        pytest.param("0093-7474-89", "03", id="NA:capecitabine-Teva-4-4-2"),
        pytest.param("0093747489", "03", id="NA:capecitabine-Teva-unhyphenated-10"),
        pytest.param("31722-775-12", "03", id="NA:capecitabine-Camber-5-3-2"),
        pytest.param("31722077512", "03", id="NA:capecitabine-Camber-11-digit"),
        pytest.param("68817-134-50", "03", id="NA:Abraxane-5-3-2"),
        pytest.param("0409-0365-01", "03", id="NA:docetaxel-4-4-2"),
        pytest.param("68083-592-01", "03", id="NA:eribulin-5-3-2"),
        pytest.param("63020-390-02", "03", id="NA:ixazomib-name-trap-5-3-2"),
        pytest.param("63020039002", "03", id="NA:ixazomib-name-trap-11-digit"),
        pytest.param("00015-1910-12", "03", id="NA:unverified-BMS-era-15mg-not-listed"),
        pytest.param("0015-1911-13", "03", id="NA:unverified-BMS-era-45mg-not-listed"),
        pytest.param("70020-1912-01", "03", id="NA:neighbouring-product-code"),
        pytest.param("70021-1910-01", "03", id="NA:neighbouring-labeler"),
        pytest.param("70020191001", "07", id="NA:Ixempra-digits-but-qualifier-not-NDC"),
    ],
)
def test_not_applicable_products(ndc, qualifier):
    """Claims for any product other than an Ixempra NDC get NOT_APPLICABLE, with no criteria and no reject codes."""
    decision = decide(make_claim(ndc=ndc, qualifier=qualifier), DECIDED_AT)
    assert decision.outcome is Outcome.NOT_APPLICABLE
    assert decision.criteria == ()
    assert decision.reject_codes == ()
    assert decision.authorization_effective is None
    assert "does not apply" in decision.summary


@pytest.mark.parametrize(
    "ndc",
    [
        pytest.param("70020191001", id="Ixempra-15mg-11-digit"),
        pytest.param("70020-1910-01", id="Ixempra-15mg-5-4-2"),
        pytest.param("70020-1910-1", id="Ixempra-15mg-5-4-1-padded"),
        pytest.param("7002019101", id="Ixempra-15mg-unhyphenated-10-read-as-5-4-1"),
        pytest.param("70020191101", id="Ixempra-45mg-11-digit"),
        pytest.param("70020-1911-01", id="Ixempra-45mg-5-4-2"),
        pytest.param("70020-1911-1", id="Ixempra-45mg-5-4-1-padded"),
        pytest.param("70020-1911-13", id="Ixempra-45mg-any-package-code"),
        pytest.param("7002-01910-01", id="Ixempra-odd-hyphenation-read-by-digits"),
    ],
)
def test_ixempra_ndc_forms_are_decided(ndc):
    """Every accepted spelling of an Ixempra NDC reaches the criteria."""
    assert decide(make_claim(ndc=ndc), DECIDED_AT).outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="B2-of-an-approvable-Ixempra-claim"),
        pytest.param({"dx": ()}, id="B2-without-diagnosis"),
        pytest.param({"ndc": "00093-7474-89"}, id="B2-of-another-drug"),
    ],
)
def test_b2_reversal_is_reversed(overrides):
    """A B2 reversal is REVERSED whatever the product: no PA decision, no criteria, no reject codes, no window."""
    decision = decide(make_claim(tx="B2", **overrides), DECIDED_AT)
    assert decision.outcome is Outcome.REVERSED
    assert decision.criteria == ()
    assert decision.reject_codes == ()
    assert decision.authorization_effective is None
    assert decision.authorization_expiration is None
    assert "clm-0000" in decision.summary


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        pytest.param({}, Outcome.APPROVED, id="B3-approvable-is-approved"),
        pytest.param({"dx": ("C79.81",)}, Outcome.DENIED, id="B3-not-breast-is-denied"),
        pytest.param({"dx": ("C50.911",)}, Outcome.PENDED, id="B3-needs-status-is-pended"),
        pytest.param({"ndc": "68817-134-50"}, Outcome.NOT_APPLICABLE, id="B3-other-drug-not-applicable"),
    ],
)
def test_b3_rebill_is_decided_like_b1(overrides, outcome):
    """A B3 rebill is decided afresh, exactly as the same claim sent as B1."""
    rebill = decide(make_claim(tx="B3", **overrides), DECIDED_AT)
    billing = decide(make_claim(tx="B1", **overrides), DECIDED_AT)
    assert rebill.outcome is outcome
    assert rebill == billing


@pytest.mark.parametrize(
    ("dos", "expiration"),
    [
        pytest.param(date(2025, 3, 10), date(2026, 3, 9), id="window:ordinary-day"),
        pytest.param(date(2024, 2, 29), date(2025, 2, 28), id="window:leap-day-anniversary-is-Mar-1"),
        pytest.param(date(2023, 3, 1), date(2024, 2, 29), id="window:ends-on-leap-day"),
        pytest.param(date(2024, 3, 1), date(2025, 2, 28), id="window:Mar-1-in-leap-year"),
        pytest.param(date(2023, 2, 28), date(2024, 2, 27), id="window:Feb-28-before-leap-year"),
        pytest.param(date(2024, 1, 1), date(2024, 12, 31), id="window:Jan-1-ends-Dec-31"),
        pytest.param(date(2023, 12, 31), date(2024, 12, 30), id="window:year-end"),
        pytest.param(date(2025, 1, 31), date(2026, 1, 30), id="window:month-end-31"),
        pytest.param(date(2025, 4, 30), date(2026, 4, 29), id="window:month-end-30"),
    ],
)
def test_approval_window(dos, expiration):
    """An approval runs from the date of service through the day before its anniversary, both inclusive."""
    decision = decide(make_claim(dos=dos), DECIDED_AT)
    assert decision.outcome is Outcome.APPROVED
    assert decision.authorization_effective == dos
    assert decision.authorization_expiration == expiration
    assert f"{dos.isoformat()} through {expiration.isoformat()}" in decision.summary


@pytest.mark.parametrize(
    "decided_at",
    [
        pytest.param(
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5))), id="past-offset"
        ),
        pytest.param(datetime(2031, 1, 1, tzinfo=UTC), id="future-utc"),
    ],
)
def test_decided_at_is_echoed_not_read_from_a_clock(decided_at):
    """The decision time is the argument, unchanged, and the window depends only on the date of service."""
    decision = decide(make_claim(dos=date(2025, 3, 10)), decided_at)
    assert decision.decided_at == decided_at
    assert decision.decided_at.utcoffset() == decided_at.utcoffset()
    assert decision.authorization_effective == date(2025, 3, 10)


@pytest.mark.parametrize(("overrides", "expected", "reason"), [*CRITERION_A_CASES, *CRITERION_B_CASES])
def test_reason_codes_are_a_closed_upper_snake_set(overrides, expected, reason):
    """Every reason code a table row produces is UPPER_SNAKE and in the policy's declared closed set."""
    decision = decide(make_claim(**overrides), DECIDED_AT)
    assert reason in default_policy().reason_codes
    for criterion in decision.criteria:
        assert re.fullmatch(r"[A-Z][A-Z_]*[A-Z]", criterion.reason_code)
        assert criterion.reason_code in default_policy().reason_codes


def test_every_decision_names_the_policy_and_version():
    """Each outcome carries the policy id and version of the data file that decided it."""
    policy = default_policy()
    for claim in (make_claim(), make_claim(dx=()), make_claim(tx="B2"), make_claim(ndc="00093-7474-89")):
        decision = decide(claim, DECIDED_AT)
        assert (decision.policy_id, decision.policy_version) == ("IXEMPRA-PA", "2020.09-1")
        assert (decision.policy_id, decision.policy_version) == (policy.policy_id, policy.version)


def test_evidence_and_explanations_name_what_decided():
    """Evidence lists the deciding codes (dotted), the attestation, taxonomies and the ignored codes."""
    decision = decide(make_claim(dx=(("174.9", "01"), "C50911", "C787"), status="METASTATIC"), DECIDED_AT)
    a, b = decision.criteria
    assert a.evidence == (
        "C50.911",
        "C78.7",
        "attested disease status METASTATIC",
        "ignored 174.9 (qualifier 01): not ICD-10",
    )
    assert "C50.911" in a.explanation
    assert "C78.7" in a.explanation
    assert b.evidence == ("prescriber taxonomy 207RX0202X",)
    assert "Medical Oncology" in b.explanation


def test_inferred_recurrence_says_it_is_an_inference():
    """A recurrence read from Z85.3 history plus a new C50 code is reported as an inference."""
    a = decide(make_claim(dx=("Z85.3", "C50.912")), DECIDED_AT).criteria[0]
    assert a.reason_code == "RECURRENCE_INFERRED_FROM_HISTORY"
    assert "inference" in a.explanation
    assert a.evidence == ("Z85.3", "C50.912")


@pytest.mark.parametrize(
    ("overrides", "needed"),
    [
        pytest.param({"dx": ("C50.911",)}, "disease status", id="pended-says-disease-status-needed"),
        pytest.param({"dx": ()}, "diagnosis code", id="pended-says-diagnosis-code-needed"),
        pytest.param({"dx": ("C78.7",)}, "primary diagnosis", id="pended-says-primary-diagnosis-needed"),
        pytest.param(
            {"taxonomy": "207Q00000X"}, "in consultation with an oncologist", id="pended-says-consultation"
        ),
        pytest.param({"taxonomy": None}, "prescriber's specialty", id="pended-says-specialty-needed"),
        pytest.param(
            {"consult": {"status": "YES"}, "taxonomy": None},
            "consulting physician",
            id="pended-says-consultant",
        ),
        pytest.param(
            {"dx": ("C50.911", "C78.7"), "status": "EARLY"}, "clarified", id="pended-says-clarify-conflict"
        ),
    ],
)
def test_pended_summary_says_what_is_missing(overrides, needed):
    """A PENDED decision's summary names the UNKNOWN criterion and what information would settle it."""
    decision = decide(make_claim(**overrides), DECIDED_AT)
    assert decision.outcome is Outcome.PENDED
    assert needed in decision.summary
    assert "UNKNOWN" in decision.summary


PHI = {"member_id": "MBRSENTINEL42", "first_name": "FIRSTSENTINEL", "last_name": "LASTSENTINEL"}
PHI_DOB = date(1901, 2, 3)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="approved"),
        pytest.param({"dx": ("C34.90",)}, id="denied"),
        pytest.param({"dx": ()}, id="pended"),
        pytest.param({"ndc": "00093-7474-89"}, id="not-applicable"),
        pytest.param({"tx": "B2"}, id="reversed"),
    ],
)
def test_no_phi_in_decision(overrides):
    """No member id, name or date of birth appears in any Decision dump, repr or str."""
    patient = {**PHI, "date_of_birth": PHI_DOB.isoformat()}
    decision = decide(make_claim(patient=patient, **overrides), DECIDED_AT)
    renderings = [
        decision.model_dump_json(),
        str(decision.model_dump()),
        repr(decision),
        str(decision),
        *(repr(c) for c in decision.criteria),
    ]
    for text in renderings:
        for sentinel in (*PHI.values(), PHI_DOB.isoformat(), "19010203", "1901"):
            assert sentinel not in text


POLICY = default_policy()
RULE_A = next(c for c in POLICY.criteria if isinstance(c, DiseaseStageRule))
RULE_B = next(c for c in POLICY.criteria if isinstance(c, SpecialistRule))
CODE_POOL = (
    "C50.911", "C50912", "C50.A1", "Z85.3", "C77.3", "C78.7", "C79.51", "C79.81", "C80.0", "C80.1",
    "C34.90", "D05.11", "Z17.0", "I10",
)  # fmt: skip
TAXONOMY_POOL = (*ONCOLOGY[:2], "207RH0000X", "207Q00000X", "163WX0200X", None)


@st.composite
def claims(draw):
    """Draw a claim from the interesting corners: codes, qualifiers, attestation, taxonomy, product, transaction."""
    dx = tuple(
        draw(st.sampled_from([code, (code, "01")]))
        for code in draw(st.lists(st.sampled_from(CODE_POOL), max_size=4))
    )
    status = draw(st.sampled_from([None, "UNKNOWN", "EARLY", "LOCALLY_ADVANCED", "RECURRENT", "METASTATIC"]))
    consult = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"status": st.sampled_from(["YES", "NO", "UNKNOWN"])},
                optional={
                    "consultant_taxonomy": st.sampled_from([t for t in TAXONOMY_POOL if t]),
                    "consultant_npi": st.sampled_from(NPIS),
                },
            ),
        )
    )
    return make_claim(
        dx=dx,
        status=status,
        consult=consult,
        taxonomy=draw(st.sampled_from(TAXONOMY_POOL)),
        ndc=draw(st.sampled_from(["70020-1910-01", "7002019101", "70020191101", "00093-7474-89"])),
        tx=draw(st.sampled_from(["B1", "B2", "B3"])),
        dos=draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))),
    )


@settings(max_examples=300, deadline=None)
@given(claim=claims())
def test_decision_invariants(claim):
    """Whatever the claim, outcome, criteria, reject codes and window agree with each other and with the rules."""
    decision = decide(claim, DECIDED_AT)
    assert decision.decided_at == DECIDED_AT
    assert (decision.policy_id, decision.policy_version) == ("IXEMPRA-PA", "2020.09-1")
    if decision.outcome in {Outcome.REVERSED, Outcome.NOT_APPLICABLE}:
        assert (decision.criteria, decision.reject_codes) == ((), ())
        assert decision.outcome is not Outcome.REVERSED or claim.transaction_code == "B2"
        return
    assert claim.transaction_code != "B2"
    assert [c.criterion_id for c in decision.criteria] == ["A", "B"]
    statuses = {c.status for c in decision.criteria}
    for criterion in decision.criteria:
        assert criterion.reason_code in POLICY.reason_codes
        assert criterion.explanation
        assert " a oncologist" not in criterion.explanation
    if statuses == {MET}:
        assert decision.outcome is Outcome.APPROVED
        assert decision.reject_codes == ()
        window = approval_window(claim.date_of_service, 1)
        assert (decision.authorization_effective, decision.authorization_expiration) == window
        return
    assert decision.authorization_effective is None
    if NOT_MET in statuses:
        assert decision.outcome is Outcome.DENIED
        assert decision.reject_codes == ("75",)
    else:
        assert decision.outcome is Outcome.PENDED
        missing = decision.criteria[0].reason_code == "DIAGNOSIS_CODE_MISSING"
        assert decision.reject_codes == (("75", "39") if missing else ("75",))


@settings(max_examples=300, deadline=None)
@given(claim=claims())
def test_memoised_criteria_equal_fresh_evaluation(claim):
    """A criterion's memoised result equals evaluating its function afresh on the same claim."""
    assert RULE_A.evaluate(claim) == recurrent_or_metastatic(claim, RULE_A)
    assert RULE_B.evaluate(claim) == prescribed_by_or_with_specialist(claim, RULE_B)
