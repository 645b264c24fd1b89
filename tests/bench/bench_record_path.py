"""Per-record CPU cost of the worker's pure path: decode+validate, decide, build_result, encode_result.

Run: ``.venv/bin/python tests/bench/bench_record_path.py [--claims N] [--rounds R]``. Uses the claim mix
of ``bench_policy.py``; figures are microseconds of this process's CPU time per record, best of R
rounds (other load on a shared machine does not count). It also runs against an older checkout, to
compare result v1 with v2: ``git archive <commit> | tar -x -C /tmp/old`` then, from /tmp/old,
``PYTHONPATH=/tmp/old <venv>/bin/python <this file>`` (it adapts to the older ``decide`` signature).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path.cwd() / "tests" / "bench"))

from bench_policy import build_claims

from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_result
from worker.policy import decide, default_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__: list[str] = []


def _best(action: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    """Return the best (lowest) CPU microseconds per item over ``rounds`` passes."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for item in items:
            action(item)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def main() -> None:
    """Build the claims, time each step of the pure path, print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    claims = build_claims(args.claims)
    policy, at = default_policy(), datetime(2025, 3, 10, tzinfo=UTC)
    codec, source = Codec(), SourceCoordinates("claims", 0, 1)
    values = [codec.encode_claim(claim) for claim in claims]
    if "facts" in inspect.signature(decide).parameters:
        from worker.policy import Facts  # noqa: PLC0415

        facts = Facts()
        label = "result v2"

        def decide_one(claim: Any) -> Any:
            return decide(claim, facts, policy, at)
    else:
        label = "result v1"

        def decide_one(claim: Any) -> Any:
            return decide(claim, at, policy)  # type: ignore[call-arg, arg-type]

    decided = [(claim, decide_one(claim)) for claim in claims]
    records = [build_result(claim, d, source=source, worker_version="bench") for claim, d in decided]
    parts = {
        "decode+validate": _best(codec.decode_claim, values, args.rounds),
        "decide": _best(decide_one, claims, args.rounds),
        "build_result": _best(
            lambda cd: build_result(cd[0], cd[1], source=source, worker_version="b"), decided, args.rounds
        ),
        "encode_result": _best(codec.encode_result, records, args.rounds),
    }
    total = sum(parts.values())
    print(
        f"{label}: "
        + ", ".join(f"{k} {v:.1f} us" for k, v in parts.items())
        + f"; total {total:.1f} us/record"
    )


if __name__ == "__main__":
    main()
