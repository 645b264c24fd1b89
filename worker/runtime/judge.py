"""The pure step of the worker: one consumed record in, one ``Judgement`` out.

Decode, duplicate check, decide.

No I/O and no clock: the duplicate filter is only read (ids are staged by the session once the output
is sent), the decision time is passed in, and reference-data facts come from ``lookup_facts``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from worker.contracts.codes import PolicySelection
from worker.errors import BadRecord, DeadLetterClass, MalformedClaim
from worker.policy import decide
from worker.policy.facts import Facts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from worker.contracts.codec import Codec
    from worker.contracts.model import Claim, Decision
    from worker.policy import Policy, PolicyChoice
    from worker.state.authorizations import Authorizations
    from worker.state.dedupe import SeenEvents

__all__ = ["Decider", "DuplicateEvent", "Judgement", "Record", "judge", "judged", "no_facts"]


class Record(Protocol):
    """What the worker reads from a consumed record (kafka-python's ConsumerRecord has it all)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    timestamp: int  # the Kafka timestamp, epoch ms (the lag in seconds: worker.runtime.waiting)


class DuplicateEvent(BadRecord):
    """The event id was already published for this partition: the redelivery is dead-lettered."""

    def __init__(self) -> None:
        super().__init__(DeadLetterClass.DUPLICATE_EVENT, "event_id: already adjudicated (redelivered event)")


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (a few µs per record, one
# of these per claim); nothing changes one after it is made.
@dataclass(slots=True)
class Judgement:
    """What the worker concluded about one record: a decided claim, or why it cannot be judged."""

    record: Record
    claim: Claim | None = None
    decision: Decision | None = None
    error: BadRecord | None = None
    decide_s: float = 0.0
    policy: Policy | None = None  # the policy that decided, or the one a REJECTED answer names
    selection: PolicySelection | None = None  # why ``policy`` decided (None: no version was applied)


_PINNED = PolicySelection.PINNED


_NO_FACTS = Facts()  # frozen: one serves every claim


def no_facts(_claim: Claim) -> Facts:
    """Look nothing up (no prescriber directory configured)."""
    return _NO_FACTS


@dataclass(frozen=True, slots=True)
class Decider:
    """What a decision needs besides the claim and its time, bound once per worker (live and replay alike).

    ``policies`` chooses the version that decides each claim (``worker.policy.catalog``: by its date of
    service, or a pin); ``None`` pins ``policy``, which is also the one a malformed claim's REJECTED
    answer names (``PolicyChoice.named``); ``lookup_facts`` is the reference-data lookup (``no_facts``
    without a directory); ``automated_denials`` the plan's opt-in to final denials; ``authorizations``
    the store on file (``None``: no store); ``dispensed`` false for a door whose claims carry no quantity (PA
    requests: no quantity or days-supply edits).
    """

    policy: Policy
    lookup_facts: Callable[[Claim], Facts] = no_facts
    automated_denials: bool = False
    authorizations: Authorizations | None = None
    dispensed: bool = True
    policies: PolicyChoice | None = None

    def choose(self, claim: Claim) -> tuple[Policy, PolicySelection]:
        """Return the version that decides ``claim`` and why: by its date of service, or the pin.

        A version that declares continuity of care gives way to its prior version for a member on
        therapy (``Authorizations.on_therapy``) through the declared date: CONTINUITY.
        """
        policies = self.policies
        if policies is None:
            return self.policy, _PINNED
        served = claim.date_of_service
        policy, why = policies.select(served)
        continuity, store = policy.continuity, self.authorizations
        if continuity is None or store is None:
            return policy, why
        prior = policies.prior_terms(policy, served)
        if prior is not None and store.on_therapy(
            claim, policy.policy_id, served - timedelta(days=continuity.on_therapy_days)
        ):
            return prior, PolicySelection.CONTINUITY
        return policy, why

    def decide(self, claim: Claim, decided_at: datetime, policy: Policy | None = None) -> Decision:
        """Decide ``claim`` under ``policy`` (default ``choose``): on file if the store holds one, else by it.

        The facts are looked up once, before the store is asked: an authorization on file does not
        validate the claim's prescriber, so the store reads the directory's answer, and the policy
        decides with the same facts when nothing on file pays; the store never pays a claim that fails
        a plausibility edit (the policy then REJECTS it). The only call to ``decide`` in the worker.
        """
        if policy is None:
            policy = self.choose(claim)[0]
        dispensed = self.dispensed
        facts = self.lookup_facts(claim)

        def usual() -> Decision:
            return decide(
                claim,
                facts,
                policy,
                decided_at,
                automated_denials=self.automated_denials,
                dispensed=dispensed,
            )

        authorizations = self.authorizations
        if authorizations is None:
            return usual()
        # An authorization on file pays without re-evaluation (docs/authorizations.md).
        return authorizations.decide(claim, facts, policy, decided_at, usual, dispensed=dispensed)


def continued(decision: Decision, policies: PolicyChoice | None, claim: Claim) -> Decision:
    """Return ``decision`` (under a prior version's terms) with the summary naming the continuity applied."""
    if policies is None:  # pragma: no cover - CONTINUITY is chosen only from a PolicyChoice
        return decision
    declaring = policies.select(claim.date_of_service)[0]
    continuity = declaring.continuity
    if continuity is None:  # pragma: no cover - chosen only when the version declares one
        return decision
    note = (
        f" Continuity of care declared by {declaring.ref}: the member is on therapy (authorized within "
        f"{continuity.on_therapy_days} days before the date of service), so {decision.policy_version}'s "
        f"terms apply through {continuity.until.isoformat()}."
    )
    return decision.model_copy(update={"summary": decision.summary + note})


def judge(
    record: Record,
    *,
    codec: Codec,
    seen: SeenEvents,
    decider: Decider,
    decided_at: datetime,
) -> Judgement:
    """Judge one record; never raises for bad input (it becomes ``Judgement.error``).

    A malformed claim that names its claim id stays ``error`` (``MalformedClaim``): ``route`` answers it
    with a REJECTED result, unless its event was already answered (then it is a duplicate). So does a
    claim whose record key is no clean identifier (``contracts.identifiers``; reject 85, field ``key``).
    Infrastructure failures (an unreachable schema registry) do raise: they are not the record's fault.
    """
    policy = decider.policy
    try:
        claim = codec.decode_claim(record.value, record.key)
        if seen.seen(record.partition, claim.event_id):
            raise DuplicateEvent
    except MalformedClaim as error:
        if error.event_id is not None and seen.seen(record.partition, error.event_id):
            return Judgement(record, error=DuplicateEvent(), policy=policy)
        return Judgement(record, error=error, policy=policy)
    except BadRecord as error:
        return Judgement(record, error=error, policy=policy)
    return judged(record, claim, decider=decider, decided_at=decided_at)


def judged(record: Record, claim: Claim, *, decider: Decider, decided_at: datetime) -> Judgement:
    """Decide a decoded claim (or a PA request's claim) and return the timed ``Judgement``."""
    tick = time.perf_counter()
    policy, selection = decider.choose(claim)
    decision = decider.decide(claim, decided_at, policy)
    if decision.policy_version != policy.version:
        selection = PolicySelection.CONTINUITY  # paid on file under the version that issued it
    elif selection is PolicySelection.CONTINUITY:
        decision = continued(decision, decider.policies, claim)
    return Judgement(
        record,
        claim=claim,
        decision=decision,
        decide_s=time.perf_counter() - tick,
        policy=policy,
        selection=selection,
    )
