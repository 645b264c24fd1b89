"""Peer benchmark: the worker against two Python stream frameworks and two bare passthroughs, one run.

On one broker (started here from the jars unless $KAFKA_BOOTSTRAP_SERVERS is set), with the same records
in each round, five contenders each drain a fresh one-partition claims topic into a fresh results topic,
one at a time, each as its own subprocess:

* ``worker``      ``python -m worker run`` (kafka-python, one transaction per batch, dedupe, metrics, logs)
* ``quix``        a Quix Streams app, ``processing_guarantee="exactly-once"``, around the worker's own
                  decode → decide → encode (``judge`` below: worker.contracts.codec + worker.policy);
                  it commits as often as the worker does (``commit_interval`` = the worker's
                  CLAIMS_COMMIT_INTERVAL_MS, ``commit_every`` = its CLAIMS_TRANSACTION_MAX_RECORDS;
                  Quix's own default is every 5 s), so the two pay for the same number of transactions
* ``faststream``  a FastStream (aiokafka) batch subscriber around the same ``judge``; ack_first (auto-commit), i.e.
                  at-least-once at best: it has no transactions; its per-message access log is off
* ``kpy-pass``    a kafka-python transactional passthrough (poll → begin → send → offsets → commit), the
                  worker's own client settings (worker.kafka.io), copying bytes unchanged
* ``ck-pass``     the same passthrough on confluent-kafka (librdkafka)
* ``quix-pass``, ``faststream-pass``  the two peer apps with no job (bytes copied): each framework's own cost
                  per record. Beside ``kpy-pass`` they bound the worker: see ``_print_bound``

Figures per contender, from the window between its first and last output record (so start-up and the
group join are out of them): claims/s = (n - 1) / (last - first output timestamp); client CPU µs per
record = the child's user+system CPU (sampled from /proc every 50 ms) over that window / (n - 1). Medians
of the rounds; the order of the contenders rotates every round. Two mixes: ``ixempra`` (every claim is
for Ixempra, so every claim is judged against all criteria) and ``realistic`` (99% other drugs).

    python tests/bench/bench_peers.py [--claims 20000] [--rounds 3] [--kinds worker,quix,...]

The peers are bench-only dependencies: ``pip install -e '.[bench]'`` (``make bench-peers`` does it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import itertools

from worker import __version__
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_result
from worker.errors import BadRecord
from worker.policy import decide, default_policy
from worker.policy.facts import Facts

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("worker", "quix", "faststream", "kpy-pass", "ck-pass", "quix-pass", "faststream-pass")
# Not in the default set: `claims-worker run --processes 2` (two worker processes under the supervisor), for
# the scaling figure: --kinds worker,worker-x2 --partitions 4
EXTRA_KINDS = ("worker-x2",)
# Also not in the default set: `worker-i<ms>`, the worker with CLAIMS_COMMIT_INTERVAL_MS=<ms> (e.g. worker-i0:
# one transaction per poll), to compare commit intervals in the same run: --kinds worker,worker-i0,quix
# And `worker+NAME=VALUE[+NAME=VALUE...]`: the worker with those environment variables set (any setting), e.g.
# --kinds worker,worker+CLAIMS_LINGER_MS=20,kpy-pass
# And `worker@DIR`: the worker of another checkout (e.g. `git archive <commit> | tar -x -C DIR`), run from DIR
# with this venv, to compare two versions in one run: --kinds worker,worker@/tmp/old,kpy-pass
BATCH = 500
_VARIANTS = ("worker-i", "worker+", "worker@")  # the worker with other settings or from another checkout
CLK_TCK = os.sysconf("SC_CLK_TCK")
OTHER_DRUG = "00093747489"  # capecitabine: not an Ixempra product, so NOT_APPLICABLE


# ---------------------------------------------------------------------------------------------- the job
def make_judge() -> Callable[[bytes | None, str, int, int], bytes]:
    """The worker's own per-record work, for the peers: decode, decide, build and encode the output."""
    codec, policy, facts = Codec(), default_policy(), Facts()

    def judge(value: bytes | None, topic: str, partition: int, offset: int) -> bytes:
        now = datetime.now(UTC)
        source = SourceCoordinates(topic, partition, offset)
        try:
            claim = codec.decode_claim(value)
        except BadRecord as error:
            return codec.encode_dead_letter(
                build_dead_letter(
                    key=None,
                    value=value,
                    headers=[],
                    source=source,
                    error=error,
                    worker_version=__version__,
                    dead_lettered_at=now,
                )
            )
        decision = decide(claim, facts, policy, now)
        return codec.encode_result(build_result(claim, decision, source=source, worker_version=__version__))

    return judge


# ------------------------------------------------------------------------------------- the child apps
def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _copy(value: bytes | None, _topic: str, _partition: int, _offset: int) -> bytes | None:
    """The ``*-pass`` peers' job: none (the framework's own cost per record, a bound for the worker)."""
    return value


def app_quix(bootstrap: str, claims: str, results: str, group: str, *, judge=None) -> None:
    """A Quix Streams app, exactly-once, writing judge(value) to the results topic."""
    from quixstreams import Application, message_context  # noqa: PLC0415

    judge = judge or make_judge()
    interval_s, every = quix_commits()
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        loglevel="WARNING",
        auto_create_topics=False,
        commit_interval=interval_s,
        commit_every=every,
    )
    source = app.topic(claims, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(results, key_serializer="bytes", value_serializer="bytes")

    def apply(value: bytes) -> bytes:
        ctx = message_context()
        return judge(value, claims, ctx.partition, ctx.offset)

    # Quix keeps the input's timestamp on its output by default; stamp the time of processing instead,
    # as the other contenders' clients do, so the output timestamps time the drain.
    sdf = app.dataframe(source).apply(apply)
    sdf.set_timestamp(lambda *_: int(time.time() * 1000)).to_topic(sink)
    app.run()


def quix_commits() -> tuple[float, int]:
    """The Quix contender's (commit_interval s, commit_every records): the worker's own commit schedule.

    The worker commits its transaction CLAIMS_COMMIT_INTERVAL_MS after it opened or once it holds
    CLAIMS_TRANSACTION_MAX_RECORDS (and when caught up); Quix commits its checkpoint by the same two rules.
    """
    settings = _kpy_settings("127.0.0.1:9", "c", "r", "g")
    return settings.commit_interval_ms / 1000, settings.transaction_max_records


def app_faststream(bootstrap: str, claims: str, results: str, group: str, *, judge=None) -> None:
    """A FastStream (aiokafka) app: one subscriber that publishes judge(value) without awaiting acks."""
    from faststream import FastStream  # noqa: PLC0415
    from faststream.kafka import KafkaBroker, KafkaMessage  # noqa: PLC0415
    from faststream.middlewares import AckPolicy  # noqa: PLC0415

    judge = judge or make_judge()
    # logger=None: no access-log line per message (FastStream's default logs two), as the worker logs per batch.
    broker = KafkaBroker(bootstrap, linger_ms=5, logger=None)

    @broker.subscriber(
        claims,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
        batch=True,
        max_records=BATCH,
    )
    async def handle(_bodies: list[bytes], msg: KafkaMessage) -> None:
        for raw in msg.raw_message:
            out = judge(raw.value, raw.topic, raw.partition, raw.offset)
            await broker.publish(out, results, key=raw.key, partition=raw.partition, no_confirm=True)

    asyncio.run(FastStream(broker).run())


def _kpy_settings(bootstrap: str, claims: str, results: str, group: str):
    from worker.config.settings import load_settings  # noqa: PLC0415

    return load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLAIMS_CLAIMS_TOPIC": claims,
            "CLAIMS_RESULTS_TOPIC": results,
            "CLAIMS_DEAD_LETTER_TOPIC": results + ".dlq",
            "CLAIMS_GROUP_ID": group,
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": group,
            "CLAIMS_BATCH_MAX_RECORDS": str(BATCH),
        }
    )


def app_kpy_pass(bootstrap: str, claims: str, results: str, group: str) -> None:
    """kafka-python transactional passthrough with the worker's client settings."""
    from worker.kafka import io as kafka_io  # noqa: PLC0415

    settings = _kpy_settings(bootstrap, claims, results, group)
    stop = _stop_event()
    consumer = kafka_io.make_consumer(settings)
    producer = kafka_io.make_producer(settings)
    consumer.subscribe([claims])
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=200, max_records=BATCH)
        if not batch:
            continue
        producer.begin_transaction()
        offsets = {}
        for tp, records in batch.items():
            for r in records:
                producer.send(results, key=r.key, value=r.value, partition=tp.partition)
            offsets[tp] = kafka_io.OffsetAndMetadata(records[-1].offset + 1, "", records[-1].leader_epoch)
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()
    producer.close(timeout=5)
    consumer.close(autocommit=False)


def app_ck_pass(bootstrap: str, claims: str, results: str, group: str) -> None:
    """confluent-kafka (librdkafka) transactional passthrough, same loop."""
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    stop = _stop_event()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{group}-0", "linger.ms": 5})
    producer.init_transactions()
    consumer.subscribe([claims])
    while not stop.is_set():
        msgs = [m for m in consumer.consume(BATCH, 0.2) if m.error() is None]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(results, m.value(), m.key(), partition=m.partition())
            producer.poll(0)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
        )
        producer.commit_transaction()
    consumer.close()


APPS = {
    "quix": app_quix,
    "faststream": app_faststream,
    "kpy-pass": app_kpy_pass,
    "ck-pass": app_ck_pass,
    # The frameworks with no job: their own cost per record, the bound a worker on kafka-python is held to.
    "quix-pass": lambda *args: app_quix(*args, judge=_copy),
    "faststream-pass": lambda *args: app_faststream(*args, judge=_copy),
}


# ------------------------------------------------------------------------------------------ the parent
def _cpu_s(pid: int) -> float | None:
    """User+system CPU seconds of ``pid`` and its live children (the supervisor's workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return total + sum(_cpu_s(int(child)) or 0.0 for child in children)


def _interp(samples: list[tuple[float, float]], t: float) -> float:
    """CPU seconds at wall time ``t``, linearly between the two samples around it."""
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return samples[0][1] if t < samples[0][0] else samples[-1][1]


class _Committed:
    """Reads a group's committed offsets on one topic (a consumer that never joins the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        parts = self.consumer.partitions_for_topic(topic) or ()
        self.parts = [TopicPartition(topic, p) for p in parts]

    def total(self) -> int:
        return sum(self.consumer.committed(tp) or 0 for tp in self.parts)

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def run_one(
    kind: str, bootstrap: str, values, logs: Path, *, timeout_s: float = 240, partitions: int = 1
) -> tuple[float, float]:
    """Drain ``values`` with ``kind`` in a subprocess; return (claims/s, client CPU µs per record)."""
    from tests.integration import streams  # noqa: PLC0415
    from worker.kafka import topics as kafka_topics  # noqa: PLC0415
    from worker.kafka.reads import read_topic  # noqa: PLC0415

    tag = f"{re.sub(r'[^a-zA-Z0-9._-]', '_', kind)}-{uuid.uuid4().hex[:8]}"
    claims, results, group = f"peers-{tag}.claims", f"peers-{tag}.results", f"peers-{tag}"
    kafka_topics.create_topics(
        _kpy_settings(bootstrap, claims, results, "admin"), [claims, results, results + ".dlq"], partitions
    )
    streams.produce(bootstrap, claims, values)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    if kind.startswith("worker"):
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CLAIMS_CLAIMS_TOPIC": claims,
                "CLAIMS_RESULTS_TOPIC": results,
                "CLAIMS_DEAD_LETTER_TOPIC": results + ".dlq",
                "CLAIMS_GROUP_ID": group,
                "CLAIMS_TRANSACTIONAL_ID_PREFIX": group,
                "CLAIMS_BATCH_MAX_RECORDS": str(BATCH),
                "CLAIMS_METRICS_PORT": "0",
                "CLAIMS_LOG_FORMAT": "json",
            }
        )
        if kind.startswith("worker-i"):
            env["CLAIMS_COMMIT_INTERVAL_MS"] = kind.removeprefix("worker-i")
        # worker+NAME=VALUE+...: the worker with these environment variables, to compare settings in one run.
        for pair in kind.split("+")[1:]:
            name, _, value = pair.partition("=")
            env[name] = value
        cmd = [sys.executable, "-m", "worker", "run"]
        if kind == "worker-x2":
            cmd += ["--processes", "2"]
    else:
        cmd = [sys.executable, __file__, "--app", kind, bootstrap, claims, results, group]
    cwd = Path(kind.partition("@")[2]) if kind.startswith("worker@") else ROOT
    log = (logs / f"{tag}.log").open("wb")
    child = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            cpu = _cpu_s(child.pid)
            if cpu is not None:
                samples.append((time.time(), cpu))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    committed = _Committed(bootstrap, group, claims)
    deadline = time.monotonic() + timeout_s
    try:
        while committed.total() < len(values):
            if child.poll() is not None:
                msg = f"{kind} exited with {child.returncode}; see {log.name}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"{kind}: not done after {timeout_s:.0f}s; see {log.name}"
                raise RuntimeError(msg)
            time.sleep(0.3)
    finally:
        done.set()
        sampler.join()
        committed.close()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
    stamps = [
        r.timestamp / 1000
        for r in read_topic(_kpy_settings(bootstrap, claims, results, "report"), results, timeout_s=60)
    ]
    if len(stamps) < len(values):
        msg = f"{kind}: {len(stamps)} committed results for {len(values)} claims"
        raise RuntimeError(msg)
    first, last = min(stamps), max(stamps)
    n = len(stamps) - 1
    cpu = _interp(samples, last) - _interp(samples, first)
    return n / (last - first), cpu / n * 1e6


def _mix(name: str, n: int, codec: Codec):
    from tests.integration import streams  # noqa: PLC0415

    if name == "ixempra":
        claims = [streams.claim(i) for i in range(n)]
    else:
        other = {"product_id": OTHER_DRUG, "qualifier": "03"}
        claims = [streams.claim(i) if i % 100 == 0 else streams.claim(i, product=other) for i in range(n)]
    return streams.encoded(claims, codec)


def _print_bound(per_kind: dict[str, list[tuple[float, float]]]) -> None:
    """Print what the client alone costs beside each framework alone (the ``*-pass`` kinds), when measured.

    A peer app's CPU per record is its framework's (``<peer>-pass``) plus the job; the worker's is at least
    kafka-python's transactional passthrough (``kpy-pass``) plus the same job. When ``kpy-pass`` costs more
    than ``<peer>-pass``, no kafka-python worker doing the same job can use less CPU per record than the peer.
    """
    if "kpy-pass" not in per_kind:
        return
    client = statistics.median(c for _, c in per_kind["kpy-pass"])
    for peer in ("quix", "faststream"):
        alone = per_kind.get(f"{peer}-pass")
        if not alone:
            continue
        framework = statistics.median(c for _, c in alone)
        print(
            f"  bound: kafka-python passthrough {client:.0f} µs CPU/rec vs {peer} framework alone {framework:.0f}:"
            f" a kafka-python worker doing {peer}'s job spends >= {client - framework:+.0f} µs/rec more"
        )


def main() -> int:  # noqa: PLR0912 - child mode, the rounds and the table
    """Child mode (--app) runs one peer; otherwise run the rounds and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app", choices=sorted(APPS), help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--mixes", default="ixempra,realistic")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of each claims topic")
    args = parser.parse_args()
    if args.app:
        APPS[args.app](*args.child_args)
        return 0

    from deploy.kafka import broker as local_broker  # noqa: PLC0415

    kinds = [k for k in args.kinds.split(",") if k]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"peers-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    logs = ROOT / ".cache" / "bench-peers"
    logs.mkdir(parents=True, exist_ok=True)
    codec = Codec()
    worker_settings = _kpy_settings(bootstrap, "c", "r", "g")
    interval_s, every = quix_commits()
    print(
        f"commits: worker every {worker_settings.commit_interval_ms} ms or "
        f"{worker_settings.transaction_max_records:,} records (CLAIMS_COMMIT_INTERVAL_MS, "
        f"CLAIMS_TRANSACTION_MAX_RECORDS); quix commit_interval={interval_s:g} s, commit_every={every:,}",
        flush=True,
    )
    figures: dict[str, dict[str, list[tuple[float, float]]]] = {}
    try:
        # Warm-up, discarded: the broker's JIT and page cache make the first drains slow.
        run_one("kpy-pass", bootstrap, _mix("ixempra", 2_000, codec), logs)
        for mix in args.mixes.split(","):
            values = _mix(mix, args.claims, codec)
            figures[mix] = {k: [] for k in kinds}
            for n in range(args.rounds):
                order = kinds[n % len(kinds) :] + kinds[: n % len(kinds)]
                for kind in order:
                    rate, cpu = run_one(kind, bootstrap, values, logs, partitions=args.partitions)
                    figures[mix][kind].append((rate, cpu))
                    print(
                        f"{mix} round {n + 1} {kind:<11} {rate:>8,.0f} claims/s {cpu:>7.0f} µs CPU/record",
                        flush=True,
                    )
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    print()
    print(
        f"{args.claims:,} claims per round, {args.rounds} rounds, {args.partitions} partition(s), batch {BATCH}; medians"
    )
    for mix, per_kind in figures.items():
        print(f"\nmix: {mix}")
        print(f"  {'contender':<11} {'claims/s':>9} {'CPU µs/rec':>11}  rounds (claims/s)")
        for kind, rows in per_kind.items():
            rates = [r for r, _ in rows]
            print(
                f"  {kind:<11} {statistics.median(rates):>9,.0f} {statistics.median(c for _, c in rows):>11.0f}"
                f"  {', '.join(f'{r:,.0f}' for r in rates)}"
            )
        for variant in (k for k in per_kind if k.startswith(_VARIANTS)):
            for peer in (k for k in per_kind if not k.startswith("worker")):
                ratios = [w[0] / p[0] for w, p in zip(per_kind[variant], per_kind[peer], strict=True)]
                print(
                    f"  {variant} ÷ {peer:<11} {statistics.median(ratios):.2f}"
                    f"  (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
                )
        _print_bound(per_kind)
        if "worker" in per_kind:
            work = per_kind["worker"]
            for peer in (k for k in per_kind if k != "worker" and not k.startswith(_VARIANTS)):
                ratios = [w[0] / p[0] for w, p in zip(work, per_kind[peer], strict=True)]
                label = f"worker ÷ {peer:<11}"
                if peer == "worker-x2":
                    ratios, label = [1 / r for r in ratios], "2 processes ÷ 1      "
                print(
                    f"  {label} {statistics.median(ratios):.2f}  (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
                )
        _print_cpu_ratios(per_kind)
    return 0


def _print_cpu_ratios(per_kind: dict[str, list[tuple[float, float]]]) -> None:
    """Print each worker's CPU per claim over the kafka-python passthrough's (issue 29's target ratio)."""
    if "kpy-pass" not in per_kind:
        return
    floor = statistics.median(c for _, c in per_kind["kpy-pass"])
    for kind in (k for k in per_kind if k.startswith("worker")):
        cpu = statistics.median(c for _, c in per_kind[kind])
        print(f"  CPU/claim {kind} ÷ kpy-pass {cpu / floor:.2f}  ({cpu:.0f} / {floor:.0f} µs)")


if __name__ == "__main__":
    raise SystemExit(main())
