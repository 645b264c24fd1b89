"""The PA-request door: requests are decided by the claims' ``Pipeline``, with a request judge and router.

``authorizations serve-requests`` builds a ``Pipeline`` (``compose.build_request_worker``) whose input is
the requests topic and whose output is the PA-decisions topic (``config.roles.request_settings``: the worker's
settings with those topics, group ``<group>-pa-requests`` and transactional id prefix
``<prefix>-pa-requests``); only the per-record steps differ (``REQUESTS``). So the request path has the
claims' transaction session (one transaction per batch: answers, new authorizations, request offsets;
abort, rewind, and a new producer after an unknown commit outcome), partition state (the
answered-requests filter restored per partition on assignment), backoff and outage clock, and exit
codes: 0 clean stop, 2 bad settings or missing topics, 3 fenced, 4 unreachable, 5 not authorized,
70 internal. See docs/authorizations.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from worker.contracts.codes import CriterionStatus
from worker.contracts.identifiers import key_is_clean
from worker.contracts.pa_request import decode_pa_request, pa_decision, request_claim
from worker.contracts.wire import EVENT_ID_HEADER, NOT_APPROVED
from worker.errors import BadRecord, DeadLetterClass
from worker.runtime.doors import Door
from worker.runtime.judge import DuplicateEvent, Judgement, judged
from worker.runtime.route import Outgoing, dead_letter

if TYPE_CHECKING:
    from datetime import datetime

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.runtime.judge import Decider, Record
    from worker.state.dedupe import SeenEvents

__all__ = ["REQUESTS", "judge_request", "route_request"]


def judge_request(
    record: Record,
    *,
    codec: Codec,
    seen: SeenEvents,
    decider: Decider,
    decided_at: datetime,
) -> Judgement:
    """Judge one PA request: decode it, refuse a request id already answered, decide it as a claim.

    A request id already answered on this partition (committed, or earlier in the batch) is a
    ``DUPLICATE_EVENT``, as a redelivered claim is: its first answer stays on the PA-decisions topic.
    A request id or record key that is no clean identifier (``contracts.identifiers``) is a dead
    letter (INVALID_FIELD) naming the field, never its value: the answer has no REJECTED form.
    """
    del codec  # requests have their own contract (worker/contracts/pa_request.py)
    try:
        claim = request_claim(decode_pa_request(record.value))
        _require_clean_key(record.key)
        if seen.seen(record.partition, claim.claim_id):
            raise DuplicateEvent
    except BadRecord as error:
        return Judgement(record, error=error, policy=decider.policy)
    return judged(record, claim, decider=decider, decided_at=decided_at)


def _require_clean_key(key: bytes | None) -> None:
    """Raise ``BadRecord`` (INVALID_FIELD, naming the key, never its bytes) unless the key is clean."""
    if not key_is_clean(key):
        raise BadRecord(DeadLetterClass.INVALID_FIELD, "key: unprintable")


def route_request(judgement: Judgement, *, codec: Codec, settings: Settings, at: datetime) -> Outgoing:
    """Return the answer (JSON, keyed by request id, on the request's partition number) or a dead letter.

    The answer carries the request id as the ``claims-worker.event-id`` header: the answered-requests
    filter reads it back from the same PA-decisions partition after an assignment or a replacement.
    """
    record = judgement.record
    if judgement.error is not None:
        return dead_letter(record, judgement.error, codec=codec, settings=settings, at=at)
    claim, decision = judgement.claim, judgement.decision
    if claim is None or decision is None:  # pragma: no cover - a Judgement has an error or both
        msg = "judgement without a claim, a decision or an error"
        raise TypeError(msg)
    request_id = claim.claim_id
    answer = json.dumps(pa_decision(request_id, decision), separators=(",", ":")).encode()
    not_approved = decision.outcome in NOT_APPROVED
    return Outgoing(
        topic=settings.results_topic,  # the PA-decisions topic (request_settings)
        partition=record.partition,
        key=request_id.encode(),
        value=answer,
        headers=[(EVENT_ID_HEADER, request_id.encode())],
        outcome=decision.outcome,
        reason_codes=tuple(c.reason_code for c in decision.criteria if c.status != CriterionStatus.MET)
        if not_approved
        else (),
        criteria=tuple((c.criterion_id, c.status) for c in decision.criteria),
        claim_id=request_id,
        event_id=request_id,
        event_time=claim.event_time,
        decide_s=judgement.decide_s,
    )


REQUESTS = Door("pa-requests", judge_request, route_request, "request", dispensed=False)
"""PA requests in, answers (or dead letters) out; an approval goes on file with source ``request``."""
