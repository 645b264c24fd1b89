"""Where a judgement goes: a result on the results topic, or a dead letter; both on the input's partition.

The output goes to the input's partition number, so the results of partition p can be read back from
partition p after a restart (the duplicate filter's read-back depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker import __version__
from worker.contracts.codes import CriterionStatus, Outcome
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_rejected
from worker.contracts.wire import ERROR_CLASS_HEADER, EVENT_ID_HEADER, NOT_APPROVED
from worker.errors import BadRecord, DeadLetterClass, MalformedClaim

if TYPE_CHECKING:
    from datetime import datetime

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.runtime.judge import Judgement, Record

__all__ = ["Outgoing", "dead_letter", "route", "too_large"]


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (a few µs per record, one
# of these per claim); nothing changes one after it is made.
@dataclass(slots=True)
class Outgoing:
    """One record to publish for one consumed record: a result or a dead letter.

    ``event_id`` is set on results only: it enters the duplicate filter once the record is sent.
    """

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    outcome: Outcome | None = None
    error_class: DeadLetterClass | None = None
    reason_codes: tuple[str, ...] = ()
    reject_codes: tuple[str, ...] = ()  # NCPDP 511-FB codes the result sends (metric labels)
    criteria: tuple[tuple[str, CriterionStatus], ...] = ()
    claim_id: str | None = None
    event_id: str | None = None
    event_time: datetime | None = None
    decide_s: float = 0.0


def route(judgement: Judgement, *, codec: Codec, settings: Settings, at: datetime) -> Outgoing:
    """Return the one record to publish for ``judgement``."""
    record = judgement.record
    if judgement.error is not None:
        if isinstance(judgement.error, MalformedClaim):
            return _rejected(judgement, judgement.error, codec, settings, at)
        return _dead_letter(record, judgement.error, codec, settings, at, keep_original=True)
    claim, decision = judgement.claim, judgement.decision
    if claim is None or decision is None:  # pragma: no cover - a Judgement has an error or both
        msg = "judgement without a claim, a decision or an error"
        raise TypeError(msg)
    source = SourceCoordinates(record.topic, record.partition, record.offset)
    # Most decisions (NOT_APPLICABLE) have no criteria and no rejects: no tuples to build for them.
    criteria, rejects = decision.criteria, decision.rejects
    return Outgoing(
        topic=settings.results_topic,
        partition=record.partition,
        key=claim.claim_id.encode(),
        value=codec.encode_decided(claim, decision, source, __version__, judgement.selection),
        headers=[(EVENT_ID_HEADER, claim.event_id.encode())],
        outcome=decision.outcome,
        reason_codes=tuple([c.reason_code for c in criteria if c.status != CriterionStatus.MET])
        if criteria and decision.outcome in NOT_APPROVED
        else (),
        reject_codes=tuple([reject.code for reject in rejects]) if rejects else (),
        criteria=tuple([(c.criterion_id, c.status) for c in criteria]) if criteria else (),
        claim_id=claim.claim_id,
        event_id=claim.event_id,
        event_time=claim.event_time,
        decide_s=judgement.decide_s,
    )


def _rejected(
    judgement: Judgement, error: MalformedClaim, codec: Codec, settings: Settings, at: datetime
) -> Outgoing:
    """Answer a malformed claim that names its claim id: a REJECTED result with NCPDP M/I reject codes.

    The pharmacy gets an answer naming the failed fields instead of silence; the event id enters the
    duplicate filter like any result's, so a redelivery is a duplicate.
    """
    record, policy = judgement.record, judgement.policy
    if policy is None:  # pragma: no cover - judge() always names the policy
        msg = "a REJECTED answer names its policy"
        raise TypeError(msg)
    result = build_rejected(
        error,
        source=SourceCoordinates(record.topic, record.partition, record.offset),
        policy_id=policy.policy_id,
        policy_version=policy.version,
        decided_at=at,
        worker_version=__version__,
    )
    event_id = error.event_id
    return Outgoing(
        topic=settings.results_topic,
        partition=record.partition,
        key=error.claim_id.encode(),
        value=codec.encode_result(result),
        headers=[(EVENT_ID_HEADER, event_id.encode())] if event_id is not None else [],
        outcome=Outcome.REJECTED,
        reject_codes=error.reject_codes,
        claim_id=error.claim_id,
        event_id=event_id,
        event_time=error.event_time,
    )


def too_large(
    record: Record, rejected: Outgoing, *, codec: Codec, settings: Settings, at: datetime
) -> Outgoing:
    """Return a dead letter, without the original bytes, for a record whose output is too large to send.

    The original stays readable in the input topic at the source coordinates the dead letter names.
    It carries no event id, so the event does not enter the duplicate filter: the results topic does
    not hold it either.
    """
    error = BadRecord(
        DeadLetterClass.TOO_LARGE,
        f"output of {len(rejected.value)} bytes exceeds the producer's max_request_size; "
        "original value omitted, read it at the source coordinates",
    )
    return _dead_letter(record, error, codec, settings, at, keep_original=False)


def dead_letter(
    record: Record, error: BadRecord, *, codec: Codec, settings: Settings, at: datetime
) -> Outgoing:
    """Return the dead letter, with the original bytes, for a record that cannot be judged (any door)."""
    return _dead_letter(record, error, codec, settings, at, keep_original=True)


def _dead_letter(
    record: Record,
    error: BadRecord,
    codec: Codec,
    settings: Settings,
    at: datetime,
    *,
    keep_original: bool,
) -> Outgoing:
    """Return the dead letter for ``record`` (on its partition number), with or without its bytes."""
    letter = build_dead_letter(
        key=record.key,
        value=record.value if keep_original else None,
        headers=list(record.headers or ()) if keep_original else [],
        source=SourceCoordinates(record.topic, record.partition, record.offset),
        error=error,
        worker_version=__version__,
        dead_lettered_at=at,
    )
    return Outgoing(
        topic=settings.dead_letter_topic,
        partition=record.partition,
        key=record.key,
        value=codec.encode_dead_letter(letter),
        headers=[(ERROR_CLASS_HEADER, error.error_class.value.encode())],
        error_class=error.error_class,
    )
