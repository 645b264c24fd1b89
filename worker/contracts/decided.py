"""The result of a decided claim, written from its decision's encoded fields when the decision recurs.

Most of a stream is claims of other drugs, and the policy hands every claim of one product in a batch
the same frozen NOT_APPLICABLE ``Decision`` (``policy.decision``). A result is the claim's identifiers
(claim id, event id, transaction code, event time), its source coordinates, and fields that come from
the decision alone; the bytes of those are written once per decision (``fastwrite.compile_splice``) and only
the claim's own fields per claim. A decision seen once (nearly every Ixempra decision: its PA number
or criteria are the claim's) is written whole, as before. Either way the bytes are those of
``Codec.encode_result(build_result(...))``; tests compare them for seeded claim mixes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.contracts.codes import PolicySelection
from worker.contracts.fastwrite import Unsupported, compile_splice
from worker.contracts.results import build_result

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from worker.contracts.model import Claim, Decision
    from worker.contracts.results import SourceCoordinates

__all__ = ["CLAIM_FIELDS", "DecidedResults"]

CLAIM_FIELDS = ("claim_id", "source_event_id", "transaction_code", "event_time", "source")
"""The result fields that come from the claim and its coordinates (in result schema order)."""

_LIMIT = 1_024  # decisions remembered (a batch's NOT_APPLICABLE decisions: one per product)


class DecidedResults:
    """Writes result bodies for one result schema; remembers the encoded runs of recurring decisions.

    ``encode_result`` is the codec's whole-record path (framing included), used for a decision seen
    once and for anything the splice does not cover; ``header`` is the framing of the current schema.
    Not thread-safe (one per codec, like the claim parts).
    """

    __slots__ = ("_encode_result", "_header", "_runs", "_splice")

    def __init__(
        self,
        schema: Mapping[str, Any],
        header: bytes,
        encode_result: Callable[[Mapping[str, Any]], bytes],
    ) -> None:
        self._splice = compile_splice(schema, CLAIM_FIELDS)
        self._header = header
        self._encode_result = encode_result
        # (id(decision), worker version, selection) -> (decision, runs or None when seen once); the
        # decision is held so its id stays its own.
        self._runs: dict[
            tuple[int, str, PolicySelection | None], tuple[Decision, tuple[bytes, ...] | None]
        ] = {}

    def encode(
        self,
        claim: Claim,
        decision: Decision,
        source: SourceCoordinates,
        worker_version: str,
        selection: PolicySelection | None = PolicySelection.PINNED,
    ) -> bytes:
        """Return ``encode_result(build_result(claim, decision, source=..., ..., selection=...))``."""
        splice = self._splice
        if splice is None:
            return self._whole(claim, decision, source, worker_version, selection)
        key = (id(decision), worker_version, selection)
        known = self._runs.get(key)
        if known is None or known[0] is not decision:
            if len(self._runs) >= _LIMIT:
                self._runs.clear()
            self._runs[key] = (decision, None)
            return self._whole(claim, decision, source, worker_version, selection)
        runs = known[1]
        record = None
        try:
            if runs is None:  # the second claim of this decision: its runs are worth making
                record = build_result(
                    claim, decision, source=source, worker_version=worker_version, selection=selection
                )
                runs = splice[0](record)
                self._runs[key] = (decision, runs)
            body = splice[1](
                runs,
                claim.claim_id,
                claim.event_id,
                claim.transaction_code.value,
                claim.event_time,
                source.as_record(),
            )
        except Unsupported:
            if record is None:
                return self._whole(claim, decision, source, worker_version, selection)
            return self._encode_result(record)
        return self._header + body

    def _whole(
        self,
        claim: Claim,
        decision: Decision,
        source: SourceCoordinates,
        worker_version: str,
        selection: PolicySelection | None,
    ) -> bytes:
        record = build_result(
            claim, decision, source=source, worker_version=worker_version, selection=selection
        )
        return self._encode_result(record)
