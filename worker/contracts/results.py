"""Pure builders of the Avro result and dead-letter records from a decision or a bad record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from worker.contracts.model import Claim, CriterionResult, Decision
    from worker.errors import BadRecord

__all__ = ["SourceCoordinates", "build_dead_letter", "build_result"]


@dataclass(frozen=True, slots=True)
class SourceCoordinates:
    """Where an input record was read: the only way a log line or output names a record."""

    topic: str
    partition: int
    offset: int

    def as_record(self) -> dict[str, Any]:
        """Return the Avro ``SourceCoordinates`` record."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def _criterion_record(criterion: CriterionResult) -> dict[str, Any]:
    """Return the Avro ``CriterionResult`` record for one evaluated criterion."""
    return {
        "criterion_id": criterion.criterion_id,
        "status": str(criterion.status),
        "reason_code": criterion.reason_code,
        "evidence": list(criterion.evidence),
        "explanation": criterion.explanation,
    }


def build_result(
    claim: Claim, decision: Decision, *, source: SourceCoordinates, worker_version: str
) -> dict[str, Any]:
    """Return the ``AdjudicationResult`` record for ``decision`` on ``claim``.

    Only ``claim_id``, ``event_id`` and ``transaction_code`` are taken from the claim, so the result
    carries no PHI; everything else comes from the decision, which has none by construction.
    """
    return {
        "claim_id": claim.claim_id,
        "source_event_id": claim.event_id,
        "transaction_code": str(claim.transaction_code),
        "outcome": str(decision.outcome),
        "criteria": [_criterion_record(criterion) for criterion in decision.criteria],
        "reject_codes": list(decision.reject_codes),
        "authorization_effective": decision.authorization_effective,
        "authorization_expiration": decision.authorization_expiration,
        "summary": decision.summary,
        "policy_id": decision.policy_id,
        "policy_version": decision.policy_version,
        "decided_at": decision.decided_at,
        "worker_version": worker_version,
        "source": source.as_record(),
    }


def build_dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    source: SourceCoordinates,
    error: BadRecord,
    worker_version: str,
    dead_lettered_at: datetime,
) -> dict[str, Any]:
    """Return the ``DeadLetter`` record: the original key, value and headers untouched, and why.

    The reason is the error's own ``reason``, which names fields and rules, never values.
    """
    return {
        "original_key": key,
        "original_value": value,
        "original_headers": [{"key": name, "value": header_value} for name, header_value in headers],
        "source": source.as_record(),
        "error_class": str(error.error_class),
        "reason": error.reason,
        "worker_version": worker_version,
        "dead_lettered_at": dead_lettered_at,
    }
