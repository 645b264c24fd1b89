"""The specialist criterion (1.B): prescribed by, or in consultation with, the rule's specialist.

``SpecialistRule`` is its compiled rule data; ``prescribed_by_or_with_specialist`` weighs the prescriber's
and consultant's specialties (read by ``specialty``, from the claim or the prescriber directory) and the
consultation status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from worker.contracts.codes import CriterionStatus, InformationNeed, ReasonCode, TriState
from worker.contracts.model import CriterionResult
from worker.lru import LruMemo
from worker.policy.criteria._common import MEMO_LIMIT as _MEMO_LIMIT
from worker.policy.criteria._common import MET as _MET
from worker.policy.criteria._common import NO_FACTS as _NO_FACTS
from worker.policy.criteria._common import NOT_MET as _NOT_MET
from worker.policy.criteria._common import UNKNOWN as _UNKNOWN
from worker.policy.criteria.specialty import (
    Specialty,
    consultant_specialty,
    npi_only_consultant,
    prescriber_specialty,
)
from worker.policy.facts import Facts, ProviderFacts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.contracts.model import Claim

__all__ = ["SpecialistRule", "prescribed_by_or_with_specialist"]

# Everything criterion B reads: prescriber taxonomy; consultation status, consultant taxonomy and NPI;
# whether the consultant is the prescriber; the directory's facts on prescriber and consultant.
_SpecialistKey = tuple[
    str | None,
    tuple[TriState, str | None, str | None] | None,
    bool,
    ProviderFacts | None,
    ProviderFacts | None,
]

_SPECIALIST_REASONS = (
    ReasonCode.PRESCRIBER_IS_SPECIALIST,
    ReasonCode.CONSULTANT_IS_SPECIALIST,
    ReasonCode.CONSULTATION_ATTESTED,
    ReasonCode.CONSULTANT_NOT_SPECIALIST,
    ReasonCode.CONSULTANT_NOT_RESOLVED,
    ReasonCode.CONSULTANT_IS_PRESCRIBER,
    ReasonCode.CONSULTATION_CONFLICTS_WITH_CONSULTANT,
    ReasonCode.PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION,
    ReasonCode.PRESCRIBER_NOT_RESOLVED,
    ReasonCode.CONSULTANT_NOT_IDENTIFIED,
    ReasonCode.CONSULTATION_STATUS_NEEDED,
    ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN,
    ReasonCode.PRESCRIBER_SPECIALTY_NOT_CONFIRMED,
)


@dataclass(frozen=True, slots=True, eq=False)
class SpecialistRule:
    """Compiled data for a "prescribed by or in consultation with a <specialist>" criterion.

    ``asks_consultant_under_no`` and ``accepts_npi_only_consultant`` are the version-gated readings of
    the catalog entry (docs/policy.md, issue 23 section); the defaults are the newest reading.
    """

    reason_codes: ClassVar[tuple[ReasonCode, ...]] = _SPECIALIST_REASONS
    """Every reason code this kind of criterion can emit (a closed set, e.g. for metric labels)."""

    criterion_id: str
    clause: str
    specialist: str
    a_specialist: str
    specialist_taxonomies: Mapping[str, str]
    named_other_taxonomies: Mapping[str, str]
    asks_consultant_under_no: bool = True  # NO attested beside a named specialist consultant: ask
    accepts_npi_only_consultant: bool = False  # YES + a consultant NPI of unknown specialty: accept
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
    prescriber = prescriber_specialty(rule, claim, facts)
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
    consultant = consultant_specialty(rule, claim, facts)
    if consultant is not None:
        evidence.append(consultant.evidence)
    is_self = consultation is not None and consultation.consultant_npi == claim.prescriber.npi
    if consulted is TriState.YES:
        evidence.append("consultation attested YES")
        npi_only = rule.accepts_npi_only_consultant and npi_only_consultant(claim, facts)
        return _consultation_yes(
            rule, prescriber, consultant, is_self=is_self, npi_only=npi_only, evidence=evidence
        )
    if consulted is TriState.NO:
        evidence.append("consultation attested NO")
        # 2020.09-1 ignores a consultant named without YES (asks_consultant_under_no False).
        if (
            consultant is not None
            and consultant.is_specialist
            and not is_self
            and rule.asks_consultant_under_no
        ):
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
        if prescriber.disputed:
            why = (
                f"The specialty sent on the claim is not confirmed by the directory ({prescriber.shown}); "
                f"a self-reported specialty alone does not approve; need the prescriber's specialty "
                f"confirmed or the consulting {specialist}."
            )
            reason = ReasonCode.PRESCRIBER_SPECIALTY_NOT_CONFIRMED
        else:
            why = (
                f"The prescriber's specialty is unknown and no consultation with {a_specialist} is "
                f"attested; need the prescriber's specialty or the consulting {specialist}."
            )
            reason = ReasonCode.PRESCRIBER_SPECIALTY_UNKNOWN
        return _result(rule, _UNKNOWN, reason, evidence, why, (InformationNeed.PRESCRIBER_SPECIALTY,))
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
    rule: SpecialistRule,
    prescriber: Specialty,
    consultant: Specialty | None,
    *,
    is_self: bool,
    npi_only: bool,
    evidence: list[str],
) -> CriterionResult:
    """Clause 1.B when consultation is attested YES and the prescriber is not known to be a specialist.

    ``npi_only``: the rule accepts an attested consultation with a consultant named by NPI alone
    (2020.09-1) and this consultant is one (``npi_only_consultant``).
    """
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
    if consultant.is_specialist is None and npi_only:
        why = (
            f"Consultation with {a_specialist} is attested and the consultant is named by NPI; the "
            "consultant's specialty is not known, and this catalog version accepts the attestation."
        )
        return _result(rule, _MET, ReasonCode.CONSULTATION_ATTESTED, evidence, why)
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
