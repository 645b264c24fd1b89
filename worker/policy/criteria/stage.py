"""The disease-stage criterion (1.A): recurrent or metastatic disease of the rule's condition.

``DiseaseStageRule`` is its compiled rule data; ``recurrent_or_metastatic`` reads the claim's ICD-10
codes and attested disease status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from worker.contracts.codes import CriterionStatus, DiseaseStatus, InformationNeed, ReasonCode
from worker.contracts.model import CriterionResult
from worker.lru import LruMemo
from worker.policy.criteria._common import MEMO_LIMIT as _MEMO_LIMIT
from worker.policy.criteria._common import MET as _MET
from worker.policy.criteria._common import NO_FACTS as _NO_FACTS
from worker.policy.criteria._common import NOT_MET as _NOT_MET
from worker.policy.criteria._common import UNKNOWN as _UNKNOWN
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes

if TYPE_CHECKING:
    from worker.contracts.model import Claim
    from worker.policy.facts import Facts

__all__ = ["DiseaseStageRule", "recurrent_or_metastatic"]

_NOT_ADVANCED = frozenset({DiseaseStatus.EARLY, DiseaseStatus.LOCALLY_ADVANCED})

# Everything criterion A reads: the (code, qualifier) pairs in order, and the attested disease status.
_DiseaseKey = tuple[tuple[tuple[str, str], ...], DiseaseStatus]

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
    ReasonCode.PRIMARY_SITE_UNSPECIFIED,
    ReasonCode.DIAGNOSIS_CODE_MISSING,
)


@dataclass(frozen=True, slots=True, eq=False)
class DiseaseStageRule:
    """Compiled data for a "recurrent or metastatic <condition>" criterion.

    The ``asks_*`` flags are the version-gated readings of the catalog entry (docs/policy.md, issue 23
    section): True, the newest reading, asks (pends) where the codes cannot tell; False reproduces an
    earlier version's notes.
    """

    reason_codes: ClassVar[tuple[ReasonCode, ...]] = _DISEASE_REASONS
    """Every reason code this kind of criterion can emit (a closed set, e.g. for metric labels)."""

    criterion_id: str
    clause: str
    condition: str
    site: str
    codes: DiagnosisCodes
    code_hint: str
    asks_other_primary: bool = True  # a secondary beside another active primary may be that one's
    asks_history_with_primary: bool = True  # Z85.3 + a new C50: a recurrence or a new primary
    asks_in_situ_attested: bool = True  # in situ only, RECURRENT/METASTATIC attested: a contradiction
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
    other = _other_primaries(rule, families)
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


def _other_primaries(rule: DiseaseStageRule, families: dict[CodeFamily, list[str]]) -> list[str]:
    """Return the coded primaries that may have spread instead of the condition; none when not asked."""
    if not rule.asks_other_primary:
        return []  # earlier reading (2020.09-1): a condition code + a secondary is the condition's
    return families.get(CodeFamily.OTHER_MALIGNANT, []) + families.get(CodeFamily.UNSPECIFIED_PRIMARY, [])


def _primary_unspecified(
    rule: DiseaseStageRule,
    families: dict[CodeFamily, list[str]],
    unspecified: list[str],
    attested: DiseaseStatus,
) -> _Branch:
    """Clause 1.A when a malignancy of unspecified primary site (C80.1) is coded without a condition code.

    The primary is unknown, not another cancer (docs/policy.md, issue 23 section): it may be the
    condition, so the claim asks for the primary, as a secondary alone does, and never fails A.
    """
    distant = families.get(CodeFamily.DISTANT_SECONDARY, [])
    secondary = distant + families.get(CodeFamily.REGIONAL_NODE, [])
    other = families.get(CodeFamily.OTHER_MALIGNANT, [])
    evidence = unspecified + other + secondary + families.get(CodeFamily.SECONDARY_OF_SITE, [])
    beside = f" beside {_joined(other + secondary)}" if other or secondary else ""
    why = (
        f"{_joined(unspecified)} names no primary site{beside}: the primary is unknown, not a cancer "
        f"other than {rule.condition}; need the primary diagnosis ({rule.code_hint})."
    )
    needs: tuple[InformationNeed, ...] = _NEEDS_PRIMARY
    if distant and attested in _NOT_ADVANCED:
        needs = (InformationNeed.DISEASE_STATUS, InformationNeed.PRIMARY_DIAGNOSIS)
    return _UNKNOWN, ReasonCode.PRIMARY_SITE_UNSPECIFIED, evidence, why, needs


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
    other = _other_primaries(rule, families)
    if history and primary and not rule.asks_history_with_primary:
        # Earlier reading (2020.09-1): history + an active C50 is a recurrence, an inference.
        why = (
            f"History of {rule.condition} ({_joined(history)}) with active {_joined(primary + nodes)}: "
            "read as a recurrence (an inference; no ICD-10 code says recurrent)."
        )
        return _MET, ReasonCode.RECURRENCE_INFERRED_FROM_HISTORY, history + primary + nodes, why, ()
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
    unspecified = families.get(CodeFamily.UNSPECIFIED_PRIMARY)
    if unspecified:
        return _primary_unspecified(rule, families, unspecified, attested)
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
        if attested in _ATTESTED_ADVANCED and rule.asks_in_situ_attested:
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
