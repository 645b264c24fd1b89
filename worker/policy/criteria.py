"""The criteria of a prior-authorization policy: compiled rule data plus one pure function per criterion."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from worker.contracts.model import CriterionResult, CriterionStatus, DiseaseStatus, TriState
from worker.lru import LruMemo
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.contracts.model import Claim

__all__ = [
    "DiseaseStageRule",
    "ReasonCode",
    "SpecialistRule",
    "prescribed_by_or_with_specialist",
    "recurrent_or_metastatic",
]

_MET = CriterionStatus.MET
_NOT_MET = CriterionStatus.NOT_MET
_UNKNOWN = CriterionStatus.UNKNOWN

_NOT_ADVANCED = frozenset({DiseaseStatus.EARLY, DiseaseStatus.LOCALLY_ADVANCED})

# Results are immutable and depend only on the memo key, so equal inputs share one result. The bound
# (about 1 KB a result) keeps odd input from growing a memo without limit; past it, the least recently
# used result is forgotten.
_MEMO_LIMIT = 8_192

# Everything criterion A reads: the (code, qualifier) pairs in order, and the attested disease status.
_DiseaseKey = tuple[tuple[tuple[str, str], ...], DiseaseStatus]
# Everything criterion B reads: prescriber taxonomy; consultation status, consultant taxonomy and NPI.
_SpecialistKey = tuple[str | None, tuple[TriState, str | None, str | None] | None]


class ReasonCode(StrEnum):
    """Why a criterion came out as it did: a closed set of stable codes, safe as metric labels."""

    # Disease criterion (recurrent or metastatic disease).
    METASTATIC_BY_CODES = "METASTATIC_BY_CODES"
    RECURRENCE_INFERRED_FROM_HISTORY = "RECURRENCE_INFERRED_FROM_HISTORY"
    ATTESTED_METASTATIC = "ATTESTED_METASTATIC"
    ATTESTED_RECURRENT = "ATTESTED_RECURRENT"
    ATTESTED_EARLY = "ATTESTED_EARLY"
    ATTESTED_LOCALLY_ADVANCED = "ATTESTED_LOCALLY_ADVANCED"
    OTHER_PRIMARY_CANCER = "OTHER_PRIMARY_CANCER"
    METASTASIS_TO_SITE_ONLY = "METASTASIS_TO_SITE_ONLY"
    IN_SITU_ONLY = "IN_SITU_ONLY"
    ATTESTATION_CONFLICTS_WITH_CODES = "ATTESTATION_CONFLICTS_WITH_CODES"
    DISEASE_STATUS_NEEDED = "DISEASE_STATUS_NEEDED"
    PRIMARY_SITE_NOT_SHOWN = "PRIMARY_SITE_NOT_SHOWN"
    DIAGNOSIS_CODE_MISSING = "DIAGNOSIS_CODE_MISSING"
    # Specialist criterion (prescribed by or in consultation with a specialist).
    PRESCRIBER_IS_SPECIALIST = "PRESCRIBER_IS_SPECIALIST"
    CONSULTANT_IS_SPECIALIST = "CONSULTANT_IS_SPECIALIST"
    CONSULTATION_ATTESTED = "CONSULTATION_ATTESTED"
    CONSULTANT_NOT_SPECIALIST = "CONSULTANT_NOT_SPECIALIST"
    PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION = "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION"
    CONSULTANT_NOT_IDENTIFIED = "CONSULTANT_NOT_IDENTIFIED"
    CONSULTATION_STATUS_NEEDED = "CONSULTATION_STATUS_NEEDED"
    PRESCRIBER_SPECIALTY_UNKNOWN = "PRESCRIBER_SPECIALTY_UNKNOWN"


_DISEASE_REASONS = (
    ReasonCode.METASTATIC_BY_CODES,
    ReasonCode.RECURRENCE_INFERRED_FROM_HISTORY,
    ReasonCode.ATTESTED_METASTATIC,
    ReasonCode.ATTESTED_RECURRENT,
    ReasonCode.ATTESTED_EARLY,
    ReasonCode.ATTESTED_LOCALLY_ADVANCED,
    ReasonCode.OTHER_PRIMARY_CANCER,
    ReasonCode.METASTASIS_TO_SITE_ONLY,
    ReasonCode.IN_SITU_ONLY,
    ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES,
    ReasonCode.DISEASE_STATUS_NEEDED,
    ReasonCode.PRIMARY_SITE_NOT_SHOWN,
    ReasonCode.DIAGNOSIS_CODE_MISSING,
)
_SPECIALIST_REASONS = (
    ReasonCode.PRESCRIBER_IS_SPECIALIST,
    ReasonCode.CONSULTANT_IS_SPECIALIST,
    ReasonCode.CONSULTATION_ATTESTED,
    ReasonCode.CONSULTANT_NOT_SPECIALIST,
    ReasonCode.PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION,
    ReasonCode.CONSULTANT_NOT_IDENTIFIED,
    ReasonCode.CONSULTATION_STATUS_NEEDED,
    ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN,
)


@dataclass(frozen=True, slots=True, eq=False)
class DiseaseStageRule:
    """Compiled data for a "recurrent or metastatic <condition>" criterion."""

    reason_codes: ClassVar[tuple[ReasonCode, ...]] = _DISEASE_REASONS
    """Every reason code this kind of criterion can emit (a closed set, e.g. for metric labels)."""

    criterion_id: str
    clause: str
    condition: str
    site: str
    codes: DiagnosisCodes
    code_hint: str
    _memo: LruMemo[_DiseaseKey, CriterionResult] = field(
        default_factory=lambda: LruMemo(_MEMO_LIMIT), repr=False, compare=False
    )

    def evaluate(self, claim: Claim) -> CriterionResult:
        """Evaluate this criterion for one claim (see ``recurrent_or_metastatic``), memoised."""
        attestation = claim.attestation
        key = (
            tuple([(diagnosis.code, diagnosis.qualifier) for diagnosis in claim.diagnoses]),
            DiseaseStatus.UNKNOWN if attestation is None else attestation.disease_status,
        )
        result = self._memo.get(key)
        if result is None:
            result = recurrent_or_metastatic(claim, self)
            self._memo.put(key, result)
        return result


@dataclass(frozen=True, slots=True, eq=False)
class SpecialistRule:
    """Compiled data for a "prescribed by or in consultation with a <specialist>" criterion."""

    reason_codes: ClassVar[tuple[ReasonCode, ...]] = _SPECIALIST_REASONS
    """Every reason code this kind of criterion can emit (a closed set, e.g. for metric labels)."""

    criterion_id: str
    clause: str
    specialist: str
    a_specialist: str
    specialist_taxonomies: Mapping[str, str]
    named_other_taxonomies: Mapping[str, str]
    _memo: LruMemo[_SpecialistKey, CriterionResult] = field(
        default_factory=lambda: LruMemo(_MEMO_LIMIT), repr=False, compare=False
    )

    def evaluate(self, claim: Claim) -> CriterionResult:
        """Evaluate this criterion for one claim (see ``prescribed_by_or_with_specialist``), memoised."""
        attestation = claim.attestation
        consultation = None if attestation is None else attestation.consultation
        key = (
            claim.prescriber.taxonomy,
            None
            if consultation is None
            else (consultation.status, consultation.consultant_taxonomy, consultation.consultant_npi),
        )
        result = self._memo.get(key)
        if result is None:
            result = prescribed_by_or_with_specialist(claim, self)
            self._memo.put(key, result)
        return result

    def describe(self, taxonomy: str) -> str:
        """Return a taxonomy code with its name when the policy names it."""
        name = self.specialist_taxonomies.get(taxonomy) or self.named_other_taxonomies.get(taxonomy)
        return f"{taxonomy} ({name})" if name else taxonomy


# What a branch of criterion A decides: status, reason, evidence (mutable: the caller appends), explanation.
_Branch = tuple[CriterionStatus, ReasonCode, list[str], str]


def _joined(codes: list[str]) -> str:
    return ", ".join(codes)


def recurrent_or_metastatic(claim: Claim, rule: DiseaseStageRule) -> CriterionResult:
    """Criterion 1.A, "Patient has recurrent or metastatic disease", for the rule's condition.

    Reads every ICD-10 diagnosis code on the claim (qualifier per the rule; others are listed in the
    evidence as ignored) and the attested disease status. A condition code (primary or history) plus
    a distant secondary is metastatic by codes; an attested RECURRENT/METASTATIC status needs a
    condition code; attested EARLY/LOCALLY_ADVANCED fails unless codes show distant disease (then
    the conflict is UNKNOWN); history plus an active primary or regional-node code is an inferred
    recurrence. Codes that cannot tell the stage apart are UNKNOWN; codes of another cancer, a
    metastasis TO the site, or in-situ disease alone are NOT_MET. Returns a CriterionResult.
    """
    found = rule.codes.read(claim.diagnoses)
    attested = DiseaseStatus.UNKNOWN if claim.attestation is None else claim.attestation.disease_status
    families = found.families
    condition_codes = families.get(CodeFamily.PRIMARY, []) + families.get(CodeFamily.HISTORY, [])
    if condition_codes:
        status, reason, evidence, explanation = _with_condition_code(
            rule, families, condition_codes, attested
        )
    else:
        status, reason, evidence, explanation = _without_condition_code(rule, families, attested)
    if attested is not DiseaseStatus.UNKNOWN:
        evidence.append(f"attested disease status {attested.value}")
    if found.ignored:
        evidence.extend([f"ignored {code}: not ICD-10" for code in found.ignored])
    return CriterionResult(
        criterion_id=rule.criterion_id,
        status=status,
        reason_code=reason,
        evidence=tuple(evidence),
        explanation=explanation,
    )


def _attested_stage(rule: DiseaseStageRule, attested: DiseaseStatus, evidence: list[str]) -> _Branch:
    """Clause 1.A with EARLY or LOCALLY_ADVANCED attested: neither is recurrent or metastatic."""
    if attested is DiseaseStatus.EARLY:
        why = f"Early {rule.condition} is attested; the policy covers only recurrent or metastatic disease."
        return _NOT_MET, ReasonCode.ATTESTED_EARLY, evidence, why
    why = (
        f"Locally advanced {rule.condition} is attested; the policy covers only recurrent or metastatic "
        "disease (the FDA label's locally advanced indication is not a criterion)."
    )
    return _NOT_MET, ReasonCode.ATTESTED_LOCALLY_ADVANCED, evidence, why


def _with_condition_code(  # noqa: PLR0911 - one return per branch of the clause
    rule: DiseaseStageRule,
    families: dict[CodeFamily, list[str]],
    condition_codes: list[str],
    attested: DiseaseStatus,
) -> _Branch:
    """Clause 1.A when a primary or history code shows the condition itself."""
    codes = _joined(condition_codes)
    distant = families.get(CodeFamily.DISTANT_SECONDARY)
    if distant:
        evidence = condition_codes + distant
        if attested in _NOT_ADVANCED:
            why = (
                f"{attested.value} is attested, but the codes show {rule.condition} ({codes}) with distant "
                f"secondary {_joined(distant)}; need the disease status clarified."
            )
            return _UNKNOWN, ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES, evidence, why
        why = f"Metastatic {rule.condition}: {codes} with distant secondary {_joined(distant)}."
        return _MET, ReasonCode.METASTATIC_BY_CODES, evidence, why
    if attested is DiseaseStatus.METASTATIC:
        why = f"Metastatic disease is attested for {rule.condition} ({codes})."
        return _MET, ReasonCode.ATTESTED_METASTATIC, list(condition_codes), why
    if attested is DiseaseStatus.RECURRENT:
        why = f"Recurrent disease is attested for {rule.condition} ({codes})."
        return _MET, ReasonCode.ATTESTED_RECURRENT, list(condition_codes), why
    if attested in _NOT_ADVANCED:
        return _attested_stage(rule, attested, list(condition_codes))
    history = families.get(CodeFamily.HISTORY)
    nodes = families.get(CodeFamily.REGIONAL_NODE, [])
    active = families.get(CodeFamily.PRIMARY, []) + nodes
    if history and active:
        why = (
            f"History of {rule.condition} ({_joined(history)}) with active {_joined(active)}: read as a "
            "recurrence (an inference; no ICD-10 code says recurrent)."
        )
        return _MET, ReasonCode.RECURRENCE_INFERRED_FROM_HISTORY, history + active, why
    evidence = condition_codes + nodes
    node_note = f"; regional nodes ({_joined(nodes)}) are not distant metastasis" if nodes else ""
    why = (
        f"{_joined(evidence)} cannot tell early, locally advanced, recurrent and metastatic "
        f"{rule.condition} apart{node_note}; need the disease status."
    )
    return _UNKNOWN, ReasonCode.DISEASE_STATUS_NEEDED, evidence, why


def _without_condition_code(  # noqa: PLR0911 - one return per branch of the clause
    rule: DiseaseStageRule,
    families: dict[CodeFamily, list[str]],
    attested: DiseaseStatus,
) -> _Branch:
    """Clause 1.A when no primary or history code shows the condition."""
    other = families.get(CodeFamily.OTHER_MALIGNANT)
    if other:
        why = (
            f"{_joined(other)} is a cancer other than {rule.condition}, and no {rule.condition} code "
            f"({rule.code_hint}) was submitted."
        )
        return _NOT_MET, ReasonCode.OTHER_PRIMARY_CANCER, list(other), why
    distant = families.get(CodeFamily.DISTANT_SECONDARY, [])
    secondary = distant + families.get(CodeFamily.REGIONAL_NODE, [])
    if secondary:
        evidence = secondary + families.get(CodeFamily.SECONDARY_OF_SITE, [])
        if distant and attested in _NOT_ADVANCED:
            why = (
                f"{attested.value} is attested, but distant secondary {_joined(distant)} is coded; "
                f"need the disease status clarified and the primary diagnosis ({rule.code_hint})."
            )
            return _UNKNOWN, ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES, evidence, why
        if attested in _NOT_ADVANCED:
            return _attested_stage(rule, attested, evidence)
        why = (
            f"Secondary {_joined(evidence)} without a {rule.condition} code does not show "
            f"{rule.condition}; need the primary diagnosis ({rule.code_hint})."
        )
        return _UNKNOWN, ReasonCode.PRIMARY_SITE_NOT_SHOWN, evidence, why
    to_site = families.get(CodeFamily.SECONDARY_OF_SITE)
    if to_site:
        why = (
            f"{_joined(to_site)} is a secondary neoplasm of the {rule.site} (spread from another "
            f"primary), not {rule.condition}."
        )
        return _NOT_MET, ReasonCode.METASTASIS_TO_SITE_ONLY, list(to_site), why
    in_situ = families.get(CodeFamily.IN_SITU)
    if in_situ:
        why = (
            f"Carcinoma in situ ({_joined(in_situ)}) is not invasive {rule.condition} and cannot be "
            "recurrent or metastatic."
        )
        return _NOT_MET, ReasonCode.IN_SITU_ONLY, list(in_situ), why
    if attested in _NOT_ADVANCED:
        return _attested_stage(rule, attested, [])
    attested_note = (
        f" ({attested.value} is attested, but no code shows {rule.condition})"
        if attested is not DiseaseStatus.UNKNOWN
        else ""
    )
    why = (
        f"No ICD-10 {rule.condition} diagnosis code ({rule.code_hint}) was submitted{attested_note}; "
        "need the diagnosis code (codes with a non-ICD-10 qualifier are not read)."
    )
    return _UNKNOWN, ReasonCode.DIAGNOSIS_CODE_MISSING, [], why


def _result(
    rule: SpecialistRule, status: CriterionStatus, reason: ReasonCode, evidence: list[str], why: str
) -> CriterionResult:
    return CriterionResult(
        criterion_id=rule.criterion_id,
        status=status,
        reason_code=reason,
        evidence=tuple(evidence),
        explanation=why,
    )


def prescribed_by_or_with_specialist(  # noqa: PLR0911 - one return per branch of the clause
    claim: Claim, rule: SpecialistRule
) -> CriterionResult:
    """Criterion 1.B, "prescribed by or in consultation with an oncologist" (the rule's specialist).

    MET when the prescriber's NUCC taxonomy is a physician specialty of the rule, or when the
    attestation says YES to a consultation whose consultant taxonomy is one (or whose consultant
    is named by NPI only). NOT_MET when the attested consultant is known not to be one, or when the
    prescriber is known not to be one and consultation is attested NO. UNKNOWN otherwise: an unknown
    taxonomy or an unanswered consultation question is never read as a "no". Returns a CriterionResult.
    """
    taxonomy = claim.prescriber.taxonomy
    specialists = rule.specialist_taxonomies
    specialist = rule.specialist
    a_specialist = rule.a_specialist
    if taxonomy is not None and taxonomy in specialists:
        why = f"Prescribed by {a_specialist}: prescriber taxonomy {rule.describe(taxonomy)}."
        return _result(
            rule, _MET, ReasonCode.PRESCRIBER_IS_SPECIALIST, [f"prescriber taxonomy {taxonomy}"], why
        )
    evidence = ["prescriber taxonomy unknown" if taxonomy is None else f"prescriber taxonomy {taxonomy}"]
    consultation = None if claim.attestation is None else claim.attestation.consultation
    consulted = TriState.UNKNOWN if consultation is None else consultation.status
    if consultation is not None and consulted is TriState.YES:
        evidence.append("consultation attested YES")
        consultant = consultation.consultant_taxonomy
        if consultant is not None:
            evidence.append(f"consultant taxonomy {consultant}")
            if consultant in specialists:
                why = (
                    f"Prescribed in consultation with {a_specialist}: consultant taxonomy "
                    f"{rule.describe(consultant)}."
                )
                return _result(rule, _MET, ReasonCode.CONSULTANT_IS_SPECIALIST, evidence, why)
            why = (
                f"The attested consultant's taxonomy {rule.describe(consultant)} does not identify a "
                f"physician {specialist}, and the prescriber is not known to be {a_specialist}."
            )
            return _result(rule, _NOT_MET, ReasonCode.CONSULTANT_NOT_SPECIALIST, evidence, why)
        if consultation.consultant_npi is not None:
            evidence.append(f"consultant NPI {consultation.consultant_npi}")
            why = (
                f"Consultation with {a_specialist} is attested and the consultant is named by NPI; "
                "the consultant's specialty was not supplied, so the attestation is accepted."
            )
            return _result(rule, _MET, ReasonCode.CONSULTATION_ATTESTED, evidence, why)
        why = (
            f"Consultation with {a_specialist} is attested without the consultant's NPI or "
            "taxonomy; need the consulting physician."
        )
        return _result(rule, _UNKNOWN, ReasonCode.CONSULTANT_NOT_IDENTIFIED, evidence, why)
    if consulted is TriState.NO:
        evidence.append("consultation attested NO")
    if taxonomy is None:
        why = (
            f"The prescriber's specialty (taxonomy) is unknown and no consultation with {a_specialist} "
            f"is attested; need the prescriber's specialty or the consulting {specialist}."
        )
        return _result(rule, _UNKNOWN, ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN, evidence, why)
    prescriber = rule.describe(taxonomy)
    if consulted is TriState.NO:
        why = (
            f"Prescriber taxonomy {prescriber} does not identify a physician {specialist}, and "
            f"consultation with {a_specialist} is attested as NO."
        )
        return _result(rule, _NOT_MET, ReasonCode.PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION, evidence, why)
    why = (
        f"Prescriber taxonomy {prescriber} does not identify a physician {specialist}; need whether "
        f"it is prescribed in consultation with {a_specialist}."
    )
    return _result(rule, _UNKNOWN, ReasonCode.CONSULTATION_STATUS_NEEDED, evidence, why)
