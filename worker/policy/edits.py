"""Plausibility edits: dates and quantities a claim must pass before anything is approved or put on file.

Every comparison is with the claim's own submission time (``event_time``), never the wall clock, so a
replay decides the same. Each failed edit is one NCPDP reject (511-FB) naming its field; the policy data
(``edits`` in the catalog entry) holds the limits. See docs/policy.md, "Plausibility edits".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from worker.contracts.codes import TransactionCode
from worker.contracts.model import Reject

if TYPE_CHECKING:
    from worker.contracts.model import Claim
    from worker.policy.definition import Policy

__all__ = [
    "CLAIM_TOO_OLD",
    "MAX_QUANTITY",
    "MI_BIRTH_DATE",
    "MI_DATE_OF_SERVICE",
    "MI_DAYS_SUPPLY",
    "MI_QUANTITY",
    "EditFailure",
    "failed_edits",
    "submission_day",
]

MI_BIRTH_DATE = "09"
MI_DATE_OF_SERVICE = "15"
MI_DAYS_SUPPLY = "19"
MI_QUANTITY = "E7"
CLAIM_TOO_OLD = "81"
MAX_QUANTITY = 9_999_999.999
"""442-E7 Quantity Dispensed is 9(7)v999: anything larger cannot have been dispensed."""

EditFailure = tuple[Reject, str]
"""One failed edit: its reject and a short explanation (field names and limits only, never a value)."""


def submission_day(claim: Claim) -> date:
    """Return the calendar day (UTC) the claim was submitted: its ``event_time``'s date."""
    when: datetime = claim.event_time
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.date()


def failed_edits(claim: Claim, policy: Policy, *, dispensed: bool = True) -> tuple[EditFailure, ...]:
    """Return the edits ``claim`` fails under ``policy``'s limits (empty when it passes them all).

    - date of service more than ``max_days_after_submission`` days after the submission day: 15;
    - date of service more than ``timely_filing_days`` before the submission day: 81 Claim Too Old;
    - date of birth after the date of service: 09;
    - when ``dispensed`` (a pharmacy's B1/B3, not a PA request): quantity not above 0 or above 442-E7's
      width: E7; days supply not above 0 or above ``max_days_supply``: 19.

    A B2 reversal passes (it approves nothing). Pure: no clock, no I/O.
    """
    if claim.transaction_code is TransactionCode.REVERSAL:
        return ()
    failures: list[EditFailure] = []
    submitted = submission_day(claim)
    service = claim.date_of_service
    if service > submitted + timedelta(days=policy.max_days_after_submission):
        failures.append(
            (
                Reject(code=MI_DATE_OF_SERVICE, field="date_of_service"),
                (
                    f"date_of_service is more than {policy.max_days_after_submission} day(s) after the "
                    "claim was submitted (event_time)"
                ),
            )
        )
    elif service < submitted - timedelta(days=policy.timely_filing_days):
        failures.append(
            (
                Reject(code=CLAIM_TOO_OLD, field="date_of_service"),
                (
                    f"date_of_service is more than {policy.timely_filing_days} days before the claim "
                    "was submitted (timely filing)"
                ),
            )
        )
    if claim.patient.date_of_birth > service:
        failures.append(
            (
                Reject(code=MI_BIRTH_DATE, field="patient.date_of_birth"),
                "patient.date_of_birth is after date_of_service",
            )
        )
    if dispensed:
        if not 0 < claim.quantity <= MAX_QUANTITY:
            failures.append(
                (
                    Reject(code=MI_QUANTITY, field="quantity"),
                    "quantity must be above 0 and fit 442-E7",
                )
            )
        if not 0 < claim.days_supply <= policy.max_days_supply:
            failures.append(
                (
                    Reject(code=MI_DAYS_SUPPLY, field="days_supply"),
                    f"days_supply must be 1 to {policy.max_days_supply}",
                )
            )
    return tuple(failures)
