"""End-to-end benchmark: the worker vs a bare transactional passthrough of the same records, in one run.

Starts (or uses $KAFKA_BOOTSTRAP_SERVERS) a real broker. For each round it produces N claims to a fresh
topic and drains it twice: once with the worker's pipeline and once with a bare kafka-python
consume → produce loop with the same batch size and transaction settings. It prints claims/s for both,
their ratio, and the p50/p99 claim→result latency of a paced run (records produced at a steady rate
while the consumer runs). Figures are medians over rounds.

    python tests/bench/bench_pipeline.py [--claims 20000] [--rounds 3] [--rate 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.kafka import broker as local_broker
from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.kafka import io as kafka_io
from worker.kafka import topics as kafka_topics
from worker.ops.logs import get_logger
from worker.runtime.compose import build_worker

if TYPE_CHECKING:
    from collections.abc import Callable


class _NullLog:
    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


def _settings(bootstrap: str, tag: str, batch: int):
    return load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLAIMS_CLAIMS_TOPIC": f"bench-{tag}.claims",
            "CLAIMS_RESULTS_TOPIC": f"bench-{tag}.results",
            "CLAIMS_DEAD_LETTER_TOPIC": f"bench-{tag}.dlq",
            "CLAIMS_GROUP_ID": f"bench-{tag}",
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"bench-{tag}",
            "CLAIMS_BATCH_MAX_RECORDS": str(batch),
            "CLAIMS_DEDUP_WINDOW": "100000",
            "CLAIMS_LINGER_MS": os.environ.get("CLAIMS_LINGER_MS", "5"),
        }
    )


def _prepare(bootstrap: str, batch: int, values: list[tuple[bytes | None, bytes | None]] | None):
    tag = uuid.uuid4().hex[:8]
    settings = _settings(bootstrap, tag, batch)
    kafka_topics.create_topics(
        settings, [settings.claims_topic, settings.results_topic, settings.dead_letter_topic], 1
    )
    if values:
        streams.produce(bootstrap, settings.claims_topic, values)
    return settings


class _Passthrough:
    """The same poll → transaction → send → send_offsets → commit loop, copying bytes unchanged."""

    def __init__(self, settings, consumer, producer) -> None:
        self.settings, self.consumer, self.producer = settings, consumer, producer

    def process(self, batch) -> bool:
        producer, timeout = self.producer, self.settings.commit_timeout_s
        producer.begin_transaction()
        offsets = {}
        for tp, records in batch.items():
            for r in records:
                producer.send(self.settings.results_topic, key=r.key, value=r.value, partition=tp.partition)
            offsets[tp] = kafka_io.OffsetAndMetadata(records[-1].offset + 1, "", records[-1].leader_epoch)
        kafka_io.bounded(
            lambda: producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata()),
            timeout,
            "offsets",
        )
        kafka_io.bounded(producer.commit_transaction, timeout, "commit")
        return True


def _drain(
    kind: str, settings, expected: int, latencies: list[float] | None, timeout_s: float = 300
) -> float:
    """Consume ``expected`` records with the worker or the passthrough; return records/s."""
    consumer = kafka_io.make_consumer(settings)
    done, started = 0, None
    deadline = time.monotonic() + timeout_s

    def count(batch) -> None:
        nonlocal done, started
        if started is None:
            started = time.perf_counter()
        now_ms = time.time() * 1000
        for records in batch.values():
            done += len(records)
            if latencies is not None:
                latencies.extend((now_ms - r.timestamp) / 1000 for r in records)

    if kind == "worker":
        # The worker as the CLI builds it (one composition root), driven one pass at a time.
        worker = build_worker(settings, consumer=consumer, log=_NullLog())
        process = worker.process

        def counted(batch):
            if started is None:
                count({})  # the clock starts when the first batch arrives, as for the passthrough
            report = process(batch)
            count(batch)
            return report

        worker.process = counted  # type: ignore[method-assign]
        worker.subscribe()
        try:
            while done < expected and time.monotonic() < deadline:
                worker.poll_once()
            elapsed = time.perf_counter() - (started or time.perf_counter())
        finally:
            worker.close()
    else:
        consumer.subscribe([settings.claims_topic])
        engine = _Passthrough(settings, consumer, kafka_io.make_producer(settings))
        try:
            while done < expected and time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=200, max_records=settings.batch_max_records)
                if not batch:
                    continue
                if started is None:
                    started = time.perf_counter()
                engine.process(batch)
                count(batch)
            elapsed = time.perf_counter() - (started or time.perf_counter())
        finally:
            engine.producer.close(timeout=5)
            consumer.close(autocommit=False)
    if done < expected:
        msg = f"{kind}: only {done}/{expected} records in {timeout_s}s"
        raise RuntimeError(msg)
    return done / elapsed if elapsed > 0 else float("inf")


def _paced(kind: str, bootstrap: str, batch: int, claims, rate: float) -> list[float]:
    """Produce at ``rate``/s while ``kind`` consumes; return per-record claim→result latencies (s)."""
    settings = _prepare(bootstrap, batch, None)
    codec = Codec()
    values = streams.encoded(claims, codec)
    latencies: list[float] = []
    result: dict[str, object] = {}
    consumer_thread = threading.Thread(
        target=lambda: result.setdefault("rate", _drain(kind, settings, len(values), latencies)), daemon=True
    )
    consumer_thread.start()
    producer = kafka_io.KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    # One record first, timed out of the figures: it pays for the group join and the first metadata
    # and transaction set-up of new topics, which a running worker has long behind it.
    producer.send(settings.claims_topic, key=values[0][0], value=values[0][1])
    producer.flush()
    deadline = time.monotonic() + 60
    while not latencies and time.monotonic() < deadline:
        time.sleep(0.05)
    latencies.clear()
    start = time.perf_counter()
    for i, (key, value) in enumerate(values[1:]):
        producer.send(settings.claims_topic, key=key, value=value)
        ahead = (i + 1) / rate - (time.perf_counter() - start)
        if ahead > 0:
            producer.flush()
            time.sleep(ahead)
    producer.flush()
    producer.close()
    consumer_thread.join(timeout=300)
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0, help="claims/s of the paced latency run")
    parser.add_argument("--paced-claims", type=int, default=5_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"bench-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    get_logger("bench")
    try:
        codec = Codec()
        claims = [streams.claim(i) for i in range(args.claims)]
        values = streams.encoded(claims, codec)
        paced = [streams.claim(i) for i in range(args.paced_claims)]
        # As the worker does after start-up (cli.py): keep the long-lived test data out of GC passes.
        gc.collect()
        gc.freeze()
        worker_rates, pass_rates, ratios = [], [], []
        # Warm-up, discarded: the broker's JIT and page cache make the very first drain slow.
        for kind in ("passthrough", "worker"):
            _drain(kind, _prepare(bootstrap, args.batch, values[:5_000]), 5_000, None)
        for n in range(args.rounds):
            s_pass = _prepare(bootstrap, args.batch, values)
            s_work = _prepare(bootstrap, args.batch, values)
            # Alternate which goes first, so neither always gets the warmer broker.
            if n % 2:
                w = _drain("worker", s_work, len(values), None)
                p = _drain("passthrough", s_pass, len(values), None)
            else:
                p = _drain("passthrough", s_pass, len(values), None)
                w = _drain("worker", s_work, len(values), None)
            pass_rates.append(p)
            worker_rates.append(w)
            ratios.append(w / p)
            print(
                f"round {n + 1}: worker {w:,.0f} claims/s, passthrough {p:,.0f} records/s, ratio {w / p:.2f}",
                flush=True,
            )
        _paced("worker", bootstrap, args.batch, paced[:500], args.rate)  # warm-up, discarded
        lat_w = _paced("worker", bootstrap, args.batch, paced, args.rate)
        lat_p = _paced("passthrough", bootstrap, args.batch, paced, args.rate)
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    print()
    print(
        f"end-to-end, {args.claims:,} claims x {args.rounds} rounds, batch {args.batch}, one partition, one process"
    )
    print(f"  worker       median {statistics.median(worker_rates):>9,.0f} claims/s")
    print(f"  passthrough  median {statistics.median(pass_rates):>9,.0f} records/s")
    print(
        f"  ratio worker/passthrough: median {statistics.median(ratios):.2f} (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(f"claim→result latency, paced at {args.rate:,.0f}/s, {args.paced_claims:,} claims:")
    print(f"  worker       p50 {_pct(lat_w, 0.5) * 1000:7.1f} ms   p99 {_pct(lat_w, 0.99) * 1000:7.1f} ms")
    print(f"  passthrough  p50 {_pct(lat_p, 0.5) * 1000:7.1f} ms   p99 {_pct(lat_p, 0.99) * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
