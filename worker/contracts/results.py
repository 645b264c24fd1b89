"""Pure builders of the Avro result and dead-letter records from a decision or a bad record."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from worker.contracts.codes import DecisionSource, InformationNeed, Outcome, PolicySelection
from worker.contracts.fastwrite import share
from worker.contracts.icd10cm import ICD10CM_REFERENCE
from worker.contracts.icd10cm import RELEASE as ICD10CM_RELEASE
from worker.contracts.model import Reject

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from worker.contracts.model import Claim, CriterionResult, Decision, ProductMatch
    from worker.errors import BadRecord, MalformedClaim

__all__ = [
    "MESSAGE_MAX_CHARS",
    "NEED_MESSAGES",
    "REJECT_MESSAGES",
    "SourceCoordinates",
    "build_dead_letter",
    "build_rejected",
    "build_result",
    "ncpdp_answer",
]

MESSAGE_MAX_CHARS = 40
"""Longest pharmacy message: one 526-FQ Additional Message line (lengths [U], docs/policy.md §8)."""

# Short fixed pharmacy text per NCPDP reject code (511-FB). Wording of the codes: docs/policy.md §4 and §8;
# these messages are ours (the ECL's official wording is licensed).
REJECT_MESSAGES = MappingProxyType(
    {
        "03": "M/I TRANSACTION CODE",
        "05": "M/I SERVICE PROVIDER ID",
        "07": "M/I CARDHOLDER ID",
        "09": "M/I DATE OF BIRTH",
        "15": "M/I DATE OF SERVICE",
        "16": "M/I RX/SERVICE REFERENCE NUMBER",
        "17": "M/I FILL NUMBER",
        "19": "M/I DAYS SUPPLY",
        "21": "M/I PRODUCT/SERVICE ID",
        "25": "M/I PRESCRIBER ID",
        "39": "M/I DIAGNOSIS CODE",
        "56": "NON-MATCHED PRESCRIBER ID",
        "75": "PRIOR AUTHORIZATION REQUIRED",
        "85": "CLAIM NOT PROCESSED",
        "3W": "PA IN PROCESS - CLINICAL REVIEW",
        "3Y": "PRIOR AUTHORIZATION DENIED",
        "CA": "M/I PATIENT FIRST NAME",
        "CB": "M/I PATIENT LAST NAME",
        "E1": "M/I PRODUCT/SERVICE ID QUALIFIER",
        "E7": "M/I QUANTITY DISPENSED",
        "EU": "M/I PRIOR AUTHORIZATION TYPE CODE",
        "EV": "M/I PRIOR AUTHORIZATION NUMBER",
        "WE": "M/I DIAGNOSIS CODE QUALIFIER",
    }
)
_UNKNOWN_REJECT_MESSAGE = "SEE REJECT CODE"

# Short fixed pharmacy text per need of a PENDED claim: what the prescriber's office must send.
NEED_MESSAGES = MappingProxyType(
    {
        InformationNeed.DISEASE_STATUS: "PA: SEND DISEASE STATUS",
        InformationNeed.DIAGNOSIS_CODE: "PA: SEND ICD-10 DIAGNOSIS CODE",
        InformationNeed.PRIMARY_DIAGNOSIS: "PA: SEND PRIMARY DIAGNOSIS CODE",
        InformationNeed.PRESCRIBER_IDENTITY: "VERIFY PRESCRIBER NPI",
        InformationNeed.PRESCRIBER_SPECIALTY: "PA: SEND PRESCRIBER SPECIALTY",
        InformationNeed.CONSULTATION_STATUS: "PA: SEND ONCOLOGY CONSULT STATUS",
        InformationNeed.CONSULTANT_IDENTITY: "PA: SEND CONSULTING ONCOLOGIST NPI",
        InformationNeed.CONSULTANT_SPECIALTY: "PA: CONFIRM CONSULTANT SPECIALTY",
        InformationNeed.PRODUCT_IDENTITY: "RESUBMIT PRODUCT AS NDC (QUAL 03)",
    }
)
_OUTCOME_MESSAGES = MappingProxyType(
    {
        Outcome.APPROVED: "PA APPROVED",
        Outcome.REFERRED: "PA IN CLINICAL REVIEW",
        Outcome.DENIED: "PA DENIED",
        Outcome.REVERSED: "REVERSAL ACCEPTED",
        Outcome.REJECTED: "CORRECT AND RESUBMIT",
    }
)


@dataclass(frozen=True, slots=True)
class SourceCoordinates:
    """Where an input record was read: the only way a log line or output names a record."""

    topic: str
    partition: int
    offset: int

    def as_record(self) -> dict[str, Any]:
        """Return the Avro ``SourceCoordinates`` record."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


# The policy memoises criterion results, so the same objects recur: their records are built once.
# Keyed by identity, holding the object so its id cannot be reused; bounded like the policy's memos.
_CRITERION_RECORDS: dict[int, tuple[CriterionResult, dict[str, Any]]] = {}
_CRITERION_RECORDS_LIMIT = 8_192


def _criterion_record(criterion: CriterionResult) -> dict[str, Any]:
    """Return the Avro ``CriterionResult`` record for one evaluated criterion (shared: do not mutate)."""
    known = _CRITERION_RECORDS.get(id(criterion))
    if known is not None and known[0] is criterion:
        return known[1]
    record = _new_criterion_record(criterion)
    if len(_CRITERION_RECORDS) < _CRITERION_RECORDS_LIMIT:
        _CRITERION_RECORDS[id(criterion)] = (criterion, record)
        share(record)
    return record


_PRODUCT_RECORDS: dict[int, tuple[ProductMatch, dict[str, Any]]] = {}


def _product_record(matched: ProductMatch) -> dict[str, Any]:
    """Return the Avro ``ProductMatch`` record (shared per policy product match: do not mutate)."""
    known = _PRODUCT_RECORDS.get(id(matched))
    if known is not None and known[0] is matched:
        return known[1]
    record = {
        "code": matched.code,
        "system": matched.system.value,
        "reading": matched.reading.value,
        "name": matched.name,
    }
    if len(_PRODUCT_RECORDS) < _CRITERION_RECORDS_LIMIT:
        _PRODUCT_RECORDS[id(matched)] = (matched, record)
        share(record)
    return record


def _new_criterion_record(criterion: CriterionResult) -> dict[str, Any]:
    return {
        "criterion_id": criterion.criterion_id,
        "status": criterion.status.value,
        "reason_code": criterion.reason_code.value,
        "evidence": list(criterion.evidence),
        "explanation": criterion.explanation,
        "needs": [need.value for need in criterion.needs],
    }


def _reject_record(reject: Reject) -> dict[str, Any]:
    return {
        "code": reject.code,
        "occurrence": reject.occurrence,
        "field": reject.field,
        "message": REJECT_MESSAGES.get(reject.code, _UNKNOWN_REJECT_MESSAGE),
    }


def ncpdp_answer(
    outcome: Outcome, rejects: Sequence[Reject], needs: Sequence[InformationNeed]
) -> dict[str, Any]:
    """Return the Avro ``NcpdpAnswer`` for an outcome (see ``_ncpdp_answer``); shared: do not mutate."""
    return _ncpdp_answer(outcome, tuple(rejects), tuple(needs))


@functools.lru_cache(maxsize=1024)
def _ncpdp_answer(
    outcome: Outcome, rejects: tuple[Reject, ...], needs: tuple[InformationNeed, ...]
) -> dict[str, Any]:
    """Return the Avro ``NcpdpAnswer`` for an outcome: 112-AN status, rejects with messages, messages.

    APPROVED and REVERSED answer A (approved; the reversal value is [U] in docs/policy.md §4); every
    other outcome of the PA step answers R with its reject codes. NOT_APPLICABLE has no status, no
    rejects and no messages: the policy does not apply and the downstream adjudication answers.
    Messages are fixed texts of at most ``MESSAGE_MAX_CHARS`` characters: one per outcome, then one
    per need.
    """
    if outcome is Outcome.NOT_APPLICABLE:
        answer: dict[str, Any] = {"response_status": None, "rejects": [], "messages": []}
        share(answer)
        return answer
    status = "A" if outcome in (Outcome.APPROVED, Outcome.REVERSED) else "R"
    messages = [_OUTCOME_MESSAGES[outcome]] if outcome in _OUTCOME_MESSAGES else []
    messages.extend(NEED_MESSAGES[need] for need in needs)
    answer = {
        "response_status": status,
        "rejects": [_reject_record(reject) for reject in rejects],
        "messages": messages,
    }
    share(answer)
    return answer


def build_result(
    claim: Claim,
    decision: Decision,
    *,
    source: SourceCoordinates,
    worker_version: str,
    selection: PolicySelection | None = PolicySelection.PINNED,
) -> dict[str, Any]:
    """Return the v4 ``AdjudicationResult`` record for ``decision`` on ``claim``.

    ``selection`` says why the decision's policy version applied (``worker.policy.catalog``). Only
    ``claim_id``, ``event_id``, ``event_time`` and ``transaction_code`` are taken from the claim, so
    the result carries no PHI; everything else comes from the decision, which has none.
    """
    matched = decision.matched_product
    return {
        "claim_id": claim.claim_id,
        "source_event_id": claim.event_id,
        "transaction_code": claim.transaction_code.value,
        "outcome": decision.outcome.value,
        "criteria": [_criterion_record(criterion) for criterion in decision.criteria],
        "reject_codes": [reject.code for reject in decision.rejects],
        "authorization_effective": decision.authorization_effective,
        "authorization_expiration": decision.authorization_expiration,
        "summary": decision.summary,
        "policy_id": decision.policy_id,
        "policy_version": decision.policy_version,
        "event_time": claim.event_time,
        "authorization_number": decision.authorization_number,
        "matched_product": None if matched is None else _product_record(matched),
        "ncpdp": ncpdp_answer(decision.outcome, decision.rejects, decision.needs),
        "decision_source": decision.decision_source.value,
        "source_criteria": list(decision.source_criteria),
        "recommendation": None if decision.recommendation is None else decision.recommendation.value,
        "needs": [need.value for need in decision.needs],
        "reference_versions": dict(decision.reference_versions),
        "decided_at": decision.decided_at,
        "worker_version": worker_version,
        "source": source.as_record(),
        "policy_selection": None if selection is None else selection.value,
    }


def build_rejected(
    error: MalformedClaim,
    *,
    source: SourceCoordinates,
    policy_id: str,
    policy_version: str,
    decided_at: datetime,
    worker_version: str,
) -> dict[str, Any]:
    """Return the v4 ``AdjudicationResult`` that answers a malformed claim: outcome REJECTED.

    The NCPDP answer is R with the error's M/I reject codes (each with its 546-4F occurrence and
    field path) and a fixed message per code. Identifiers come from the error, which holds field
    paths and codes only, never a value; the policy named is the active one (it was not applied, so
    ``policy_selection`` is null).
    An unreadable event id is written as "" (the codec guarantees claim id, transaction code and
    event time).
    """
    rejects = [
        Reject(code=code, occurrence=_occurrence(field), field=field)
        for code, field in zip(error.reject_codes, error.fields, strict=False)
    ]
    fields = ", ".join(error.fields) or "claim"
    return {
        "claim_id": error.claim_id,
        "source_event_id": error.event_id or "",
        "transaction_code": error.transaction_code,
        "outcome": Outcome.REJECTED.value,
        "criteria": [],
        "reject_codes": [reject.code for reject in rejects],
        "authorization_effective": None,
        "authorization_expiration": None,
        "summary": f"Rejected: malformed field(s) {fields} ({error.reason}); the policy was not applied.",
        "policy_id": policy_id,
        "policy_version": policy_version,
        "event_time": error.event_time,
        "authorization_number": None,
        "matched_product": None,
        "ncpdp": ncpdp_answer(Outcome.REJECTED, rejects, ()),
        "decision_source": DecisionSource.FIELD_EDIT.value,
        "source_criteria": [],
        "recommendation": None,
        "needs": [],
        # A rejected diagnosis code was checked against this ICD-10-CM release (issue 23).
        "reference_versions": (
            {ICD10CM_REFERENCE: ICD10CM_RELEASE}
            if any(field.startswith("diagnoses.") and field.endswith(".code") for field in error.fields)
            else {}
        ),
        "decided_at": decided_at,
        "worker_version": worker_version,
        "source": source.as_record(),
        "policy_selection": None,
    }


def _occurrence(field: str) -> int | None:
    """Return the 1-based 546-4F occurrence of a repeating field path (``diagnoses.1.code`` -> 2)."""
    parts = field.split(".")
    if len(parts) > 1 and parts[1].isdigit():
        return int(parts[1]) + 1
    return None


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
