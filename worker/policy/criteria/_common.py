"""What every criterion shares: the statuses, the memo bound and the empty facts."""

from __future__ import annotations

from worker.contracts.codes import CriterionStatus
from worker.policy.facts import Facts

__all__ = ["MEMO_LIMIT", "MET", "NOT_MET", "NO_FACTS", "UNKNOWN"]

MET = CriterionStatus.MET
NOT_MET = CriterionStatus.NOT_MET
UNKNOWN = CriterionStatus.UNKNOWN

# Results are immutable and depend only on the memo key, so equal inputs share one result. The bound
# (about 1 KB a result) keeps odd input from growing a memo without limit; past it, the least recently
# used result is forgotten.
MEMO_LIMIT = 8_192

NO_FACTS = Facts()
"""The facts of a claim looked up nowhere (no directory configured)."""
