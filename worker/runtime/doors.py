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
    from datetime import datetime

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.runtime.judge import Decider, Judgement, Record
    from worker.runtime.route import Outgoing
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
        decider: Decider,
        decided_at: datetime,
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
    dispensed: bool = True
    """Whether its claims dispense (carry quantity and days supply to edit): false for PA requests."""


CLAIMS = Door("claims", judge, route, "claim")
"""Claims in, results (or dead letters) out, on the claim's partition number."""
