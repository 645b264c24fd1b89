"""The pure decision for one claim: transaction, product match, criteria, outcome, window, reject codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.contracts.model import Claim, CriterionResult, CriterionStatus, Decision, Outcome, TransactionCode
from worker.policy.criteria import ReasonCode
from worker.policy.definition import Policy, default_policy
from worker.policy.window import approval_window

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["decide"]

_MET = CriterionStatus.MET
_NOT_MET = CriterionStatus.NOT_MET
_UNKNOWN = CriterionStatus.UNKNOWN


def decide(claim: Claim, decided_at: datetime, policy: Policy | None = None) -> Decision:
    """Decide one validated claim under a prior-authorization policy, with no I/O and no clock.

    Takes the claim, the decision time (echoed in the Decision; the approval window starts on the
    claim's date of service) and the policy (default: the packaged Ixempra policy). Returns a
    Decision naming the policy id and version:

    - REVERSED for a B2 reversal (whatever the product): no PA decision, no criteria.
    - NOT_APPLICABLE when the product is not one of the policy's NDCs (or not an NDC at all).
    - APPROVED when every criterion is MET, with the inclusive approval window.
    - DENIED when any criterion is NOT_MET (reject 75).
    - PENDED otherwise (some criterion UNKNOWN; reject 75, plus 39 when no usable diagnosis code
      was submitted). B1 and B3 are decided alike.

    Raises ``ConfigError`` only if ``policy`` is omitted and the packaged policy cannot be loaded.
    """
    if policy is None:
        policy = default_policy()
    if claim.transaction_code is TransactionCode.REVERSAL:
        return _decision(
            policy,
            decided_at,
            Outcome.REVERSED,
            f"B2 reversal of claim {claim.original_claim_id}: no prior-authorization decision is made.",
        )
    matched = policy.match_product(claim.product)
    if matched is None:
        return _decision(policy, decided_at, Outcome.NOT_APPLICABLE, _not_applicable_summary(policy, claim))
    results = tuple([criterion.evaluate(claim) for criterion in policy.criteria])
    statuses = [result.status for result in results]
    if _NOT_MET in statuses:
        return _decision(
            policy,
            decided_at,
            Outcome.DENIED,
            _summary("Denied", policy, results, _NOT_MET),
            criteria=results,
            reject_codes=(policy.reject_not_approved,),
        )
    if _UNKNOWN in statuses:
        missing_diagnosis = any(r.reason_code == ReasonCode.DIAGNOSIS_CODE_MISSING for r in results)
        rejects = (
            (policy.reject_not_approved, policy.reject_missing_diagnosis)
            if missing_diagnosis
            else (policy.reject_not_approved,)
        )
        return _decision(
            policy,
            decided_at,
            Outcome.PENDED,
            _summary("Pended, more information needed", policy, results, _UNKNOWN),
            criteria=results,
            reject_codes=rejects,
        )
    effective, expiration = approval_window(claim.date_of_service, policy.approval_duration_years)
    met = ", ".join([f"{r.criterion_id} met ({r.reason_code})" for r in results])
    return Decision(
        outcome=Outcome.APPROVED,
        criteria=results,
        reject_codes=(),
        authorization_effective=effective,
        authorization_expiration=expiration,
        policy_id=policy.policy_id,
        policy_version=policy.version,
        decided_at=decided_at,
        summary=f"Approved under {policy.policy_id} {policy.version} from {effective.isoformat()} "
        f"through {expiration.isoformat()}: {met}.",
    )


def _decision(
    policy: Policy,
    decided_at: datetime,
    outcome: Outcome,
    summary: str,
    *,
    criteria: tuple[CriterionResult, ...] = (),
    reject_codes: tuple[str, ...] = (),
) -> Decision:
    return Decision(
        outcome=outcome,
        criteria=criteria,
        reject_codes=reject_codes,
        policy_id=policy.policy_id,
        policy_version=policy.version,
        decided_at=decided_at,
        summary=summary,
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


def _not_applicable_summary(policy: Policy, claim: Claim) -> str:
    product = claim.product
    if product.qualifier != policy.product_qualifier:
        what = f"Product/Service ID qualifier {product.qualifier} is not an NDC ({policy.product_qualifier})"
    else:
        what = f"NDC {product.product_id} is not one of the {policy.product_name} NDCs"
    return f"{what}; {policy.policy_id} {policy.version} does not apply."
