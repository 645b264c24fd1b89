"""Per-record CPU cost of the worker's pure path: decode+validate, decide, build_result, encode_result.

Run: ``.venv/bin/python tests/bench/bench_record_path.py [--claims N] [--rounds R]``. Uses the claim mix
of ``bench_policy.py``; figures are microseconds of this process's CPU time per record, best of R
rounds (other load on a shared machine does not count). A second line times the worker's own
per-record step, ``judge`` then ``route`` (decode, duplicate check, decide, the record to publish),
on ``bench_peers.py``'s two mixes: ``realistic`` (one Ixempra claim in a hundred) and ``ixempra``,
each poll batch of 500 at one decision time as in the worker. It also runs against an older checkout, to
compare result v1 with v2: ``git archive <commit> | tar -x -C /tmp/old`` then, from /tmp/old,
``PYTHONPATH=/tmp/old <venv>/bin/python <this file>`` (it adapts to the older ``decide`` signature;
the judge+route line needs a checkout with ``worker.runtime.judge`` and ``route``).
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
    steps = {mix: _judge_and_route(mix, args.claims, args.rounds) for mix in ("realistic", "ixempra")}
    print("judge+route: " + ", ".join(f"{mix} {us:.1f} us/record" for mix, us in steps.items()))


def _judge_and_route(mix: str, n: int, rounds: int) -> float:
    """Return the best CPU µs per record of judge + route over ``mix``, in poll batches of 500."""
    from bench_peers import BATCH, _mix  # noqa: PLC0415

    from tests.unit.fakes import Rec  # noqa: PLC0415
    from worker.config.settings import load_settings  # noqa: PLC0415
    from worker.runtime.judge import Decider, judge  # noqa: PLC0415
    from worker.runtime.route import route  # noqa: PLC0415
    from worker.state.dedupe import SeenEvents  # noqa: PLC0415

    codec = Codec()
    records = [
        Rec(value, offset=i, key=key, topic="claims") for i, (key, value) in enumerate(_mix(mix, n, codec))
    ]
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    decider, seen = Decider(default_policy()), SeenEvents(0)
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]

    def one(batch: list[Rec]) -> None:
        at = datetime.now(UTC)
        for record in batch:
            route(
                judge(record, codec=codec, seen=seen, decider=decider, decided_at=at),
                codec=codec,
                settings=settings,
                at=at,
            )

    one(batches[0])  # warm the memos, as a running worker has them
    return _best(one, batches, rounds) / BATCH


if __name__ == "__main__":
    main()
