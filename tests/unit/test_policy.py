"""Ixempra PA policy table tests: each row is a claim, the expected outcome and each criterion's reason."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.claims import CONSULTANT_NPI, NPIS, make_claim
from worker.contracts.codes import CriterionStatus, DecisionSource, InformationNeed, Outcome, Recommendation
from worker.contracts.icd10cm import RELEASE as ICD10CM_RELEASE
from worker.policy import Facts, ProviderFacts, ProviderStatus, decide, default_policy
from worker.policy.criteria import (
    DiseaseStageRule,
    SpecialistRule,
    prescribed_by_or_with_specialist,
    recurrent_or_metastatic,
)
from worker.policy.window import approval_window

if TYPE_CHECKING:
    from worker.contracts.model import Decision

DECIDED_AT = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)
ONCOLOGY = ("207RX0202X", "207RH0003X", "2086X0206X", "2085R0001X", "207VX0201X", "2080P0207X")
MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
OUTCOME_FOR_A = {MET: Outcome.APPROVED, NOT_MET: Outcome.REFERRED, UNKNOWN: Outcome.PENDED}
NO_DIRECTORY = Facts()
POLICY = default_policy()
ICD10CM = ("icd-10-cm", ICD10CM_RELEASE)  # recorded whenever the criteria read ICD-10 codes


def _decide(claim, facts=NO_DIRECTORY, policy=POLICY, at=DECIDED_AT, **options) -> Decision:
    """Decide under the catalog's default policy with no directory unless told otherwise."""
    return decide(claim, facts, policy, at, **options)


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
        ("C50.911", "C77.2"),
        None,
        MET,
        "METASTATIC_BY_CODES",
        "A-met:C50+C77.2-intra-abdominal-node-is-distant",
    ),
    _a(("C50.911", "C77.4"), None, MET, "METASTATIC_BY_CODES", "A-met:C50+C77.4-inguinal-node-is-distant"),
    _a(("C77.5", "C50.912"), None, MET, "METASTATIC_BY_CODES", "A-met:C50+C77.5-pelvic-node-is-distant"),
    _a(("Z85.3", "C77.5"), None, MET, "METASTATIC_BY_CODES", "A-met:Z85.3+C77.5-pelvic-node-is-distant"),
    _a(
        ("C34.90", "C50.911", "C78.7"),
        "METASTATIC",
        MET,
        "ATTESTED_METASTATIC",
        "A-met:two-active-primaries+secondary+METASTATIC-attested-settles-it",
    ),
    _a(
        ("Z85.3", "C34.90", "C79.51"),
        "RECURRENT",
        MET,
        "ATTESTED_RECURRENT",
        "A-met:history+other-primary+secondary+RECURRENT-attested-settles-it",
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
        ("C77.3", "Z85.3"),
        None,
        MET,
        "RECURRENCE_INFERRED_FROM_HISTORY",
        "A-met:Z85.3+C77.3-regional-recurrence-inferred",
    ),
    # Doubtful readings that used to approve: ask instead (docs/policy.md §8).
    _a(
        ("Z85.3", "C50.912"),
        None,
        UNKNOWN,
        "NEW_PRIMARY_OR_RECURRENCE",
        "A-unknown:Z85.3+C50-new-primary-or-recurrence-Z85.3-has-no-laterality",
    ),
    _a(
        ("Z85.3", "C50.912", "C77.3"),
        None,
        UNKNOWN,
        "NEW_PRIMARY_OR_RECURRENCE",
        "A-unknown:Z85.3+C50+C77.3-new-primary-with-nodes-is-not-recurrence",
    ),
    _a(
        ("Z85.3", "C34.90", "C79.51"),
        None,
        UNKNOWN,
        "HISTORY_WITH_OTHER_ACTIVE_PRIMARY",
        "A-unknown:Z85.3+active-lung-primary+bone-secondary-may-be-lung-metastasis",
    ),
    _a(
        ("Z85.3", "C77.3", "C34.90"),
        None,
        UNKNOWN,
        "HISTORY_WITH_OTHER_ACTIVE_PRIMARY",
        "A-unknown:Z85.3+nodes+active-lung-primary-nodes-may-be-lung",
    ),
    _a(
        ("C34.90", "C50.911", "C78.7"),
        None,
        UNKNOWN,
        "SECONDARY_ORIGIN_UNCLEAR",
        "A-unknown:two-active-primaries+secondary-origin-unclear",
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
    _a(("C77.2",), None, UNKNOWN, "PRIMARY_SITE_NOT_SHOWN", "A-unknown:C77.2-distant-node-no-primary"),
    _a(
        ("C50.911", "C77.0"),
        None,
        UNKNOWN,
        "DISEASE_STATUS_NEEDED",
        "A-unknown:C50+C77.0-supraclavicular-is-regional",
    ),
    _a(
        ("C50.911", "C77.1"),
        None,
        UNKNOWN,
        "DISEASE_STATUS_NEEDED",
        "A-unknown:C50+C77.1-internal-mammary-is-regional",
    ),
    _a(("C79.81", "C78.7"), None, UNKNOWN, "PRIMARY_SITE_NOT_SHOWN", "A-unknown:C79.81+C78.7-no-primary"),
    # Not breast cancer.
    _a(("C79.81",), None, NOT_MET, "METASTASIS_TO_SITE_ONLY", "A-not-met:C79.81-alone-metastasis-TO-breast"),
    _a(("C79.81",), "METASTATIC", NOT_MET, "METASTASIS_TO_SITE_ONLY", "A-not-met:C79.81+METASTATIC-attested"),
    _a(("C79.81", "C34.90"), None, NOT_MET, "OTHER_PRIMARY_CANCER", "A-not-met:C79.81+lung-primary"),
    _a(("C34.90", "C78.7"), None, NOT_MET, "OTHER_PRIMARY_CANCER", "A-not-met:lung-primary+liver-secondary"),
    _a(("C80.1",), None, UNKNOWN, "PRIMARY_SITE_UNSPECIFIED", "A-unknown:C80.1-primary-unspecified-asks"),
    _a(
        ("C18.9",),
        "METASTATIC",
        NOT_MET,
        "OTHER_PRIMARY_CANCER",
        "A-not-met:colon-primary+METASTATIC-attested",
    ),
    _a(("D05.11",), None, NOT_MET, "IN_SITU_ONLY", "A-not-met:D05.11-in-situ-only"),
    _a(("D05.10", "Z17.0"), None, NOT_MET, "IN_SITU_ONLY", "A-not-met:in-situ+Z17-receptor-decides-nothing"),
    _a(
        ("D05.10", "Z17.0"),
        "METASTATIC",
        UNKNOWN,
        "ATTESTATION_CONFLICTS_WITH_CODES",
        "A-unknown:D05-in-situ+METASTATIC-attested-contradiction-asks",
    ),
    _a(
        ("D05.11",),
        "RECURRENT",
        UNKNOWN,
        "ATTESTATION_CONFLICTS_WITH_CODES",
        "A-unknown:D05-in-situ+RECURRENT-attested-contradiction-asks",
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
    decision = _decide(make_claim(**overrides))
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
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "B-unknown:consultant-NPI-only-without-directory-is-unresolved-not-accepted",
    ),
    _b(
        "207R00000X",
        {"status": "YES", "consultant_npi": NPIS[0]},
        UNKNOWN,
        "CONSULTANT_IS_PRESCRIBER",
        "B-unknown:consultant-NPI-is-the-prescribers-own-not-a-consultation",
    ),
    _b(
        "207R00000X",
        {"status": "YES", "consultant_npi": NPIS[0], "consultant_taxonomy": "207RX0202X"},
        UNKNOWN,
        "CONSULTANT_IS_PRESCRIBER",
        "B-unknown:self-consultation-even-with-oncology-taxonomy",
    ),
    _b(
        "207Q00000X",
        {"status": "YES", "consultant_taxonomy": "163WX0200X"},
        UNKNOWN,
        "CONSULTANT_NOT_SPECIALIST",
        "B-unknown:consultation-YES-but-consultant-is-RN-oncology-asks",
    ),
    _b(
        None,
        {"status": "YES", "consultant_taxonomy": "207RH0000X", "consultant_npi": CONSULTANT_NPI},
        UNKNOWN,
        "CONSULTANT_NOT_SPECIALIST",
        "B-unknown:consultation-YES-but-consultant-is-hematology-asks",
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
        UNKNOWN,
        "CONSULTATION_CONFLICTS_WITH_CONSULTANT",
        "B-unknown:consultation-NO-while-an-oncologist-is-named-asks",
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
    decision = _decide(make_claim(**overrides))
    assert _criterion(decision, "A") == (MET, "METASTATIC_BY_CODES")
    assert _criterion(decision, "B") == (expected, reason)
    assert decision.outcome is OUTCOME_FOR_A[expected]


COMBINATION_CASES = [
    pytest.param({}, Outcome.APPROVED, (), MET, MET, id="approve:A-met+B-met-no-reject-codes"),
    pytest.param(
        {"dx": ("C50.911",), "status": "EARLY", "taxonomy": None},
        Outcome.REFERRED,
        ("3W",),
        NOT_MET,
        UNKNOWN,
        id="refer:A-not-met+B-unknown-any-NOT_MET-refers-to-review",
    ),
    pytest.param(
        {"dx": ("C50.911",), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.REFERRED,
        ("3W",),
        UNKNOWN,
        NOT_MET,
        id="refer:A-unknown+B-not-met",
    ),
    pytest.param(
        {"dx": ("C34.90",), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.REFERRED,
        ("3W",),
        NOT_MET,
        NOT_MET,
        id="refer:both-not-met",
    ),
    pytest.param(
        {"dx": (), "taxonomy": "207Q00000X", "consult": {"status": "NO"}},
        Outcome.REFERRED,
        ("3W",),
        UNKNOWN,
        NOT_MET,
        id="refer:missing-diagnosis-but-B-not-met-no-39",
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
        {"dx": ("D05.11",), "status": "METASTATIC"},
        Outcome.PENDED,
        ("75", "39"),
        UNKNOWN,
        MET,
        id="pend:in-situ+METASTATIC-asks-for-invasive-diagnosis-75+39",
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
    """APPROVED needs every criterion MET; any NOT_MET refers (3W); else PENDED (75, plus 39 for a diagnosis)."""
    decision = _decide(make_claim(**overrides))
    assert decision.outcome is outcome
    assert decision.reject_codes == rejects
    assert [c.status for c in decision.criteria] == [a_status, b_status]
    assert (decision.authorization_effective is not None) is (outcome is Outcome.APPROVED)
    assert (decision.authorization_expiration is not None) is (outcome is Outcome.APPROVED)
    assert (decision.authorization_number is not None) is (outcome is Outcome.APPROVED)


NEEDS_CASES = [
    pytest.param(
        {"dx": ("C50.911",)}, (InformationNeed.DISEASE_STATUS,), id="needs:C50-alone-disease-status"
    ),
    pytest.param(
        {"dx": ("Z85.3", "C50.911")}, (InformationNeed.DISEASE_STATUS,), id="needs:Z85.3+C50-disease-status"
    ),
    pytest.param({"dx": ()}, (InformationNeed.DIAGNOSIS_CODE,), id="needs:no-code-diagnosis-code"),
    pytest.param(
        {"dx": ("C79.51",)}, (InformationNeed.PRIMARY_DIAGNOSIS,), id="needs:secondary-only-primary"
    ),
    pytest.param(
        {"taxonomy": None}, (InformationNeed.PRESCRIBER_SPECIALTY,), id="needs:prescriber-specialty"
    ),
    pytest.param(
        {"taxonomy": "207Q00000X"}, (InformationNeed.CONSULTATION_STATUS,), id="needs:consultation-status"
    ),
    pytest.param(
        {"taxonomy": "207Q00000X", "consult": {"status": "YES", "consultant_npi": CONSULTANT_NPI}},
        (InformationNeed.CONSULTANT_IDENTITY,),
        id="needs:unresolved-consultant-identity",
    ),
    pytest.param(
        {"taxonomy": "207Q00000X", "consult": {"status": "YES", "consultant_taxonomy": "207R00000X"}},
        (InformationNeed.CONSULTANT_SPECIALTY,),
        id="needs:non-oncology-consultant-specialty",
    ),
    pytest.param(
        {"dx": (), "taxonomy": None},
        (InformationNeed.DIAGNOSIS_CODE, InformationNeed.PRESCRIBER_SPECIALTY),
        id="needs:both-criteria-in-policy-order",
    ),
]


@pytest.mark.parametrize(("overrides", "needs"), NEEDS_CASES)
def test_pended_decisions_list_what_is_needed(overrides, needs):
    """A PENDED decision carries the closed-set list of what would settle it, in criterion order."""
    decision = _decide(make_claim(**overrides))
    assert decision.outcome is Outcome.PENDED
    assert decision.needs == needs
    assert decision.decision_source is DecisionSource.INFORMATION_MISSING
    assert decision.recommendation is None


def test_referred_carries_recommendation_and_the_criteria_that_referred_it():
    """A REFERRED decision recommends DENY and names the NOT_MET criteria and its per-criterion evidence."""
    decision = _decide(make_claim(dx=("C34.90", "C78.7")))
    assert decision.outcome is Outcome.REFERRED
    assert decision.recommendation is Recommendation.DENY
    assert decision.decision_source is DecisionSource.CRITERIA_NOT_MET
    assert decision.source_criteria == ("A",)
    assert decision.criteria[0].evidence == ("C34.90",)
    assert decision.needs == ()


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        pytest.param({"dx": ("C34.90", "C78.7")}, Outcome.DENIED, id="opt-in:A-not-met-is-denied-3Y"),
        pytest.param(
            {"taxonomy": "207Q00000X", "consult": {"status": "NO"}}, Outcome.DENIED, id="opt-in:B-not-met"
        ),
        pytest.param({"dx": ("C50.911",)}, Outcome.PENDED, id="opt-in:missing-information-still-pends"),
        pytest.param({}, Outcome.APPROVED, id="opt-in:approval-unchanged"),
    ],
)
def test_automated_denials_only_when_the_plan_opts_in(overrides, outcome):
    """With automated denials allowed, NOT_MET is DENIED (3Y) by the automated rule; nothing else changes."""
    decision = _decide(make_claim(**overrides), automated_denials=True)
    assert decision.outcome is outcome
    if outcome is Outcome.DENIED:
        assert decision.reject_codes == ("3Y",)
        assert decision.decision_source is DecisionSource.AUTOMATED_RULE
        assert decision.recommendation is Recommendation.DENY
    assert _decide(make_claim(**overrides)).outcome is not Outcome.DENIED


def test_pa_number_is_eleven_digits_deterministic_and_luhn_checked():
    """An approval's PA number is 11 digits, the same for the same claim, different for another claim."""
    first = _decide(make_claim()).authorization_number
    again = _decide(make_claim(event_id="evt-other")).authorization_number
    other = _decide(make_claim(claim_id="clm-0002")).authorization_number
    assert first is not None
    assert re.fullmatch(r"[0-9]{11}", first)
    assert first == again
    assert other != first
    digits = [int(d) for d in reversed(first)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    assert total % 10 == 0


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
        pytest.param("J9171", "09", id="NA:another-HCPCS-code-qualifier-09"),
        pytest.param("00093747489", "00", id="NA:capecitabine-NDC-digits-under-qualifier-00"),
        pytest.param("J9171", "00", id="NA:docetaxel-HCPCS-under-qualifier-00"),
    ],
)
def test_not_applicable_products(ndc, qualifier):
    """Claims identified as another product get NOT_APPLICABLE, with no criteria and no reject codes."""
    decision = _decide(make_claim(ndc=ndc, qualifier=qualifier))
    assert decision.outcome is Outcome.NOT_APPLICABLE
    assert decision.criteria == ()
    assert decision.reject_codes == ()
    assert decision.authorization_effective is None
    assert "does not apply" in decision.summary
    assert decision.matched_product is None


@pytest.mark.parametrize(
    ("ndc", "qualifier", "code", "system", "reading"),
    [
        pytest.param("J9207", "09", "J9207", "HCPCS", "HCPCS", id="in-scope:HCPCS-J9207-qualifier-09"),
        pytest.param("j9207", "09", "J9207", "HCPCS", "HCPCS", id="in-scope:HCPCS-lower-case"),
        pytest.param("J9207", "00", "J9207", "HCPCS", "HCPCS", id="in-scope:HCPCS-J9207-qualifier-00"),
        pytest.param(
            "70020191001",
            "00",
            "70020191001",
            "NDC11",
            "NDC_11_DIGIT",
            id="in-scope:Ixempra-NDC-qualifier-00",
        ),
        pytest.param(
            "7002019101",
            "03",
            "70020191001",
            "NDC11",
            "NDC_10_DIGIT_AS_5_4_1",
            id="in-scope:10-digit-read-5-4-1",
        ),
        pytest.param(
            "70020-1911-1",
            "03",
            "70020191101",
            "NDC11",
            "NDC_5_4_1_HYPHENATED",
            id="in-scope:5-4-1-hyphenated",
        ),
    ],
)
def test_ixabepilone_in_any_billing_form_is_in_scope(ndc, qualifier, code, system, reading):
    """Ixabepilone billed as HCPCS J9207 or as Ixempra NDC digits under qualifier 00 is decided, not waved through."""
    decision = _decide(make_claim(ndc=ndc, qualifier=qualifier))
    assert decision.outcome is Outcome.APPROVED
    matched = decision.matched_product
    assert matched is not None
    assert (matched.code, matched.system.value, matched.reading.value) == (code, system, reading)


@pytest.mark.parametrize(
    ("ndc", "qualifier"),
    [
        pytest.param("70020191001", "07", id="unidentified:Ixempra-digits-under-qualifier-07"),
        pytest.param("ABC-123", "00", id="unidentified:qualifier-00-neither-NDC-nor-HCPCS"),
        pytest.param("123456789012", "01", id="unidentified:UPC-qualifier-not-read"),
        pytest.param("IXEMPRA", "09", id="unidentified:not-a-HCPCS-code-under-09"),
    ],
)
def test_unidentifiable_product_pends_instead_of_paying(ndc, qualifier):
    """A product the worker cannot identify pends for its identity (reject 21); it is never NOT_APPLICABLE."""
    decision = _decide(make_claim(ndc=ndc, qualifier=qualifier))
    assert decision.outcome is Outcome.PENDED
    assert decision.needs == (InformationNeed.PRODUCT_IDENTITY,)
    assert decision.reject_codes == ("21",)
    assert decision.decision_source is DecisionSource.PRODUCT_NOT_IDENTIFIED
    assert decision.criteria == ()


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
    assert _decide(make_claim(ndc=ndc)).outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="B2-of-an-approvable-Ixempra-claim"),
        pytest.param({"dx": ()}, id="B2-without-diagnosis"),
        pytest.param({"ndc": "ABC", "qualifier": "07"}, id="B2-of-an-unidentified-product"),
    ],
)
def test_b2_reversal_is_reversed(overrides):
    """A B2 reversal of the policy's product (or one that may be it) is REVERSED: no PA decision, no criteria, no reject codes, no window."""
    decision = _decide(make_claim(tx="B2", **overrides))
    assert decision.outcome is Outcome.REVERSED
    assert decision.criteria == ()
    assert decision.reject_codes == ()
    assert decision.authorization_effective is None
    assert decision.authorization_expiration is None
    assert "clm-0000" in decision.summary


def test_b2_reversal_of_another_drug_is_not_applicable_like_its_billing():
    """A B2 of a drug the policy does not cover is NOT_APPLICABLE, as the B1 it reverses was: no NCPDP answer from this step."""
    billing = _decide(make_claim(ndc="00093-7474-89"))
    reversal = _decide(make_claim(tx="B2", ndc="00093-7474-89"))
    assert billing.outcome is reversal.outcome is Outcome.NOT_APPLICABLE
    assert reversal.criteria == ()
    assert reversal.reject_codes == ()
    assert reversal.authorization_number is None


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        pytest.param({}, Outcome.APPROVED, id="B3-approvable-is-approved"),
        pytest.param({"dx": ("C79.81",)}, Outcome.REFERRED, id="B3-not-breast-is-referred"),
        pytest.param({"dx": ("C50.911",)}, Outcome.PENDED, id="B3-needs-status-is-pended"),
        pytest.param({"ndc": "68817-134-50"}, Outcome.NOT_APPLICABLE, id="B3-other-drug-not-applicable"),
    ],
)
def test_b3_rebill_is_decided_like_b1(overrides, outcome):
    """A B3 rebill is decided afresh, exactly as the same claim sent as B1."""
    rebill = _decide(make_claim(tx="B3", **overrides))
    billing = _decide(make_claim(tx="B1", **overrides))
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
    decision = _decide(make_claim(dos=dos))
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
    decision = _decide(make_claim(dos=date(2025, 3, 10)), at=decided_at)
    assert decision.decided_at == decided_at
    assert decision.decided_at.utcoffset() == decided_at.utcoffset()
    assert decision.authorization_effective == date(2025, 3, 10)


@pytest.mark.parametrize(("overrides", "expected", "reason"), [*CRITERION_A_CASES, *CRITERION_B_CASES])
def test_reason_codes_are_a_closed_upper_snake_set(overrides, expected, reason):
    """Every reason code a table row produces is UPPER_SNAKE and in the policy's declared closed set."""
    decision = _decide(make_claim(**overrides))
    assert reason in default_policy().reason_codes
    for criterion in decision.criteria:
        assert re.fullmatch(r"[A-Z][A-Z_]*[A-Z]", criterion.reason_code)
        assert criterion.reason_code in default_policy().reason_codes


def test_every_decision_names_the_policy_and_version():
    """Each outcome carries the policy id and version of the data file that decided it."""
    policy = default_policy()
    for claim in (make_claim(), make_claim(dx=()), make_claim(tx="B2"), make_claim(ndc="00093-7474-89")):
        decision = _decide(claim)
        assert (decision.policy_id, decision.policy_version) == ("IXEMPRA-PA", "2020.09-3")
        assert (decision.policy_id, decision.policy_version) == (policy.policy_id, policy.version)


def test_evidence_and_explanations_name_what_decided():
    """Evidence lists the deciding codes (dotted), the attestation, taxonomies and the ignored codes."""
    decision = _decide(make_claim(dx=(("174.9", "01"), "C50911", "C787"), status="METASTATIC"))
    a, b = decision.criteria
    assert a.evidence == (
        "C50.911",
        "C78.7",
        "attested disease status METASTATIC",
        "ignored 174.9 (qualifier 01): not ICD-10",
    )
    assert "C50.911" in a.explanation
    assert "C78.7" in a.explanation
    assert b.evidence == ("prescriber taxonomy 207RX0202X (source=claim)",)
    assert "Medical Oncology" in b.explanation


def test_inferred_recurrence_says_it_is_an_inference():
    """A recurrence read from Z85.3 history plus new regional nodes is reported as an inference."""
    a = _decide(make_claim(dx=("Z85.3", "C77.3"))).criteria[0]
    assert a.reason_code == "RECURRENCE_INFERRED_FROM_HISTORY"
    assert "inference" in a.explanation
    assert a.evidence == ("Z85.3", "C77.3")


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
    decision = _decide(make_claim(**overrides))
    assert decision.outcome is Outcome.PENDED
    assert needed in decision.summary
    assert "UNKNOWN" in decision.summary


PHI = {"member_id": "MBRSENTINEL42", "first_name": "FIRSTSENTINEL", "last_name": "LASTSENTINEL"}
PHI_DOB = date(1901, 2, 3)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="approved"),
        pytest.param({"dx": ("C34.90",)}, id="referred"),
        pytest.param({"dx": ()}, id="pended"),
        pytest.param({"ndc": "00093-7474-89"}, id="not-applicable"),
        pytest.param({"tx": "B2"}, id="reversed"),
    ],
)
def test_no_phi_in_decision(overrides):
    """No member id, name or date of birth appears in any Decision dump, repr or str."""
    patient = {**PHI, "date_of_birth": PHI_DOB.isoformat()}
    decision = _decide(make_claim(patient=patient, **overrides))
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


RULE_A = next(c for c in POLICY.criteria if isinstance(c, DiseaseStageRule))
RULE_B = next(c for c in POLICY.criteria if isinstance(c, SpecialistRule))
CODE_POOL = (
    "C50.911", "C50912", "C50.A1", "Z85.3", "C77.3", "C77.5", "C78.7", "C79.51", "C79.81", "C80.0", "C80.1",
    "C34.90", "D05.11", "Z17.0", "I10",
)  # fmt: skip
TAXONOMY_POOL = (*ONCOLOGY[:2], "207RH0000X", "207Q00000X", "163WX0200X", None)
DIRECTORY_VERSION = "nppes-2025-03-01"


def _provider(npi, status=ProviderStatus.ACTIVE, taxonomies=(), primary=None):
    return ProviderFacts(
        npi=npi,
        status=status,
        taxonomies=taxonomies,
        primary_taxonomy=primary,
        directory_version=DIRECTORY_VERSION,
    )


@st.composite
def facts(draw):
    """Draw directory facts for the prescriber (NPIS[0]) and a consultant (CONSULTANT_NPI), or none."""
    taxonomy_lists = st.lists(st.sampled_from([t for t in TAXONOMY_POOL if t]), max_size=3, unique=True)
    providers = [
        st.none(),
        *(
            st.builds(
                _provider, st.just(npi), st.sampled_from(list(ProviderStatus)), taxonomy_lists.map(tuple)
            )
            for npi in (NPIS[0],)
        ),
    ]
    prescriber = draw(st.one_of(*providers))
    consultant = draw(
        st.one_of(
            st.none(),
            st.builds(
                _provider,
                st.just(CONSULTANT_NPI),
                st.sampled_from(list(ProviderStatus)),
                taxonomy_lists.map(tuple),
            ),
        )
    )
    if prescriber is None and consultant is None:
        return NO_DIRECTORY
    return Facts(prescriber=prescriber, consultant=consultant, directory_version=DIRECTORY_VERSION)


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
                    "consultant_npi": st.sampled_from((*NPIS, "1234567890")),
                },
            ),
        )
    )
    product = draw(
        st.sampled_from(
            [("70020-1910-01", "03"), ("7002019101", "03"), ("70020191101", "00"), ("00093-7474-89", "03"),
             ("J9207", "09"), ("J9171", "09"), ("XYZ", "07")]
        )
    )  # fmt: skip
    return make_claim(
        dx=dx,
        status=status,
        consult=consult,
        taxonomy=draw(st.sampled_from(TAXONOMY_POOL)),
        ndc=product[0],
        qualifier=product[1],
        tx=draw(st.sampled_from(["B1", "B2", "B3"])),
        dos=draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))),
    )


@settings(max_examples=300, deadline=None)
@given(claim=claims(), found=facts(), denials=st.booleans())
def test_decision_invariants(claim, found, denials):
    """Whatever the claim and facts, outcome, criteria, needs, rejects, PA number and window agree with the rules."""
    decision = _decide(claim, found, automated_denials=denials)
    assert decision.decided_at == DECIDED_AT
    assert (decision.policy_id, decision.policy_version) == ("IXEMPRA-PA", "2020.09-3")
    directory = () if found is NO_DIRECTORY else (("prescriber-directory", DIRECTORY_VERSION),)
    read_codes = bool(decision.criteria) and any(d.qualifier == "02" for d in claim.diagnoses)
    assert decision.reference_versions == (*directory, *((ICD10CM,) if read_codes else ()))
    assert decision.outcome is not Outcome.REJECTED
    assert (decision.outcome is Outcome.DENIED) <= denials
    if decision.outcome in {Outcome.REVERSED, Outcome.NOT_APPLICABLE}:
        assert (decision.criteria, decision.reject_codes, decision.needs) == ((), (), ())
        assert decision.outcome is not Outcome.REVERSED or claim.transaction_code == "B2"
        return
    assert claim.transaction_code != "B2"
    if decision.decision_source is DecisionSource.PRODUCT_NOT_IDENTIFIED:
        assert decision.needs == (InformationNeed.PRODUCT_IDENTITY,)
        return
    assert decision.matched_product is not None
    assert [c.criterion_id for c in decision.criteria] == ["A", "B"]
    statuses = {c.status for c in decision.criteria}
    for criterion in decision.criteria:
        assert criterion.reason_code in POLICY.reason_codes
        assert criterion.explanation
        assert " a oncologist" not in criterion.explanation
        assert bool(criterion.needs) is (criterion.status is UNKNOWN)
    if statuses == {MET}:
        assert decision.outcome is Outcome.APPROVED
        assert decision.reject_codes == ()
        assert decision.authorization_number is not None
        window = approval_window(claim.date_of_service, 1)
        assert (decision.authorization_effective, decision.authorization_expiration) == window
        return
    assert decision.authorization_effective is None
    assert decision.authorization_number is None
    if NOT_MET in statuses:
        assert decision.outcome is (Outcome.DENIED if denials else Outcome.REFERRED)
        assert decision.reject_codes == (("3Y",) if denials else ("3W",))
        assert decision.recommendation is Recommendation.DENY
    else:
        assert decision.outcome is Outcome.PENDED
        assert decision.needs
        assert decision.reject_codes[0] == "75"
        assert ("39" in decision.reject_codes) is (InformationNeed.DIAGNOSIS_CODE in decision.needs)


@settings(max_examples=300, deadline=None)
@given(claim=claims(), found=facts())
def test_memoised_criteria_equal_fresh_evaluation(claim, found):
    """A criterion's memoised result equals evaluating its function afresh on the same claim and facts."""
    assert RULE_A.evaluate(claim, found) == recurrent_or_metastatic(claim, RULE_A)
    assert RULE_B.evaluate(claim, found) == prescribed_by_or_with_specialist(claim, RULE_B, found)


# ---- criterion B through the prescriber directory -------------------------------------------------

ACTIVE, NOT_FOUND = ProviderStatus.ACTIVE, ProviderStatus.NOT_FOUND
DEACTIVATED, ORGANISATION = ProviderStatus.DEACTIVATED, ProviderStatus.ORGANISATION


def _dir(  # noqa: PLR0917 - a table row, read positionally like _a and _b
    taxonomy,
    consult,
    prescriber,
    consultant,
    expected: CriterionStatus,
    reason: str,
    rid: str,
    needs=(),
):
    found = Facts(prescriber=prescriber, consultant=consultant, directory_version=DIRECTORY_VERSION)
    return pytest.param({"taxonomy": taxonomy, "consult": consult}, found, expected, reason, needs, id=rid)


DIRECTORY_B_CASES = [
    _dir(
        None,
        None,
        _provider(NPIS[0], taxonomies=("207RX0202X",), primary="207RX0202X"),
        None,
        MET,
        "PRESCRIBER_IS_SPECIALIST",
        "dir:prescriber-primary-medical-oncology",
    ),
    _dir(
        None,
        None,
        _provider(NPIS[0], taxonomies=("207R00000X", "207RX0202X"), primary="207R00000X"),
        None,
        MET,
        "PRESCRIBER_IS_SPECIALIST",
        "dir:oncology-only-as-secondary-taxonomy-meets-B",
    ),
    _dir(
        "207Q00000X",
        None,
        _provider(NPIS[0], taxonomies=("207RX0202X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_NOT_CONFIRMED",
        "dir:sent-family-medicine-the-directory-does-not-list-against-directory-oncology-asks",
        (InformationNeed.PRESCRIBER_SPECIALTY,),
    ),
    _dir(
        "207R00000X",
        None,
        _provider(NPIS[0], taxonomies=("207R00000X", "207RX0202X"), primary="207R00000X"),
        None,
        MET,
        "PRESCRIBER_IS_SPECIALIST",
        "dir:sent-code-the-directory-lists-agrees-and-directory-oncology-meets-B",
    ),
    _dir(
        "207Q00000X",
        None,
        _provider(NPIS[0], taxonomies=("207R00000X",)),
        None,
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "dir:sent-and-listed-codes-differ-but-neither-is-oncology-not-a-specialist",
        (InformationNeed.CONSULTATION_STATUS,),
    ),
    # Issue 23 rule 1: a sent taxonomy never rescues an NPI the directory rejects, and a sent specialty
    # the directory does not confirm never approves on its own.
    _dir(
        "207RX0202X",
        None,
        _provider(NPIS[0], DEACTIVATED, ("207RX0202X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:sent-oncology-does-not-rescue-a-deactivated-NPI",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        "207RX0202X",
        None,
        _provider(NPIS[0], NOT_FOUND),
        None,
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:sent-oncology-does-not-rescue-an-NPI-not-in-the-directory",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        "207RX0202X",
        None,
        _provider(NPIS[0], ORGANISATION, ("261QX0200X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:sent-oncology-does-not-rescue-an-organisation",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        "207RX0202X",
        None,
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_NOT_CONFIRMED",
        "dir:sent-oncology-against-directory-family-medicine-asks",
        (InformationNeed.PRESCRIBER_SPECIALTY,),
    ),
    _dir(
        "207RX0202X",
        {"status": "NO"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_NOT_CONFIRMED",
        "dir:sent-oncology-against-directory-with-consultation-NO-asks-not-refers",
        (InformationNeed.PRESCRIBER_SPECIALTY,),
    ),
    _dir(
        "207RX0202X",
        None,
        _provider(NPIS[0], ACTIVE, ()),
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_NOT_CONFIRMED",
        "dir:sent-oncology-directory-lists-no-taxonomy-asks",
        (InformationNeed.PRESCRIBER_SPECIALTY,),
    ),
    _dir(
        "207Q00000X",
        None,
        _provider(NPIS[0], ACTIVE, ()),
        None,
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "dir:sent-family-medicine-directory-lists-none-read-as-sent",
        (InformationNeed.CONSULTATION_STATUS,),
    ),
    _dir(
        "207Q00000X",
        {"status": "YES", "consultant_npi": CONSULTANT_NPI, "consultant_taxonomy": "207RX0202X"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, NOT_FOUND),
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:sent-consultant-oncology-does-not-rescue-an-unknown-consultant-NPI",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        "207Q00000X",
        {"status": "YES", "consultant_npi": CONSULTANT_NPI, "consultant_taxonomy": "207RX0202X"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207R00000X",)),
        UNKNOWN,
        "CONSULTANT_NOT_SPECIALIST",
        "dir:sent-consultant-oncology-against-directory-internal-medicine-asks",
        (InformationNeed.CONSULTANT_SPECIALTY,),
    ),
    _dir(
        "207Q00000X",
        {"status": "YES", "consultant_npi": CONSULTANT_NPI, "consultant_taxonomy": "207R00000X"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207RX0202X",)),
        UNKNOWN,
        "CONSULTANT_NOT_SPECIALIST",
        "dir:consultant-sent-internal-medicine-against-directory-oncology-asks",
        (InformationNeed.CONSULTANT_SPECIALTY,),
    ),
    _dir(
        "207Q00000X",
        {"status": "YES", "consultant_npi": CONSULTANT_NPI, "consultant_taxonomy": "207RH0003X"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207R00000X", "207RH0003X"), primary="207R00000X"),
        MET,
        "CONSULTANT_IS_SPECIALIST",
        "dir:consultant-sent-hem-onc-the-directory-lists-meets-B",
    ),
    _dir(
        "207Q00000X",
        {"status": "YES", "consultant_taxonomy": "207RX0202X"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        None,
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:consultant-named-by-taxonomy-alone-cannot-be-verified",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "NO"},
        _provider(NPIS[0], taxonomies=("207Q00000X", "207RH0000X")),
        None,
        NOT_MET,
        "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION",
        "dir:family-medicine+hematology-and-consultation-NO-not-met",
    ),
    _dir(
        None,
        None,
        _provider(NPIS[0], taxonomies=("163WX0200X",)),
        None,
        UNKNOWN,
        "CONSULTATION_STATUS_NEEDED",
        "dir:RN-oncology-is-not-a-physician",
        (InformationNeed.CONSULTATION_STATUS,),
    ),
    _dir(
        None,
        None,
        _provider(NPIS[0], ACTIVE, ()),
        None,
        UNKNOWN,
        "PRESCRIBER_SPECIALTY_UNKNOWN",
        "dir:active-NPI-listing-no-taxonomy-is-unknown",
        (InformationNeed.PRESCRIBER_SPECIALTY,),
    ),
    _dir(
        None,
        None,
        _provider(NPIS[0], NOT_FOUND),
        None,
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:prescriber-NPI-not-in-directory-pends-with-56",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        None,
        None,
        _provider(NPIS[0], DEACTIVATED, ("207RX0202X",)),
        None,
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:prescriber-deactivated-on-date-of-service-pends",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], ORGANISATION, ("261QX0200X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207RX0202X",)),
        UNKNOWN,
        "PRESCRIBER_NOT_RESOLVED",
        "dir:organisation-as-prescriber-pends-even-with-oncologist-consultant",
        (InformationNeed.PRESCRIBER_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207R00000X", "207RH0003X"), primary="207R00000X"),
        MET,
        "CONSULTANT_IS_SPECIALIST",
        "dir:consultant-resolved-hem-onc-as-secondary-meets-B",
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207R00000X",)),
        UNKNOWN,
        "CONSULTANT_NOT_SPECIALIST",
        "dir:consultation-YES-consultant-directory-not-oncology-asks",
        (InformationNeed.CONSULTANT_SPECIALTY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, NOT_FOUND),
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:consultant-not-in-directory-pends-failed-lookup-not-rewarded",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, DEACTIVATED, ("207RX0202X",)),
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:consultant-deactivated-pends",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        None,
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:consultant-not-looked-up-pends",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": "1234567890"},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        None,
        UNKNOWN,
        "CONSULTANT_NOT_RESOLVED",
        "dir:consultant-NPI-fails-check-digit-pends",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "YES", "consultant_npi": NPIS[0]},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        UNKNOWN,
        "CONSULTANT_IS_PRESCRIBER",
        "dir:consultant-NPI-equals-prescriber-NPI-is-no-consultation",
        (InformationNeed.CONSULTANT_IDENTITY,),
    ),
    _dir(
        None,
        {"status": "NO", "consultant_npi": CONSULTANT_NPI},
        _provider(NPIS[0], taxonomies=("207Q00000X",)),
        _provider(CONSULTANT_NPI, taxonomies=("207RX0202X",)),
        UNKNOWN,
        "CONSULTATION_CONFLICTS_WITH_CONSULTANT",
        "dir:consultation-NO-while-directory-oncologist-named-asks",
        (InformationNeed.CONSULTATION_STATUS,),
    ),
]


@pytest.mark.parametrize(("overrides", "found", "expected", "reason", "needs"), DIRECTORY_B_CASES)
def test_criterion_b_through_the_directory(overrides, found, expected, reason, needs):
    """With a directory, B reads its status and taxonomies for every NPI, weighing a sent taxonomy; unresolved NPIs pend."""
    decision = _decide(make_claim(**overrides), found)
    assert _criterion(decision, "B") == (expected, reason)
    b = decision.criteria[1]
    assert b.needs == needs
    assert decision.reference_versions == (("prescriber-directory", DIRECTORY_VERSION), ICD10CM)
    assert f"source=directory {DIRECTORY_VERSION}" in b.evidence[0]
    if overrides["taxonomy"] is not None:  # a sent taxonomy is named beside the directory's word
        assert f"taxonomy {overrides['taxonomy']} sent on the claim (source=claim" in b.evidence[0]
    if expected is not MET:
        assert decision.outcome is not Outcome.APPROVED


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(NOT_FOUND, id="56:not-in-directory"),
        pytest.param(DEACTIVATED, id="56:deactivated"),
        pytest.param(ORGANISATION, id="56:organisation"),
    ],
)
def test_unresolved_prescriber_pends_with_reject_56(status):
    """A prescriber NPI that is not an active individual in the directory pends with 75 and 56 (verify NPI)."""
    decision = _decide(make_claim(taxonomy=None), Facts(prescriber=_provider(NPIS[0], status)))
    assert decision.outcome is Outcome.PENDED
    assert decision.reject_codes == ("75", "56")
    assert decision.rejects[1].field == "prescriber.npi"
    assert decision.needs == (InformationNeed.PRESCRIBER_IDENTITY,)


def test_no_directory_behaves_as_before_directory_existed():
    """Without a directory (facts.prescriber None), B reads the claim's taxonomy, else pends for the specialty."""
    assert _criterion(_decide(make_claim()), "B") == (MET, "PRESCRIBER_IS_SPECIALIST")
    decision = _decide(make_claim(taxonomy=None))
    assert _criterion(decision, "B") == (UNKNOWN, "PRESCRIBER_SPECIALTY_UNKNOWN")
    assert decision.reference_versions == (ICD10CM,)  # the ICD-10-CM release only: no directory read


def test_catalog_versions_decide_differently_where_the_data_changed():
    """The first catalog version reads C77.5 as regional; the second as distant; each decision names its version."""
    from worker.policy import catalog_policy  # noqa: PLC0415

    first, second = catalog_policy("IXEMPRA-PA/2020.09-1"), catalog_policy("IXEMPRA-PA/2020.09-2")
    claim = make_claim(dx=("C50.911", "C77.5"))
    old, new = _decide(claim, policy=first), _decide(claim, policy=second)
    assert (old.outcome, old.policy_version) == (Outcome.PENDED, "2020.09-1")
    assert (new.outcome, new.policy_version) == (Outcome.APPROVED, "2020.09-2")


def test_not_applicable_decisions_are_shared_only_where_nothing_differs():
    """The memoised NOT_APPLICABLE decision equals a fresh one and is never reused across products, times, policies or reference versions."""
    from worker.policy import decision as decision_module  # noqa: PLC0415

    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    claim = make_claim(ndc="00093747489", qualifier="03")
    first = decide(claim, Facts(), POLICY, at)
    again = decide(make_claim(ndc="00093747489", qualifier="03", claim_id="other"), Facts(), POLICY, at)
    assert again is first, "same policy, time, product and versions: one shared frozen decision"
    decision_module._not_applicable_cache.clear()
    assert decide(claim, Facts(), POLICY, at) == first, "the shared decision is what a fresh decide gives"
    other_product = decide(make_claim(ndc="68817-134-50", qualifier="03"), Facts(), POLICY, at)
    assert "68817" in other_product.summary
    assert "00093747489" in first.summary
    later = decide(claim, Facts(), POLICY, at + timedelta(seconds=1))
    assert later.decided_at == at + timedelta(seconds=1)
    other_policy = default_policy()
    assert decide(claim, Facts(), other_policy, at) is not first
    with_directory = Facts(
        directory_version="v7", prescriber=ProviderFacts(npi=NPIS[0], status=ProviderStatus.ACTIVE)
    )
    assert decide(claim, with_directory, POLICY, at).reference_versions != first.reference_versions
