"""The inputs one ``Pipeline`` can serve ("doors"): how a record is judged and routed, what it puts on file.

The loop (poll, transaction, commit, abort, producer replacement, partition state, backoff) is the same
for every input; only these steps differ. ``CLAIMS`` is the claims door (``judge.judge`` and
``route.route``); the PA-request door is ``worker.runtime.requests.REQUESTS``. Each door runs in its own
``Pipeline`` (its own group, transactional id and partition state), built by ``worker.runtime.compose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from worker.runtime.judge import judge
from worker.runtime.route import route

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.contracts.model import Claim
    from worker.policy import Policy
    from worker.policy.facts import Facts
    from worker.runtime.judge import Judgement, Record
    from worker.runtime.route import Outgoing
    from worker.state.authorizations import Authorizations
    from worker.state.dedupe import SeenEvents

__all__ = ["CLAIMS", "Door", "Judge", "Router"]


class Judge(Protocol):
    """The pure step: one consumed record in, one ``Judgement`` out (never raises for bad input)."""

    def __call__(
        self,
        record: Record,
        *,
        codec: Codec,
        seen: SeenEvents,
        policy: Policy,
        decided_at: datetime,
        lookup_facts: Callable[[Claim], Facts],
        automated_denials: bool,
        authorizations: Authorizations | None,
    ) -> Judgement:
        """Judge ``record``."""
        ...


class Router(Protocol):
    """Where a judgement goes: the one record to publish for it."""

    def __call__(self, judgement: Judgement, *, codec: Codec, settings: Settings, at: datetime) -> Outgoing:
        """Return the record to publish for ``judgement``."""
        ...


@dataclass(frozen=True, slots=True)
class Door:
    """One input kind: its judge, its router, and the store's ``source_kind`` of the approvals it issues."""

    name: str
    judge: Judge
    route: Router
    source_kind: str


CLAIMS = Door("claims", judge, route, "claim")
"""Claims in, results (or dead letters) out, on the claim's partition number."""
