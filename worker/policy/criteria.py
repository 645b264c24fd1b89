"""The criteria of a prior-authorization policy: compiled rule data plus one pure function per criterion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from worker.contracts.model import (
    CriterionResult,
    CriterionStatus,
    DiseaseStatus,
    InformationNeed,
    ReasonCode,
    TriState,
    npi_is_valid,
)
from worker.lru import LruMemo
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes
from worker.policy.facts import Facts, ProviderFacts, ProviderStatus

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
# Everything criterion B reads: prescriber taxonomy; consultation status, consultant taxonomy and NPI;
# whether the consultant is the prescriber; the directory's facts on prescriber and consultant.
_SpecialistKey = tuple[
    str | None,
    tuple[TriState, str | None, str | None] | None,
    bool,
    ProviderFacts | None,
    ProviderFacts | None,
]


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
    ReasonCode.NEW_PRIMARY_OR_RECURRENCE,
    ReasonCode.HISTORY_WITH_OTHER_ACTIVE_PRIMARY,
    ReasonCode.SECONDARY_ORIGIN_UNCLEAR,
    ReasonCode.PRIMARY_SITE_NOT_SHOWN,
    ReasonCode.DIAGNOSIS_CODE_MISSING,
)
_SPECIALIST_REASONS = (
    ReasonCode.PRESCRIBER_IS_SPECIALIST,
    ReasonCode.CONSULTANT_IS_SPECIALIST,
    ReasonCode.CONSULTANT_NOT_SPECIALIST,
    ReasonCode.CONSULTANT_NOT_RESOLVED,
    ReasonCode.CONSULTANT_IS_PRESCRIBER,
    ReasonCode.CONSULTATION_CONFLICTS_WITH_CONSULTANT,
    ReasonCode.PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION,
    ReasonCode.PRESCRIBER_NOT_RESOLVED,
    ReasonCode.CONSULTANT_NOT_IDENTIFIED,
    ReasonCode.CONSULTATION_STATUS_NEEDED,
    ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN,
)
_NO_FACTS = Facts()


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

    def evaluate(self, claim: Claim, facts: Facts = _NO_FACTS) -> CriterionResult:  # noqa: ARG002 - one signature for every rule
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

    def evaluate(self, claim: Claim, facts: Facts = _NO_FACTS) -> CriterionResult:
        """Evaluate this criterion for one claim and its looked-up facts, memoised.

        See ``prescribed_by_or_with_specialist``.
        """
        attestation = claim.attestation
        consultation = None if attestation is None else attestation.consultation
        key = (
            claim.prescriber.taxonomy,
            None
            if consultation is None
            else (consultation.status, consultation.consultant_taxonomy, consultation.consultant_npi),
            consultation is not None and consultation.consultant_npi == claim.prescriber.npi,
            facts.prescriber,
            facts.consultant,
        )
        result = self._memo.get(key)
        if result is None:
            result = prescribed_by_or_with_specialist(claim, self, facts)
            self._memo.put(key, result)
        return result

    def describe(self, taxonomy: str) -> str:
        """Return a taxonomy code with its name when the policy names it."""
        name = self.specialist_taxonomies.get(taxonomy) or self.named_other_taxonomies.get(taxonomy)
        return f"{taxonomy} ({name})" if name else taxonomy


# What a branch of criterion A decides: status, reason, evidence (mutable: the caller appends),
# explanation, and what a pend needs.
_Branch = tuple[CriterionStatus, ReasonCode, list[str], str, tuple[InformationNeed, ...]]
_NEEDS_STATUS = (InformationNeed.DISEASE_STATUS,)
_NEEDS_DIAGNOSIS = (InformationNeed.DIAGNOSIS_CODE,)
_NEEDS_PRIMARY = (InformationNeed.PRIMARY_DIAGNOSIS,)
_ATTESTED_ADVANCED = frozenset({DiseaseStatus.METASTATIC, DiseaseStatus.RECURRENT})


def _joined(codes: list[str]) -> str:
    return ", ".join(codes)


def recurrent_or_metastatic(claim: Claim, rule: DiseaseStageRule) -> CriterionResult:
    """Criterion 1.A, "Patient has recurrent or metastatic disease", for the rule's condition.

    Reads every ICD-10 diagnosis code on the claim (qualifier per the rule; others are listed in the
    evidence as ignored) and the attested disease status. MET: a condition code (primary or history)
    plus a distant secondary with no other active primary; an attested RECURRENT/METASTATIC status
    with a condition code; history plus regional nodes (an inferred recurrence). NOT_MET: attested
    EARLY/LOCALLY_ADVANCED, another cancer only, a metastasis TO the site only, in-situ disease only.
    UNKNOWN (with what is needed) whenever the codes cannot tell: history or a primary beside another
    active primary and a secondary, history plus a new primary (new primary or recurrence), an
    attestation contradicting the codes, a secondary without a primary, no usable code.
    """
    found = rule.codes.read(claim.diagnoses)
    attested = DiseaseStatus.UNKNOWN if claim.attestation is None else claim.attestation.disease_status
    families = found.families
    condition_codes = families.get(CodeFamily.PRIMARY, []) + families.get(CodeFamily.HISTORY, [])
    if condition_codes:
        status, reason, evidence, explanation, needs = _with_condition_code(
            rule, families, condition_codes, attested
        )
    else:
        status, reason, evidence, explanation, needs = _without_condition_code(rule, families, attested)
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
        needs=needs if status is _UNKNOWN else (),
    )


def _attested_stage(rule: DiseaseStageRule, attested: DiseaseStatus, evidence: list[str]) -> _Branch:
    """Clause 1.A with EARLY or LOCALLY_ADVANCED attested: neither is recurrent or metastatic."""
    if attested is DiseaseStatus.EARLY:
        why = f"Early {rule.condition} is attested; the policy covers only recurrent or metastatic disease."
        return _NOT_MET, ReasonCode.ATTESTED_EARLY, evidence, why, ()
    why = (
        f"Locally advanced {rule.condition} is attested; the policy covers only recurrent or metastatic "
        "disease (the FDA label's locally advanced indication is not a criterion)."
    )
    return _NOT_MET, ReasonCode.ATTESTED_LOCALLY_ADVANCED, evidence, why, ()


def _attested_advanced(rule: DiseaseStageRule, attested: DiseaseStatus, evidence: list[str]) -> _Branch:
    """Clause 1.A with RECURRENT or METASTATIC attested beside a condition code."""
    codes = _joined([code for code in evidence if not code.startswith("attested")])
    if attested is DiseaseStatus.METASTATIC:
        why = f"Metastatic disease is attested for {rule.condition} ({codes})."
        return _MET, ReasonCode.ATTESTED_METASTATIC, evidence, why, ()
    why = f"Recurrent disease is attested for {rule.condition} ({codes})."
    return _MET, ReasonCode.ATTESTED_RECURRENT, evidence, why, ()


def _with_distant(
    rule: DiseaseStageRule,
    families: dict[CodeFamily, list[str]],
    condition_codes: list[str],
    distant: list[str],
    attested: DiseaseStatus,
) -> _Branch:
    """Clause 1.A when a condition code and a distant secondary are both coded."""
    codes = _joined(condition_codes)
    other = families.get(CodeFamily.OTHER_MALIGNANT, [])
    evidence = condition_codes + other + distant
    if attested in _NOT_ADVANCED:
        why = (
            f"{attested.value} is attested, but the codes show {rule.condition} ({codes}) with distant "
            f"secondary {_joined(distant)}; need the disease status clarified."
        )
        return _UNKNOWN, ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES, evidence, why, _NEEDS_STATUS
    if not other:
        why = f"Metastatic {rule.condition}: {codes} with distant secondary {_joined(distant)}."
        return _MET, ReasonCode.METASTATIC_BY_CODES, evidence, why, ()
    if attested in _ATTESTED_ADVANCED:
        return _attested_advanced(rule, attested, evidence)
    # ICD-10 does not link a secondary to its primary (docs/policy.md §8): with another active primary
    # coded, the secondary may come from it.
    if families.get(CodeFamily.PRIMARY):
        why = (
            f"Active {rule.condition} ({codes}) and another active primary ({_joined(other)}) are both "
            f"coded; the secondary {_joined(distant)} may come from either; need the disease status."
        )
        return _UNKNOWN, ReasonCode.SECONDARY_ORIGIN_UNCLEAR, evidence, why, _NEEDS_STATUS
    why = (
        f"History of {rule.condition} ({codes}) means no remaining {rule.condition}; the secondary "
        f"{_joined(distant)} may come from the active primary {_joined(other)}; need the disease status."
    )
    return _UNKNOWN, ReasonCode.HISTORY_WITH_OTHER_ACTIVE_PRIMARY, evidence, why, _NEEDS_STATUS


def _with_condition_code(  # noqa: PLR0911 - one return per branch of the clause
    rule: DiseaseStageRule,
    families: dict[CodeFamily, list[str]],
    condition_codes: list[str],
    attested: DiseaseStatus,
) -> _Branch:
    """Clause 1.A when a primary or history code shows the condition itself."""
    distant = families.get(CodeFamily.DISTANT_SECONDARY)
    if distant:
        return _with_distant(rule, families, condition_codes, distant, attested)
    if attested in _ATTESTED_ADVANCED:
        return _attested_advanced(rule, attested, list(condition_codes))
    if attested in _NOT_ADVANCED:
        return _attested_stage(rule, attested, list(condition_codes))
    history = families.get(CodeFamily.HISTORY)
    primary = families.get(CodeFamily.PRIMARY, [])
    nodes = families.get(CodeFamily.REGIONAL_NODE, [])
    other = families.get(CodeFamily.OTHER_MALIGNANT, [])
    if history and primary:
        # Z85.3 has no laterality; a new C50 may be a second primary, neither recurrent nor metastatic.
        why = (
            f"History of {rule.condition} ({_joined(history)}) with a new {_joined(primary)}: a recurrence "
            f"or a new primary (Z85.3 has no laterality); need the disease status."
        )
        return _UNKNOWN, ReasonCode.NEW_PRIMARY_OR_RECURRENCE, history + primary + nodes, why, _NEEDS_STATUS
    if history and nodes and other:
        why = (
            f"History of {rule.condition} ({_joined(history)}) with nodes {_joined(nodes)} beside another "
            f"active primary ({_joined(other)}): the nodes may come from it; need the disease status."
        )
        return (
            _UNKNOWN,
            ReasonCode.HISTORY_WITH_OTHER_ACTIVE_PRIMARY,
            history + other + nodes,
            why,
            _NEEDS_STATUS,
        )
    if history and nodes:
        why = (
            f"History of {rule.condition} ({_joined(history)}) with new nodal disease {_joined(nodes)}: "
            "read as a regional recurrence (an inference; no ICD-10 code says recurrent)."
        )
        return _MET, ReasonCode.RECURRENCE_INFERRED_FROM_HISTORY, history + nodes, why, ()
    evidence = condition_codes + nodes
    node_note = f"; regional nodes ({_joined(nodes)}) are not distant metastasis" if nodes else ""
    why = (
        f"{_joined(evidence)} cannot tell early, locally advanced, recurrent and metastatic "
        f"{rule.condition} apart{node_note}; need the disease status."
    )
    return _UNKNOWN, ReasonCode.DISEASE_STATUS_NEEDED, evidence, why, _NEEDS_STATUS


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
        return _NOT_MET, ReasonCode.OTHER_PRIMARY_CANCER, list(other), why, ()
    distant = families.get(CodeFamily.DISTANT_SECONDARY, [])
    secondary = distant + families.get(CodeFamily.REGIONAL_NODE, [])
    if secondary:
        evidence = secondary + families.get(CodeFamily.SECONDARY_OF_SITE, [])
        if distant and attested in _NOT_ADVANCED:
            why = (
                f"{attested.value} is attested, but distant secondary {_joined(distant)} is coded; "
                f"need the disease status clarified and the primary diagnosis ({rule.code_hint})."
            )
            return (
                _UNKNOWN,
                ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES,
                evidence,
                why,
                (InformationNeed.DISEASE_STATUS, InformationNeed.PRIMARY_DIAGNOSIS),
            )
        if attested in _NOT_ADVANCED:
            return _attested_stage(rule, attested, evidence)
        why = (
            f"Secondary {_joined(evidence)} without a {rule.condition} code does not show "
            f"{rule.condition}; need the primary diagnosis ({rule.code_hint})."
        )
        return _UNKNOWN, ReasonCode.PRIMARY_SITE_NOT_SHOWN, evidence, why, _NEEDS_PRIMARY
    to_site = families.get(CodeFamily.SECONDARY_OF_SITE)
    if to_site:
        why = (
            f"{_joined(to_site)} is a secondary neoplasm of the {rule.site} (spread from another "
            f"primary), not {rule.condition}."
        )
        return _NOT_MET, ReasonCode.METASTASIS_TO_SITE_ONLY, list(to_site), why, ()
    in_situ = families.get(CodeFamily.IN_SITU)
    if in_situ:
        if attested in _ATTESTED_ADVANCED:
            why = (
                f"{attested.value} is attested, but the only {rule.site} code is carcinoma in situ "
                f"({_joined(in_situ)}), which cannot be {attested.value.lower()}; need the invasive "
                f"diagnosis code ({rule.code_hint})."
            )
            return _UNKNOWN, ReasonCode.ATTESTATION_CONFLICTS_WITH_CODES, list(in_situ), why, _NEEDS_DIAGNOSIS
        why = (
            f"Carcinoma in situ ({_joined(in_situ)}) is not invasive {rule.condition} and cannot be "
            "recurrent or metastatic."
        )
        return _NOT_MET, ReasonCode.IN_SITU_ONLY, list(in_situ), why, ()
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
    return _UNKNOWN, ReasonCode.DIAGNOSIS_CODE_MISSING, [], why, _NEEDS_DIAGNOSIS


# ---- criterion B ---------------------------------------------------------------------------------


class _Who:
    """What the rule knows of one person's specialty (prescriber or consultant)."""

    __slots__ = ("evidence", "is_specialist", "problem", "shown")

    def __init__(
        self, is_specialist: bool | None, evidence: str, problem: str | None = None, shown: str | None = None
    ) -> None:
        self.is_specialist = is_specialist  # None: not known
        self.evidence = evidence  # codes only, for the evidence list
        self.problem = problem  # why the NPI does not resolve to an active individual, if it does not
        self.shown = shown or evidence  # the same with taxonomy names, for explanations


def _source(provider: ProviderFacts, facts: Facts) -> str:
    version = provider.directory_version or facts.directory_version or "unversioned"
    return f"source=directory {version}"


def _from_directory(rule: SpecialistRule, role: str, provider: ProviderFacts, facts: Facts) -> _Who:
    """Read one directory entry: any listed taxonomy that is a physician specialty of the rule counts."""
    source = _source(provider, facts)
    if provider.status is not ProviderStatus.ACTIVE:
        problem = {
            ProviderStatus.NOT_FOUND: "is not in the directory",
            ProviderStatus.DEACTIVATED: "is deactivated on the date of service",
            ProviderStatus.ORGANISATION: "is an organisation (entity type 2), not a prescriber",
        }[provider.status]
        return _Who(None, f"{role} NPI {provider.npi} {provider.status.value} ({source})", problem)
    if not provider.taxonomies:
        return _Who(None, f"{role} NPI {provider.npi} lists no taxonomy ({source})")
    listed = ", ".join(
        f"{code}{' primary' if code == provider.primary_taxonomy else ''}" for code in provider.taxonomies
    )
    named = ", ".join(rule.describe(code) for code in provider.taxonomies)
    hits = [code for code in provider.taxonomies if code in rule.specialist_taxonomies]
    return _Who(
        bool(hits), f"{role} taxonomies {listed} ({source})", shown=f"{role} taxonomies {named} ({source})"
    )


def _prescriber(rule: SpecialistRule, claim: Claim, facts: Facts) -> _Who:
    """Read the prescriber's specialty: the claim's taxonomy as sent, else the directory, else unknown."""
    taxonomy = claim.prescriber.taxonomy
    if taxonomy is not None:
        return _Who(
            taxonomy in rule.specialist_taxonomies,
            f"prescriber taxonomy {taxonomy} (source=claim)",
            shown=f"prescriber taxonomy {rule.describe(taxonomy)} (source=claim)",
        )
    if facts.prescriber is None:
        return _Who(None, "prescriber taxonomy unknown (no directory lookup)")
    return _from_directory(rule, "prescriber", facts.prescriber, facts)


def _consultant(rule: SpecialistRule, claim: Claim, facts: Facts) -> _Who | None:
    """Read the named consultant's specialty; ``None`` when no consultant is named."""
    consultation = None if claim.attestation is None else claim.attestation.consultation
    if consultation is None:
        return None
    taxonomy, npi = consultation.consultant_taxonomy, consultation.consultant_npi
    if taxonomy is not None:
        return _Who(
            taxonomy in rule.specialist_taxonomies,
            f"consultant taxonomy {taxonomy} (source=claim)",
            shown=f"consultant taxonomy {rule.describe(taxonomy)} (source=claim)",
        )
    if npi is None:
        return None
    if not npi_is_valid(npi):
        return _Who(None, f"consultant NPI {npi} fails the check digit", "fails the NPI check digit")
    if facts.consultant is None or facts.consultant.npi != npi:
        return _Who(None, f"consultant NPI {npi} not looked up", "was not looked up in a directory")
    return _from_directory(rule, "consultant", facts.consultant, facts)


def _result(  # noqa: PLR0917 - private, one call shape for every branch
    rule: SpecialistRule,
    status: CriterionStatus,
    reason: ReasonCode,
    evidence: list[str],
    why: str,
    needs: tuple[InformationNeed, ...] = (),
) -> CriterionResult:
    return CriterionResult(
        criterion_id=rule.criterion_id,
        status=status,
        reason_code=reason,
        evidence=tuple(evidence),
        explanation=why,
        needs=needs,
    )


def prescribed_by_or_with_specialist(  # noqa: PLR0911 - one return per branch of the clause
    claim: Claim, rule: SpecialistRule, facts: Facts = _NO_FACTS
) -> CriterionResult:
    """Criterion 1.B, "prescribed by or in consultation with an oncologist" (the rule's specialist).

    The prescriber's specialty is the claim's taxonomy when sent (used as sent), else every taxonomy
    the directory lists for the NPI (any physician specialty of the rule counts), else unknown. MET
    when the prescriber is a specialist, or consultation is attested YES with a consultant who is one
    (by the taxonomy sent, or resolved through the directory). UNKNOWN, with what is needed, when the
    prescriber's NPI does not resolve to an active individual, when a consultant is unresolved, is
    the prescriber, or is not a specialist under YES, when NO is attested beside a specialist
    consultant, and when nothing tells. NOT_MET only when the prescriber is known not to be a
    specialist and consultation is attested NO. Never reads an unknown as a "no".
    """
    prescriber = _prescriber(rule, claim, facts)
    evidence = [prescriber.evidence]
    a_specialist, specialist = rule.a_specialist, rule.specialist
    if prescriber.is_specialist:
        why = f"Prescribed by {a_specialist}: {prescriber.shown}."
        return _result(rule, _MET, ReasonCode.PRESCRIBER_IS_SPECIALIST, evidence, why)
    if prescriber.problem is not None:
        why = (
            f"The prescriber NPI {prescriber.problem}, so no specialty can be read and no PA can attach "
            "to it; need the prescriber's identity verified."
        )
        return _result(
            rule,
            _UNKNOWN,
            ReasonCode.PRESCRIBER_NOT_RESOLVED,
            evidence,
            why,
            (InformationNeed.PRESCRIBER_IDENTITY,),
        )
    consultation = None if claim.attestation is None else claim.attestation.consultation
    consulted = TriState.UNKNOWN if consultation is None else consultation.status
    consultant = _consultant(rule, claim, facts)
    if consultant is not None:
        evidence.append(consultant.evidence)
    is_self = consultation is not None and consultation.consultant_npi == claim.prescriber.npi
    if consulted is TriState.YES:
        evidence.append("consultation attested YES")
        return _consultation_yes(rule, prescriber, consultant, is_self=is_self, evidence=evidence)
    if consulted is TriState.NO:
        evidence.append("consultation attested NO")
        if consultant is not None and consultant.is_specialist and not is_self:
            why = (
                f"Consultation is attested NO, yet {a_specialist} is named as consultant "
                f"({consultant.shown}); need the consultation status clarified."
            )
            return _result(
                rule,
                _UNKNOWN,
                ReasonCode.CONSULTATION_CONFLICTS_WITH_CONSULTANT,
                evidence,
                why,
                (InformationNeed.CONSULTATION_STATUS,),
            )
    if prescriber.is_specialist is None:
        why = (
            f"The prescriber's specialty is unknown and no consultation with {a_specialist} is "
            f"attested; need the prescriber's specialty or the consulting {specialist}."
        )
        return _result(
            rule,
            _UNKNOWN,
            ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN,
            evidence,
            why,
            (InformationNeed.PRESCRIBER_SPECIALTY,),
        )
    if consulted is TriState.NO:
        why = (
            f"The prescriber is not a physician {specialist} ({prescriber.shown}), and "
            f"consultation with {a_specialist} is attested as NO."
        )
        return _result(rule, _NOT_MET, ReasonCode.PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION, evidence, why)
    why = (
        f"The prescriber is not a physician {specialist} ({prescriber.shown}); need whether it is "
        f"prescribed in consultation with {a_specialist}."
    )
    return _result(
        rule,
        _UNKNOWN,
        ReasonCode.CONSULTATION_STATUS_NEEDED,
        evidence,
        why,
        (InformationNeed.CONSULTATION_STATUS,),
    )


def _consultation_yes(
    rule: SpecialistRule, prescriber: _Who, consultant: _Who | None, *, is_self: bool, evidence: list[str]
) -> CriterionResult:
    """Clause 1.B when consultation is attested YES and the prescriber is not known to be a specialist."""
    a_specialist, specialist = rule.a_specialist, rule.specialist
    if is_self:
        needs: tuple[InformationNeed, ...] = (InformationNeed.CONSULTANT_IDENTITY,)
        if prescriber.is_specialist is None:
            needs = (InformationNeed.CONSULTANT_IDENTITY, InformationNeed.PRESCRIBER_SPECIALTY)
        why = (
            "The consultant NPI is the prescriber's own: that is not a consultation; need the consulting "
            f"{specialist}'s NPI (or the prescriber's specialty)."
        )
        return _result(rule, _UNKNOWN, ReasonCode.CONSULTANT_IS_PRESCRIBER, evidence, why, needs)
    if consultant is None:
        why = (
            f"Consultation with {a_specialist} is attested without the consultant's NPI or "
            "taxonomy; need the consulting physician."
        )
        return _result(
            rule,
            _UNKNOWN,
            ReasonCode.CONSULTANT_NOT_IDENTIFIED,
            evidence,
            why,
            (InformationNeed.CONSULTANT_IDENTITY,),
        )
    if consultant.is_specialist:
        why = f"Prescribed in consultation with {a_specialist}: {consultant.shown}."
        return _result(rule, _MET, ReasonCode.CONSULTANT_IS_SPECIALIST, evidence, why)
    if consultant.is_specialist is None:
        problem = consultant.problem or "lists no taxonomy"
        why = (
            f"Consultation with {a_specialist} is attested, but the consultant NPI {problem}; "
            "an unresolved consultant is not accepted; need the consultant's identity."
        )
        return _result(
            rule,
            _UNKNOWN,
            ReasonCode.CONSULTANT_NOT_RESOLVED,
            evidence,
            why,
            (InformationNeed.CONSULTANT_IDENTITY,),
        )
    why = (
        f"Consultation with {a_specialist} is attested, but the consultant's specialty does not identify "
        f"a physician {specialist} ({consultant.shown}; taxonomies are self-reported); need the "
        "consultant's specialty confirmed."
    )
    return _result(
        rule,
        _UNKNOWN,
        ReasonCode.CONSULTANT_NOT_SPECIALIST,
        evidence,
        why,
        (InformationNeed.CONSULTANT_SPECIALTY,),
    )
