"""Codec benchmark: median records/s for decode, decode+validate and result encoding, per framing.

Run: .venv/bin/python tests/bench/bench_codec.py [-n RECORDS_PER_ROUND] [-r ROUNDS]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from worker.config.settings import WireFormat
from worker.contracts.codec import Codec
from worker.contracts.model import Claim, CriterionResult, CriterionStatus, Decision, Outcome
from worker.contracts.results import SourceCoordinates, build_result
from worker.devtools.samples import sample_claims

if TYPE_CHECKING:
    from collections.abc import Callable

__all__: list[str] = []

SOURCE = SourceCoordinates("claims", 3, 123_456)
DECISION = Decision(
    outcome=Outcome.APPROVED,
    criteria=(
        CriterionResult(
            criterion_id="A",
            status=CriterionStatus.MET,
            reason_code="RECURRENT_ATTESTED",
            evidence=("C50.912",),
            explanation="Recurrent breast cancer attested on the PA request.",
        ),
        CriterionResult(
            criterion_id="B",
            status=CriterionStatus.MET,
            reason_code="ONCOLOGIST_CONSULTED",
            evidence=("207RX0202X",),
            explanation="Prescribed in consultation with an oncologist.",
        ),
    ),
    authorization_effective=date(2025, 3, 10),
    authorization_expiration=date(2026, 3, 9),
    policy_id="000_da38be68fa2ba257",
    policy_version="1",
    decided_at=datetime(2025, 3, 10, 14, 30, 1, tzinfo=UTC),
    summary="Approved for one year.",
)


def _rate(action: Callable[[Any], object], payload: object, count: int, rounds: int) -> float:
    """Return the median records/s over ``rounds`` runs of ``count`` calls of ``action(payload)``."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            action(payload)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def _bench_framing(framing: WireFormat, claim: Claim, count: int, rounds: int) -> None:
    """Print the figures for one framing."""
    codec = Codec(wire_format=framing)
    value = codec.encode_claim(claim)
    old_value = codec.encode_claim(
        claim.model_copy(update={"prior_authorization_type_code": None}), version=1
    )
    result = build_result(claim, DECISION, source=SOURCE, worker_version="bench")

    def build_and_encode(c: Claim) -> bytes:
        return codec.encode_result(build_result(c, DECISION, source=SOURCE, worker_version="bench"))

    figures = {
        "decode only (v2 writer)": _rate(codec.decode_claim_record, value, count, rounds),
        "decode only (v1 writer)": _rate(codec.decode_claim_record, old_value, count, rounds),
        "decode + validate (v2 writer)": _rate(codec.decode_claim, value, count, rounds),
        "decode + validate (v1 writer)": _rate(codec.decode_claim, old_value, count, rounds),
        "encode_result": _rate(codec.encode_result, result, count, rounds),
        "build_result + encode_result": _rate(build_and_encode, claim, count, rounds),
    }
    print(f"[{framing}] claim {len(value)} bytes, result {len(codec.encode_result(result))} bytes")
    for name, rate in figures.items():
        print(f"  {name:32s} {rate:>10,.0f} records/s")


def main() -> None:
    """Parse the arguments, run every framing and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--count", type=int, default=20_000, help="records per round")
    parser.add_argument("-r", "--rounds", type=int, default=7, help="rounds; the median is printed")
    args = parser.parse_args()
    claim = next(s.claim for s in sample_claims() if s.label == "approve-attested-recurrent")
    print(f"median of {args.rounds} rounds x {args.count} records")
    for framing in WireFormat:
        _bench_framing(framing, claim, args.count, args.rounds)


if __name__ == "__main__":
    main()
