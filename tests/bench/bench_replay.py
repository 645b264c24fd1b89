"""Replay benchmark: replay claims/s and diff claims/s on a realistic mix, beside the live worker's figure.

Starts (or uses $KAFKA_BOOTSTRAP_SERVERS) a real broker, produces N claims to a fresh topic (most for
other drugs; the Ixempra ones approvable, pended for C77.2 under 2020.09-1, or locally advanced), drains
it with the live worker under IXEMPRA-PA/2020.09-1, then replays the whole range under 2020.09-2 into a
replay topic and diffs it against the live results. Figures are medians over rounds, one partition.

    python tests/bench/bench_replay.py [--claims 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import _drain, _settings

from deploy.kafka import broker as local_broker
from tests.integration import streams
from worker.contracts.codec import Codec
from worker.kafka import topics as kafka_topics
from worker.ops.logs import get_logger
from worker.policy import catalog_policy
from worker.runtime.replay import run_replay
from worker.runtime.replay_job import ReplayJob

NEW = "IXEMPRA-PA/2020.09-2"


def _mix(n: int):
    """A realistic mix: 80% other drugs, then Ixempra approvable, C77.2-only, locally advanced."""
    claims = []
    for i in range(n):
        kind = i % 10
        if kind < 8:
            claims.append(streams.claim(i, product={"product_id": streams.CAPECITABINE, "qualifier": "03"}))
        elif kind == 8 and i % 20 == 8:
            claims.append(
                streams.claim(
                    i,
                    diagnoses=[{"code": "C50.911", "qualifier": "02"}, {"code": "C77.2", "qualifier": "02"}],
                )
            )
        else:
            claims.append(streams.claim(i))
    return claims


def _round(bootstrap: str, values, n: int) -> tuple[float, float, float, int]:
    tag = uuid.uuid4().hex[:8]
    settings = _settings(bootstrap, tag, 500).model_copy(update={"policy": "IXEMPRA-PA/2020.09-1"})
    kafka_topics.create_topics(
        settings, [settings.claims_topic, settings.results_topic, settings.dead_letter_topic], 1
    )
    start = datetime.now(UTC) - timedelta(minutes=1)
    streams.produce(bootstrap, settings.claims_topic, values)
    live = _drain("worker", settings, n, None)
    codec, policy = Codec(), catalog_policy(NEW)
    output = f"bench-{tag}.replay"
    kafka_topics.create_topics(settings, [output, f"{output}.dlq"], 1)
    job = ReplayJob(
        settings, codec, policy, f"b{tag}", start, output_topic=output, dead_letter_topic=f"{output}.dlq"
    )
    job.progress = False
    began = time.perf_counter()
    replayed = run_replay(job)
    replay_rate = replayed.done / (time.perf_counter() - began)
    diff_job = ReplayJob(settings, codec, policy, f"d{tag}", start, progress=False)
    began = time.perf_counter()
    diffed = run_replay(diff_job)
    diff_rate = diffed.done / (time.perf_counter() - began)
    if replayed.done != n or diffed.done != n:
        msg = f"replayed {replayed.done}, diffed {diffed.done}, expected {n}"
        raise SystemExit(msg)
    return live, replay_rate, diff_rate, len(diffed.changes)


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"bench-replay-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    get_logger("bench")
    rows = []
    try:
        values = streams.encoded(_mix(args.claims), Codec())
        _round(bootstrap, values[:2_000], 2_000)  # warm-up, discarded
        for n in range(args.rounds):
            live, replay, diff, changed = _round(bootstrap, values, args.claims)
            rows.append((live, replay, diff))
            print(
                f"round {n + 1}: live {live:,.0f} claims/s, replay {replay:,.0f} claims/s, "
                f"diff {diff:,.0f} claims/s ({changed} changed)",
                flush=True,
            )
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    print()
    print(
        f"replay, {args.claims:,} claims (80% other drugs) x {args.rounds} rounds, one partition, one process"
    )
    for i, name in enumerate(("live worker", "replay", "diff")):
        print(f"  {name:<12} median {statistics.median(r[i] for r in rows):>9,.0f} claims/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
