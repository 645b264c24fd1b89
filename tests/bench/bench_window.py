"""Steady-state benchmark: the worker on one partition for several times its duplicate window.

Produces ``--claims`` claims (default 4 x ``--window``) to a one-partition topic on a fresh broker
(or $KAFKA_BOOTSTRAP_SERVERS), drains them with the worker's pipeline built by the composition root
with ``CLAIMS_DEDUP_WINDOW=--window``, and prints claims/s and CPU µs per claim for every
``--chunk`` claims, so a slowdown once the window is full (evictions start at claim ``--window``)
shows as falling figures. The last line compares the chunks after the window filled with the first.

    python tests/bench/bench_window.py [--window 20000] [--claims 80000] [--chunk 10000] [--mix realistic]

Other ``CLAIMS_*`` environment variables (e.g. ``CLAIMS_LINGER_MS``) reach the worker's settings.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.kafka import broker as local_broker
from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.kafka import io as kafka_io
from worker.kafka import topics as kafka_topics
from worker.runtime.compose import build_worker

OTHER_DRUG = "00093747489"  # capecitabine: not an Ixempra product


class _NullLog:
    def __getattr__(self, _name: str):
        return lambda *_a, **_k: None


def main() -> int:
    """Produce, drain, print one line per chunk and the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--claims", type=int, default=None, help="default: 4 x --window")
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--mix", choices=("ixempra", "realistic"), default="realistic")
    args = parser.parse_args()
    total = args.claims or 4 * args.window
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"window-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLAIMS_CLAIMS_TOPIC": f"window-{tag}.claims",
            "CLAIMS_RESULTS_TOPIC": f"window-{tag}.results",
            "CLAIMS_DEAD_LETTER_TOPIC": f"window-{tag}.dlq",
            "CLAIMS_GROUP_ID": f"window-{tag}",
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"window-{tag}",
            "CLAIMS_BATCH_MAX_RECORDS": str(args.batch),
            "CLAIMS_DEDUP_WINDOW": str(args.window),
            # Other CLAIMS_* settings from the environment (e.g. CLAIMS_LINGER_MS) for A/B runs.
            **{k: v for k, v in os.environ.items() if k.startswith("CLAIMS_") and k != "CLAIMS_DEDUP_WINDOW"},
        }
    )
    chunks: list[tuple[float, float]] = []  # (claims/s, CPU µs per claim)
    try:
        kafka_topics.create_topics(
            settings, [settings.claims_topic, settings.results_topic, settings.dead_letter_topic], 1
        )
        other = {"product_id": OTHER_DRUG, "qualifier": "03"}
        codec = Codec()
        print(f"producing {total:,} claims ({args.mix} mix) to one partition ...", flush=True)
        for start in range(0, total, 20_000):
            claims = [
                streams.claim(i) if args.mix == "ixempra" or i % 100 == 0 else streams.claim(i, product=other)
                for i in range(start, min(total, start + 20_000))
            ]
            streams.produce(bootstrap, settings.claims_topic, streams.encoded(claims, codec))
        gc.collect()
        gc.freeze()
        worker = build_worker(settings, consumer=kafka_io.make_consumer(settings), log=_NullLog())
        done, mark = 0, args.chunk
        worker.subscribe()
        deadline = time.monotonic() + 1_800
        try:
            # The clock starts with the first committed batch (group join and set-up are not counted).
            while done == 0 and time.monotonic() < deadline:
                report = worker.poll_once()
                done += report.records if report is not None else 0
            wall, cpu = time.perf_counter(), time.process_time()
            chunk_start = done
            while done < total and time.monotonic() < deadline:
                report = worker.poll_once()
                if report is None:
                    continue
                done += report.records
                if done >= mark or done >= total:
                    now_wall, now_cpu = time.perf_counter(), time.process_time()
                    n = done - chunk_start
                    chunks.append((n / (now_wall - wall), (now_cpu - cpu) / n * 1e6))
                    print(
                        f"  claims {chunk_start:>7,}-{done:>7,}: {chunks[-1][0]:>7,.0f} claims/s "
                        f"{chunks[-1][1]:>6.0f} µs CPU/claim"
                        + ("   (window full)" if chunk_start >= args.window else ""),
                        flush=True,
                    )
                    wall, cpu, chunk_start = now_wall, now_cpu, done
                    mark = (done // args.chunk + 1) * args.chunk
        finally:
            worker.close()
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    if done < total:
        print(f"FAILED: only {done}/{total} claims answered")
        return 1
    full_from = args.window // args.chunk  # chunks that start once the window is full
    if chunks and len(chunks) > full_from:
        first, after = chunks[0], chunks[full_from:]
        rate = statistics.median(r for r, _ in after)
        cpu = statistics.median(c for _, c in after)
        print(
            f"window {args.window:,}, {total:,} claims, one partition: first chunk {first[0]:,.0f} claims/s "
            f"({first[1]:.0f} µs CPU); after the window filled, median {rate:,.0f} claims/s ({cpu:.0f} µs CPU)"
            f" = {rate / first[0]:.2f} x the first chunk (CPU {cpu / first[1]:.2f} x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
