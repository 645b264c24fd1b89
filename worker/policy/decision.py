"""The pure decision for one claim: transaction, product, criteria, outcome, window, PA number, rejects."""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING

from worker.contracts.codes import (
    CriterionStatus,
    DecisionSource,
    InformationNeed,
    Outcome,
    ReasonCode,
    Recommendation,
    TransactionCode,
)
from worker.contracts.icd10cm import ICD10_QUALIFIER, ICD10CM_REFERENCE
from worker.contracts.icd10cm import RELEASE as ICD10CM_RELEASE
from worker.contracts.model import CriterionResult, Decision, ProductMatch, Reject
from worker.policy.definition import ProductScope
from worker.policy.edits import failed_edits
from worker.policy.window import approval_window

if TYPE_CHECKING:
    from datetime import datetime

    from worker.contracts.model import Claim
    from worker.policy.definition import Policy
    from worker.policy.facts import Facts

__all__ = [
    "DIRECTORY_REFERENCE",
    "authorization_number",
    "decide",
    "is_pa_number",
    "rejected_by_edits",
]

DIRECTORY_REFERENCE = "prescriber-directory"
"""The name under which a decision records the prescriber directory's version."""

_MET = CriterionStatus.MET
_NOT_MET = CriterionStatus.NOT_MET
_UNKNOWN = CriterionStatus.UNKNOWN
_PA_DIGITS = 10  # 498-PY is 9(11): ten digits from the claim plus one check digit
_PA_MODULUS = 10**_PA_DIGITS
# Luhn: the digit sum of twice each digit, by digit.
_DOUBLED = {str(d): (2 * d) // 10 + (2 * d) % 10 for d in range(10)}
_SINGLE = {str(d): d for d in range(10)}


@functools.cache
def _reject(code: str, field: str | None = None) -> Reject:
    """Return the (immutable, shared) Reject for a code and field; policies name few of them."""
    return Reject(code=code, field=field)


def authorization_number(policy_id: str, service_provider_id: str, claim_id: str, attempt: int = 0) -> str:
    """Return the 11-digit PA number (498-PY, 9(11)) for an approval of a claim under ``policy_id``.

    Deterministic: ten digits from a BLAKE2b digest of the policy id, the pharmacy (201-B1) and the
    claim id, then a Luhn check digit so a mistyped number is caught. The same claim gets the same
    number under every version of a policy (a replay compares like with like). ``attempt`` > 0 is the
    rehash the store asks for when the number belongs to another authorization (a collision among
    10^10 numbers: docs/authorizations.md); attempt 0 is the number every earlier release issued.
    """
    suffix = f"|{attempt}" if attempt else ""
    text = f"{policy_id}|{service_provider_id}|{claim_id}{suffix}".encode()
    number = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") % _PA_MODULUS
    base = f"{number:0{_PA_DIGITS}d}"
    return base + _check_digit(base)


def _check_digit(base: str) -> str:
    """Return the Luhn digit that makes ``base`` + digit pass the check."""
    # Double every second digit from the right of ``base`` + check, i.e. ``base``'s last digit and
    # every second one before it.
    total = sum([_DOUBLED[ch] for ch in base[::-2]]) + sum([_SINGLE[ch] for ch in base[-2::-2]])
    return str((10 - total % 10) % 10)


def is_pa_number(text: str) -> bool:
    """Tell whether ``text`` is a well-formed PA number: 11 ASCII digits whose last is the Luhn digit."""
    return (
        len(text) == _PA_DIGITS + 1
        and text.isascii()
        and text.isdigit()
        and _check_digit(text[:_PA_DIGITS]) == text[-1]
    )


def decide(  # noqa: PLR0911 - one return per outcome
    claim: Claim,
    facts: Facts,
    policy: Policy,
    decided_at: datetime,
    *,
    automated_denials: bool = False,
    dispensed: bool = True,
) -> Decision:
    """Decide one validated claim under ``policy``, with the looked-up ``facts``; no I/O, no clock.

    Returns a Decision naming the policy id and version and every reference data version read (the
    prescriber directory's; the ICD-10-CM release when the criteria read ICD-10 codes):

    - NOT_APPLICABLE when the product is identified as another product than the policy's, B2 included:
      a reversal of another drug is answered downstream, as its billing was.
    - REVERSED for a B2 reversal of the policy's product (or an unidentified one): no PA decision.
    - REJECTED (``FIELD_EDIT``) when the claim fails a plausibility edit (``edits.failed_edits``: dates
      against its own submission time, quantities when ``dispensed``); nothing is evaluated.
    - PENDED (PRODUCT_IDENTITY, reject 21 by default) when the product cannot be identified.
    - APPROVED when every criterion is MET: the inclusive approval window and an 11-digit PA number.
    - REFERRED to clinical review (recommendation DENY, reject 3W) when any criterion is NOT_MET;
      DENIED instead (reject 3Y) only when ``automated_denials`` is set (a plan's opt-in).
    - PENDED otherwise (some criterion UNKNOWN) with the structured list of what is needed
      (reject 75, plus 39 when a diagnosis code is needed, 56 when the prescriber NPI does not match).

    B1 and B3 are decided alike. Never raises for a validated claim.
    """
    versions = _reference_versions(facts)
    scope, matched = policy.match_product(claim.product)
    if scope is ProductScope.OTHER_PRODUCT:  # a B2 of another drug too: this step answers only its own
        return _not_applicable(policy, decided_at, claim, versions)
    if claim.transaction_code is TransactionCode.REVERSAL:
        return _decision(
            policy,
            decided_at,
            Outcome.REVERSED,
            f"B2 reversal of claim {claim.original_claim_id}: no prior-authorization decision is made.",
            versions=versions,
        )
    failures = failed_edits(claim, policy, dispensed=dispensed)
    if failures:
        return rejected_by_edits(policy, decided_at, failures, matched, versions)
    if scope is ProductScope.UNIDENTIFIED:
        return _decision(
            policy,
            decided_at,
            Outcome.PENDED,
            f"Pended under {policy.policy_id} {policy.version}: Product/Service ID qualifier "
            f"{claim.product.qualifier} with this ID cannot be identified; it may be {policy.product_name}, "
            "so it is not waved through; need the product's identity (an NDC with qualifier "
            f"{policy.product_qualifier}).",
            rejects=(_reject(policy.reject_product_not_identified, "product.product_id"),),
            needs=(InformationNeed.PRODUCT_IDENTITY,),
            source=DecisionSource.PRODUCT_NOT_IDENTIFIED,
            versions=versions,
        )
    results = tuple([criterion.evaluate(claim, facts) for criterion in policy.criteria])
    if any(diagnosis.qualifier == ICD10_QUALIFIER for diagnosis in claim.diagnoses):
        # The criteria read ICD-10 codes that the codec checked against this release (issue 23).
        versions = (*versions, (ICD10CM_REFERENCE, ICD10CM_RELEASE))
    not_met = tuple([r.criterion_id for r in results if r.status is _NOT_MET])
    if not_met:
        if automated_denials:
            return _decision(
                policy,
                decided_at,
                Outcome.DENIED,
                _summary("Denied (automated denials allowed by the plan)", policy, results, _NOT_MET),
                criteria=results,
                rejects=(_reject(policy.reject_denied),),
                matched=matched,
                recommendation=Recommendation.DENY,
                source=DecisionSource.AUTOMATED_RULE,
                source_criteria=not_met,
                versions=versions,
            )
        return _decision(
            policy,
            decided_at,
            Outcome.REFERRED,
            _summary("Referred to clinical review, recommendation deny", policy, results, _NOT_MET),
            criteria=results,
            rejects=(_reject(policy.reject_in_review),),
            matched=matched,
            recommendation=Recommendation.DENY,
            source=DecisionSource.CRITERIA_NOT_MET,
            source_criteria=not_met,
            versions=versions,
        )
    unknown = tuple([r.criterion_id for r in results if r.status is _UNKNOWN])
    if unknown:
        needs = tuple(dict.fromkeys(need for r in results for need in r.needs))
        return _decision(
            policy,
            decided_at,
            Outcome.PENDED,
            _summary("Pended, more information needed", policy, results, _UNKNOWN),
            criteria=results,
            rejects=_pend_rejects(policy, results, needs),
            matched=matched,
            needs=needs,
            source=DecisionSource.INFORMATION_MISSING,
            source_criteria=unknown,
            versions=versions,
        )
    effective, expiration = approval_window(claim.date_of_service, policy.approval_duration_years)
    met = ", ".join([f"{r.criterion_id} met ({r.reason_code.value})" for r in results])
    approval: dict[str, object] = {"reference_versions": versions} if versions else {}
    return Decision(
        outcome=Outcome.APPROVED,
        criteria=results,
        authorization_effective=effective,
        authorization_expiration=expiration,
        authorization_number=authorization_number(
            policy.policy_id, claim.service_provider_id, claim.claim_id
        ),
        matched_product=matched,
        policy_id=policy.policy_id,
        policy_version=policy.version,
        decided_at=decided_at,
        summary=f"Approved under {policy.policy_id} {policy.version} from {effective.isoformat()} "
        f"through {expiration.isoformat()}: {met}.",
        **approval,
    )


def rejected_by_edits(
    policy: Policy,
    decided_at: datetime,
    failures: tuple[tuple[Reject, str], ...],
    matched: ProductMatch | None = None,
    versions: tuple[tuple[str, str], ...] = (),
) -> Decision:
    """Return the REJECTED decision for a claim that fails plausibility edits: one reject per edit."""
    reasons = "; ".join(f"{why} ({reject.code})" for reject, why in failures)
    return _decision(
        policy,
        decided_at,
        Outcome.REJECTED,
        f"Rejected under {policy.policy_id} {policy.version} before the criteria: {reasons}. "
        "No prior-authorization decision was made and nothing was put on file.",
        rejects=tuple(reject for reject, _why in failures),
        matched=matched,
        source=DecisionSource.FIELD_EDIT,
        versions=versions,
    )


def _reference_versions(facts: Facts) -> tuple[tuple[str, str], ...]:
    """Return the reference data versions the facts came from (the directory's, when one was read)."""
    if facts.prescriber is None and facts.consultant is None:  # no directory was read
        return ()
    version = facts.directory_version
    for provider in (facts.prescriber, facts.consultant):
        if version is None and provider is not None:
            version = provider.directory_version
    return ((DIRECTORY_REFERENCE, version or "unversioned"),)


def _pend_rejects(
    policy: Policy, results: tuple[CriterionResult, ...], needs: tuple[InformationNeed, ...]
) -> tuple[Reject, ...]:
    rejects = [_reject(policy.reject_not_approved)]
    if InformationNeed.DIAGNOSIS_CODE in needs:
        rejects.append(_reject(policy.reject_missing_diagnosis, "diagnoses"))
    if any(r.reason_code is ReasonCode.PRESCRIBER_NOT_RESOLVED for r in results):
        rejects.append(_reject(policy.reject_prescriber_not_matched, "prescriber.npi"))
    return tuple(rejects)


def _decision(
    policy: Policy,
    decided_at: datetime,
    outcome: Outcome,
    summary: str,
    *,
    criteria: tuple[CriterionResult, ...] = (),
    rejects: tuple[Reject, ...] = (),
    matched: ProductMatch | None = None,
    needs: tuple[InformationNeed, ...] = (),
    recommendation: Recommendation | None = None,
    source: DecisionSource = DecisionSource.AUTOMATED_RULE,
    source_criteria: tuple[str, ...] = (),
    versions: tuple[tuple[str, str], ...] = (),
) -> Decision:
    # Only what differs from the defaults is passed: pydantic validates each passed field.
    fields: dict[str, object] = {}
    if criteria:
        fields["criteria"] = criteria
    if rejects:
        fields["rejects"] = rejects
    if matched is not None:
        fields["matched_product"] = matched
    if needs:
        fields["needs"] = needs
    if recommendation is not None:
        fields["recommendation"] = recommendation
    if source is not DecisionSource.AUTOMATED_RULE:
        fields["decision_source"] = source
    if source_criteria:
        fields["source_criteria"] = source_criteria
    if versions:
        fields["reference_versions"] = versions
    return Decision(
        outcome=outcome,
        policy_id=policy.policy_id,
        policy_version=policy.version,
        decided_at=decided_at,
        summary=summary,
        **fields,
    )


def _summary(
    verdict: str, policy: Policy, results: tuple[CriterionResult, ...], status: CriterionStatus
) -> str:
    """Return the verdict and the explanation of each criterion that caused it."""
    reasons = " ".join(
        [
            f"{r.criterion_id} {status.value} ({r.reason_code}): {r.explanation}"
            for r in results
            if r.status is status
        ]
    )
    return f"{verdict} under {policy.policy_id} {policy.version}. {reasons}"


# Most of a real stream is other drugs, and the worker decides a whole batch at one decided_at: their
# NOT_APPLICABLE decisions depend only on the policy, decided_at, the product and the reference versions,
# so one frozen Decision serves every claim of that product in the batch (bounded; cleared when full).
_NOT_APPLICABLE_LIMIT = 1_024
_not_applicable_cache: dict[tuple[object, ...], tuple[Policy, Decision]] = {}


def _not_applicable(
    policy: Policy, decided_at: datetime, claim: Claim, versions: tuple[tuple[str, str], ...]
) -> Decision:
    """Return the NOT_APPLICABLE decision for ``claim``'s product (memoised, see above)."""
    product = claim.product
    key = (id(policy), decided_at, product.product_id, product.qualifier, versions)
    hit = _not_applicable_cache.get(key)
    if hit is not None and hit[0] is policy:
        return hit[1]
    decision = _decision(
        policy, decided_at, Outcome.NOT_APPLICABLE, _not_applicable_summary(policy, claim), versions=versions
    )
    if len(_not_applicable_cache) >= _NOT_APPLICABLE_LIMIT:
        _not_applicable_cache.clear()
    _not_applicable_cache[key] = (policy, decision)  # the policy is held so its id is not reused
    return decision


def _not_applicable_summary(policy: Policy, claim: Claim) -> str:
    product = claim.product
    return (
        f"Product/Service ID {product.product_id} (qualifier {product.qualifier}) is identified as a product "
        f"other than {policy.product_name}; {policy.policy_id} {policy.version} does not apply."
    )
