"""Codec benchmark: median records/s for decode, decode+validate and result encoding, per framing.

Run: .venv/bin/python tests/bench/bench_codec.py [-n RECORDS_PER_ROUND] [-r ROUNDS]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.config.settings import WireFormat
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_result
from worker.policy import Facts, decide, default_policy
from worker.samples import sample_claims

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.contracts.model import Claim

__all__: list[str] = []

SOURCE = SourceCoordinates("claims", 3, 123_456)
DECIDED_AT = datetime(2025, 3, 10, 14, 30, 1, tzinfo=UTC)


def _v1_record(record: dict[str, Any]) -> dict[str, Any]:
    """Return the v1 shape of a v2 result record (the fields v1 had), as the v1 worker wrote it."""
    v1_fields = (
        "claim_id", "source_event_id", "transaction_code", "outcome", "criteria", "reject_codes",
        "authorization_effective", "authorization_expiration", "summary", "policy_id", "policy_version",
        "decided_at", "worker_version", "source",
    )  # fmt: skip
    out = {name: record[name] for name in v1_fields}
    out["criteria"] = [{k: v for k, v in c.items() if k != "needs"} for c in record["criteria"]]
    return out


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
    decision = decide(claim, Facts(), default_policy(), DECIDED_AT)
    result = build_result(claim, decision, source=SOURCE, worker_version="bench")
    v1_schema = codec._families["result"].versions[1]  # the v1 writer, for the v1-beside-v2 figure
    v1_result = _v1_record(result)

    def build_and_encode(c: Claim) -> bytes:
        return codec.encode_result(build_result(c, decision, source=SOURCE, worker_version="bench"))

    def encode_v1(record: dict[str, Any]) -> bytes:
        return codec._encode(v1_schema, record)

    figures = {
        "decode only (v2 writer)": _rate(codec.decode_claim_record, value, count, rounds),
        "decode only (v1 writer)": _rate(codec.decode_claim_record, old_value, count, rounds),
        "decode + validate (v2 writer)": _rate(codec.decode_claim, value, count, rounds),
        "decode + validate (v1 writer)": _rate(codec.decode_claim, old_value, count, rounds),
        "encode_result v1 record+schema": _rate(encode_v1, v1_result, count, rounds),
        "encode_result v2 record+schema": _rate(codec.encode_result, result, count, rounds),
        "build_result + encode_result": _rate(build_and_encode, claim, count, rounds),
    }
    print(
        f"[{framing}] claim {len(value)} bytes, {decision.outcome} result v1 {len(encode_v1(v1_result))} bytes, "
        f"v2 {len(codec.encode_result(result))} bytes"
    )
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
