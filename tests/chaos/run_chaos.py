"""Fault harness, modelled on Apache Kafka's transactions system test (``make chaos``).

On its own broker (started here from the jars; restarted in place after its SIGKILL) it:

1. creates claims/results/dead-letter topics with 4 partitions and produces ``--claims`` claims (30% before
   the workers start, the rest paced while they run), with poison records mixed in (random bytes, a wrong
   fingerprint, truncated claims, claims with invalid fields);
2. runs ``--workers`` (2) worker subprocesses (``python -m worker run``), each with its own CLAIMS_INSTANCE
   slot; SIGKILLs a random live worker ``--kills`` (5) times at random points after >= 20% progress and
   restarts it at once on the same slot; adds a worker on a new slot and later stops it (SIGTERM); SIGKILLs
   the broker once and restarts it on the same state folder and ports; one fault at a time: the next
   waits until every partition has committed output again; throughout, the workers abort a share
   (``--abort-rate``) of their transactions at random through the test-only fault hook
   (``CLAIMS_FAULT_ABORT_RATE``, ``tests.chaos.faults``), so abort -> rewind -> redo runs under load;
3. stops the workers (SIGTERM) once every input is answered, and checks with read_committed readers:
   lost 0, duplicates 0, per-partition order kept, the dead letters are exactly the poison records,
   no open transaction left (last stable offset = high watermark on both output topics);
4. prints the figures: the stall after each kill (from the SIGKILL to the next committed output on the
   partitions the killed worker owned) with where the restarted worker's seconds went (from its json
   log lines), the stall after the worker removal (a static member's partitions wait for the session
   timeout), the stall after the broker kill, the injected aborts, and the run's claims/s.

Exit status 0 when every check holds, 1 otherwise. The whole run is bounded by ``--deadline`` seconds.

    python tests/chaos/run_chaos.py [--claims 100000] [--workers 2] [--kills 5] [--abort-rate 0.02] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from deploy.kafka import broker as local_broker
from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.codec import SINGLE_OBJECT_MARKER, Codec
from worker.kafka import topics as kafka_topics

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
SETTLE_S = 2.0  # output created this soon after a fault does not show the partitions moving again
OTHER_DRUG = "00093747489"


# ------------------------------------------------------------------------------------------- the broker
def kill_and_restart_broker(broker: local_broker.Broker, timeout_s: float = 180) -> local_broker.Broker:
    """SIGKILL the local broker and start it again on the same state folder, data and ports.

    ``deploy.kafka.broker.start_broker`` formats fresh storage on new ports, so it cannot restart a
    broker in place; this relaunches the JVM on the ``server.properties`` it wrote.
    """
    state = Path(broker.state_dir)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(broker.pid, signal.SIGKILL)
    while local_broker._alive(broker.pid):
        time.sleep(0.05)
    log4j, log_file = state / "log4j2.properties", Path(broker.log_file)
    jvm = [
        local_broker._java(),
        *local_broker.JVM_FLAGS,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={state / 'logs'}",
        "-cp",
        local_broker._classpath(local_broker.DEFAULT_LIBS),
    ]
    ready_before = log_file.read_text(errors="replace").count(local_broker.READY_LINE)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(state / "server.properties")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    restarted = local_broker.Broker(broker.bootstrap, proc.pid, broker.state_dir, broker.log_file)
    (state / "broker.json").write_text(json.dumps(restarted.__dict__))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"restarted broker exited with {proc.returncode}:\n{local_broker._tail(log_file)}"
            raise local_broker.BrokerError(msg)
        text = log_file.read_text(errors="replace")
        if text.count(local_broker.READY_LINE) > ready_before and local_broker._answers(broker.bootstrap):
            return restarted
        time.sleep(0.2)
    msg = f"restarted broker not ready after {timeout_s:.0f}s"
    raise local_broker.BrokerError(msg)


# ------------------------------------------------------------------------------------------- the inputs
def poison_values(rng: random.Random, codec: Codec, n: int) -> list[bytes]:
    """Malformed values of four kinds: random bytes, wrong fingerprint, truncated, invalid field."""
    good = codec.encode_claim(streams.claim(0))
    record = streams.claim(0).model_dump()
    out: list[bytes] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 200)))
        elif kind == 1:
            out.append(SINGLE_OBJECT_MARKER + rng.randbytes(8) + good[10:])
        elif kind == 2:
            out.append(good[: rng.randint(11, len(good) - 1)])
        else:  # fits the Avro schema, fails validation: an NPI with a wrong check digit
            bad = record | {
                "event_id": f"poison-evt-{i}",
                "prescriber": record["prescriber"] | {"npi": "1234567890"},
            }
            out.append(codec.encode_claim(bad))
    return out


@dataclass
class Plan:
    """The inputs: (key, value) in production order, and which keys are poison.

    ``rejected_keys`` are the poison claims that decode but fail validation (a bad NPI check digit):
    they name their claim id, so the worker answers them with a REJECTED result, not a dead letter.
    """

    records: list[tuple[bytes, bytes]]
    poison_keys: set[bytes]
    rejected_keys: set[bytes] = field(default_factory=set)


def make_plan(n_claims: int, poison_every: int, rng: random.Random) -> Plan:
    """``n_claims`` claims (1% Ixempra, 99% another drug) with a poison record every ``poison_every``."""
    codec = Codec()
    other = {"product_id": OTHER_DRUG, "qualifier": "03"}
    records: list[tuple[bytes, bytes]] = []
    poisons = poison_values(rng, codec, n_claims // poison_every + 1)
    poison_keys: set[bytes] = set()
    rejected_keys: set[bytes] = set()
    for i in range(n_claims):
        claim = streams.claim(i) if i % 100 == 0 else streams.claim(i, product=other)
        records.append((claim.claim_id.encode(), codec.encode_claim(claim)))
        if i % poison_every == poison_every - 1:
            key = f"poison-{i:07d}".encode()
            poison_keys.add(key)
            records.append((key, poisons[len(poison_keys) - 1]))
            if (len(poison_keys) - 1) % 4 == 3:  # the invalid-field kind of poison_values
                rejected_keys.add(key)
    return Plan(records, poison_keys, rejected_keys)


def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    rate: float | None,
    *,
    trickle_from: int | None = None,
    release: threading.Event | None = None,
    trickle_rate: float = 20.0,
) -> None:
    """Produce idempotently (a retry after the broker's kill must not duplicate an input).

    Records before ``trickle_from`` go at ``rate``/s (unpaced if None); the rest trickle at ``trickle_rate``/s
    until ``release`` is set, then go unpaced: so inputs keep arriving on every partition until the last fault.
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        delivery_timeout_ms=300_000,
        request_timeout_ms=30_000,
        # As the workers (worker.kafka.clients): with kafka-python's 30 s cap, the inputs resumed up to
        # ~13 s after the broker was back, and that wait was counted as the workers' broker-kill stall.
        reconnect_backoff_max_ms=1000,
    )
    start = time.monotonic()
    trickle_from = len(records) if trickle_from is None else trickle_from
    try:
        for i, (key, value) in enumerate(records):
            producer.send(topic, key=key, value=value)
            if i < trickle_from and rate:
                ahead = i / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            elif i >= trickle_from and release is not None and not release.is_set():
                release.wait(1 / trickle_rate)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=30)


# ------------------------------------------------------------------------------------------ the workers
@dataclass
class Worker:
    """One worker subprocess on a fixed slot; restarted on the same slot."""

    slot: int
    env: dict[str, str]
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    incarnation: int = 0

    def start(self) -> None:
        self.incarnation += 1
        self.log_path = self.logs / f"worker-{self.slot}-{self.incarnation}.log"
        env = self.env | {"CLAIMS_INSTANCE": str(self.slot)}
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.faulty_worker"],  # `run` with the abort hook
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def owned(self) -> set[int]:
        """The partitions this incarnation holds, from its partitions_* log lines."""
        owned: set[int] = set()
        if self.log_path is None:
            return owned
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "partitions_assigned":
                    owned |= set(event["partitions"])
                elif event.get("event") in {"partitions_revoked", "partitions_lost"}:
                    owned -= set(event["partitions"])
        return owned

    def events(self) -> list[dict[str, object]]:
        """This incarnation's json log lines."""
        if self.log_path is None:
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


# ------------------------------------------------------------------------------------------ the monitor
@dataclass
class Monitor:
    """A read_committed reader of both output topics: progress, and when each partition last moved."""

    bootstrap: str
    topics: tuple[str, str]
    partitions: int = PARTITIONS
    seen: int = 0
    arrivals: dict[int, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            reconnect_backoff_max_ms=1000,
        )
        consumer.assign([TopicPartition(t, p) for t in self.topics for p in range(self.partitions)])
        while not self.stop.is_set():
            try:
                polled = consumer.poll(timeout_ms=200)
            except Exception:  # noqa: BLE001 - the broker is being killed; keep reading
                time.sleep(0.2)
                continue
            now = time.time()
            for tp, records in polled.items():
                self.seen += len(records)
                # (arrival, output record's create time): a record written before a kill but read
                # after it must not count as the first output after the kill.
                self.arrivals[tp.partition].extend((now, r.timestamp / 1000) for r in records)
        consumer.close()

    def first_after(self, partition: int, since: float) -> float | None:
        """Arrival time of the first output on ``partition`` created after ``since``."""
        for arrival, created in self.arrivals.get(partition, ()):
            if created > since:
                return arrival
        return None


# ------------------------------------------------------------------------------------------ the checker
def end_offsets(bootstrap: str, topic: str, isolation: str) -> dict[int, int]:
    """High watermarks (read_uncommitted) or last stable offsets (read_committed) of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def check(  # noqa: PLR0912 - one branch per check
    bootstrap: str, names: dict[str, str], poison_keys: set[bytes], rejected_keys: set[bytes]
) -> tuple[dict[str, object], list[str]]:
    """Read everything back with read_committed and return (figures, failures)."""
    from worker.kafka.reads import read_topic  # noqa: PLC0415

    codec = Codec()
    inputs = {
        (r.partition, r.offset): r.key
        for r in read_topic(
            load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), names["claims"], timeout_s=120
        )
    }
    poison = {src for src, key in inputs.items() if key in poison_keys - rejected_keys}
    invalid = {src for src, key in inputs.items() if key in rejected_keys}
    rejected: set[tuple[int, int]] = set()
    answered: Counter[tuple[int, int]] = Counter()
    failures: list[str] = []
    order_breaks = 0
    misplaced = 0
    dlq_sources: set[tuple[int, int]] = set()
    dlq_classes: Counter[str] = Counter()
    for kind, topic in (("result", names["results"]), ("dead_letter", names["dead_letter"])):
        last: dict[int, int] = {}
        decode = codec.decode_result if kind == "result" else codec.decode_dead_letter
        for record in read_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), topic, timeout_s=120):
            out = decode(record.value)
            src = (out["source"]["partition"], out["source"]["offset"])
            answered[src] += 1
            misplaced += src[0] != record.partition
            if src[1] <= last.get(record.partition, -1):
                order_breaks += 1
            last[record.partition] = src[1]
            if kind == "result" and out["outcome"] == "REJECTED":
                rejected.add(src)
            if kind == "dead_letter":
                dlq_sources.add(src)
                dlq_classes[out["error_class"]] += 1
    lost = [src for src in inputs if src not in answered]
    duplicates = sum(n - 1 for n in answered.values() if n > 1)
    strays = [src for src in answered if src not in inputs]
    open_txn = {
        topic: (hw, lso)
        for topic in (names["results"], names["dead_letter"])
        if (hw := end_offsets(bootstrap, topic, "read_uncommitted"))
        != (lso := end_offsets(bootstrap, topic, "read_committed"))
    }
    figures = {
        "inputs": len(inputs),
        "poison inputs": len(poison) + len(invalid),
        "rejected (bad NPI)": len(rejected),
        "answered": sum(answered.values()),
        "lost": len(lost),
        "duplicates": duplicates,
        "order breaks": order_breaks,
        "misplaced partition": misplaced,
        "dead letters": sum(dlq_classes.values()),
        "dead-letter classes": dict(dlq_classes),
        "open transactions": len(open_txn),
    }
    if lost:
        failures.append(f"lost {len(lost)} inputs, e.g. {lost[:5]}")
    if duplicates:
        failures.append(f"{duplicates} duplicate outputs")
    if strays:
        failures.append(f"{len(strays)} outputs name no input")
    if order_breaks:
        failures.append(f"{order_breaks} outputs out of source order")
    if misplaced:
        failures.append(f"{misplaced} outputs on another partition than their input")
    if rejected != invalid:
        failures.append(
            f"REJECTED results are not the invalid claims: {len(rejected - invalid)} extra, "
            f"{len(invalid - rejected)} invalid claims without one"
        )
    if dlq_sources != poison:
        failures.append(
            f"dead letters are not the poison records: {len(dlq_sources - poison)} extra, "
            f"{len(poison - dlq_sources)} poison records without one"
        )
    if open_txn:
        failures.append(f"open transaction left (high watermark, last stable offset): {open_txn}")
    return figures, failures


# ------------------------------------------------------------------------------------ restart breakdown
# The marks of a restarted worker's start, in its json log (seconds after the SIGKILL): the first line
# (interpreter, imports, settings, policy, codec), the transactional producer ready (InitProducerId,
# which also aborts the killed process's open transaction), the group join (partitions_assigned), the
# duplicate filter read back for its partitions (state_restored), then the monitor's first output.
MARKS = ("first log line", "producer ready", "partitions assigned", "state restored", "first output")


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def restart_marks(
    events: list[dict[str, object]], owned: list[int], killed_at: float, first_output: float | None
) -> dict[str, float]:
    """Seconds from the SIGKILL to each of ``MARKS`` for one restarted incarnation (missing marks left out)."""
    marks: dict[str, float] = {}
    restored: dict[int, float] = {}
    # The partitions of its first assignment (another worker may have taken some of the killed one's).
    first = next((e for e in events if e.get("event") == "partitions_assigned"), {})
    assigned = first.get("partitions")
    targets = set(owned) & set(assigned) if isinstance(assigned, list) else set(owned)
    for event in events:
        name = event.get("event")
        if "timestamp" not in event:
            continue
        if "first log line" not in marks:
            marks["first log line"] = _at(event) - killed_at
        if name == "producer_ready" and "producer ready" not in marks:
            marks["producer ready"] = _at(event) - killed_at
        elif name == "partitions_assigned" and "partitions assigned" not in marks:
            marks["partitions assigned"] = _at(event) - killed_at
        elif name in {"state_restored", "state_restore_incomplete"}:
            partition = event.get("partition")
            if isinstance(partition, int) and partition in targets:
                restored.setdefault(partition, _at(event) - killed_at)
    if restored and set(restored) >= targets:
        marks["state restored"] = max(restored.values())
    if first_output is not None:
        marks["first output"] = first_output - killed_at
    return marks


def injected_aborts(logs: Path) -> tuple[int, int]:
    """(transactions the test-only fault hook aborted, transactions committed), over every worker log."""
    aborted = committed = 0
    for path in logs.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"transaction_aborting"' in line and '"InjectedAbort"' in line:
                aborted += 1
            elif '"batch_committed"' in line:
                committed += 1
    return aborted, committed


def group_events(logs: Path) -> Counter[str]:
    """How often the workers' group watch saw unowned partitions and healed the group, over every worker log."""
    seen: Counter[str] = Counter()
    for path in logs.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for event in ("partitions_unowned", "group_heal_requested", "group_heal_failed"):
                if f'"{event}"' in line:
                    seen[event] += 1
    return seen


def abort_expected(transactions: int, rate: float, miss: float = 0.001) -> bool:
    """Tell whether ``transactions`` at abort ``rate`` make "no abort at all" less likely than ``miss``.

    A short run (40k claims: a few dozen transactions) can pass a 2% rate without a single abort by
    chance (0.98^40 = 45%); failing it for that would be a false alarm. 2% needs 342 transactions.
    """
    return rate > 0 and transactions > 0 and (1 - rate) ** transactions < miss


# ---------------------------------------------------------------------------------------------- the run
def verdict(failures: list[str], passed: str) -> int:
    """Print the failures (exit status 1) or the ``passed`` line (exit status 0), and return the status."""
    if failures:
        print("\nFAILED:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print(f"\nPASSED: {passed}")
    return 0


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"deadline passed: {what}")


def main() -> int:  # noqa: PLR0912
    """Run the faults, check the outputs, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument(
        "--poison-every", type=int, default=500, help="one poison record per this many claims"
    )
    parser.add_argument("--rate", type=float, default=1_000.0, help="claims/s produced during the run")
    parser.add_argument("--deadline", type=float, default=1_500.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--abort-rate",
        type=float,
        default=0.02,
        help="share of the workers' transactions aborted at random by the test-only fault hook "
        "(CLAIMS_FAULT_ABORT_RATE); 0 turns it off",
    )
    parser.add_argument(
        "--transaction-timeout-ms",
        type=int,
        default=60_000,
        help="the workers' CLAIMS_TRANSACTION_TIMEOUT_MS (default: the worker's default); below the broker "
        "outage (~20 s here) the broker aborts a transaction left open across the outage (an epoch bump): "
        "the worker, its slot still its own, then starts a fresh producer instead of exiting 3",
    )
    args = parser.parse_args()
    # Stop cleanly (workers killed, broker stopped) on SIGTERM or SIGINT, even when started in the background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(
        f"chaos: seed {seed}, {args.claims:,} claims, {args.workers} workers, {args.kills} kills, "
        f"abort rate {args.abort_rate:g}",
        flush=True,
    )
    started = time.monotonic()
    hard_deadline = started + args.deadline
    plan = make_plan(args.claims, args.poison_every, rng)
    total = len(plan.records)
    state = ROOT / ".cache" / "kafka" / f"chaos-{os.getpid()}"
    logs = ROOT / ".cache" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    # Byte-compile the worker as an installed wheel would be: an editable install under
    # PYTHONDONTWRITEBYTECODE=1 compiles every module from source at each restart (~0.3-0.4 s).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "worker")], check=False)
    broker = local_broker.start_broker(state_dir=state)
    bootstrap = broker.bootstrap
    tag = uuid.uuid4().hex[:8]
    names = {
        "claims": f"chaos-{tag}.claims",
        "results": f"chaos-{tag}.results",
        "dead_letter": f"chaos-{tag}.dlq",
        "group": f"chaos-{tag}",
    }
    workers: dict[int, Worker] = {}
    monitor = Monitor(bootstrap, (names["results"], names["dead_letter"]))
    # (slot, partitions it held, SIGKILL time, the restarted incarnation)
    kill_stalls: list[tuple[int, list[int], float, Worker]] = []
    broker_stall: float | None = None
    # (partitions the removed worker held, its SIGTERM time)
    removal: tuple[list[int], float] | None = None
    events: list[str] = []

    def note(line: str) -> None:
        events.append(line)
        print(f"  {time.strftime('%H:%M:%S')} {line}", flush=True)

    failures: list[str] = []
    try:
        kafka_topics.create_topics(
            load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}),
            [names["claims"], names["results"], names["dead_letter"]],
            PARTITIONS,
        )
        head = int(total * 0.3)
        produce(bootstrap, names["claims"], plan.records[:head], None)
        # The last 8% trickle in until the last fault is done, so every fault has inputs to recover on.
        live = plan.records[head:]
        release = threading.Event()
        producer = threading.Thread(
            target=produce,
            args=(bootstrap, names["claims"], live, args.rate),
            kwargs={"trickle_from": int(len(live) - 0.08 * total), "release": release},
            daemon=True,
        )
        env = streams.worker_env(
            bootstrap,
            names,
            CLAIMS_LOG_FORMAT="json",
            CLAIMS_OUTAGE_LIMIT_S="600",
            CLAIMS_STARTUP_RETRIES="100",
            CLAIMS_TRANSACTION_TIMEOUT_MS=str(args.transaction_timeout_ms),
            CLAIMS_FAULT_ABORT_RATE=str(args.abort_rate),
        )
        for slot in range(args.workers):
            workers[slot] = Worker(slot, env, logs)
            workers[slot].start()
        threading.Thread(target=monitor.run, daemon=True).start()
        run_started = time.time()
        producer.start()

        # The schedule, by progress (share of inputs answered): kills at random points in [0.2, 0.85],
        # a worker added and later removed, the broker killed once, all in a random order.
        points = sorted(rng.uniform(0.2, 0.85) for _ in range(args.kills))
        schedule = [(p, "kill") for p in points]
        schedule += [(rng.uniform(0.25, 0.4), "add"), (rng.uniform(0.55, 0.7), "remove")]
        schedule += [(rng.uniform(0.4, 0.8), "broker")]
        schedule.sort()
        extra_slot = args.workers
        last_fault = 0.0
        for threshold, action in schedule:
            while monitor.seen < threshold * total:
                _check_deadline(hard_deadline, f"{monitor.seen}/{total} answered, waiting for {action}")
                for w in workers.values():
                    if w.proc is not None and w.proc.poll() is not None:
                        failures.append(f"worker {w.slot} exited on its own with {w.proc.returncode}")
                        w.start()
                time.sleep(0.1)
            # One fault at a time, as in Kafka's system test: wait until every partition has committed
            # output again since the last fault, so each stall is measured from a steady state. Output
            # created in the first SETTLE_S does not count: the batch a worker commits as a partition is
            # revoked from it (for a worker just added, or just removed) is not the partition moving again.
            while not all(monitor.first_after(p, last_fault + SETTLE_S) for p in range(PARTITIONS)):
                _check_deadline(hard_deadline, f"partitions not moving again after the fault before {action}")
                time.sleep(0.1)
            time.sleep(rng.uniform(0, 1.0))  # a random point inside the batch cycle
            progress = monitor.seen / total
            if action == "kill":
                # A random worker that holds partitions (a just-restarted one may not have them back yet).
                while not (holders := [w for w in workers.values() if w.owned()]):
                    _check_deadline(hard_deadline, "no worker holds partitions")
                    time.sleep(0.1)
                victim = rng.choice(holders)
                owned = sorted(victim.owned())
                killed_at = time.time()
                victim.kill()
                victim.start()
                # The restarted incarnation's log, read at the end (its own copy: the slot restarts again).
                restarted = Worker(victim.slot, env, logs, log_path=victim.log_path)
                kill_stalls.append((victim.slot, owned, killed_at, restarted))  # stall measured at the end
                last_fault = killed_at
                note(f"{progress:5.1%} SIGKILL worker {victim.slot} (partitions {owned}), restarted")
            elif action == "add":
                last_fault = time.time()  # a fault too: the next one waits for its rebalance to settle
                workers[extra_slot] = Worker(extra_slot, env, logs)
                workers[extra_slot].start()
                note(f"{progress:5.1%} added worker {extra_slot}")
            elif action == "remove":
                leaving = workers.pop(extra_slot)
                owned = sorted(leaving.owned())
                last_fault = time.time()
                code = leaving.stop()
                # A static member sends no LeaveGroup on SIGTERM (it may be a rolling restart), so its
                # partitions wait for the group's session timeout (45 s): a broker kill inside that wait
                # restarts the timer and was counted as the broker's stall (~60 s) before this waited.
                removal = (owned, last_fault)
                note(
                    f"{progress:5.1%} removed worker {extra_slot} (SIGTERM, exit {code}, partitions {owned})"
                )
            else:
                killed_at = time.time()
                broker = kill_and_restart_broker(broker)
                back = time.time()
                note(f"{progress:5.1%} SIGKILL broker, back after {back - killed_at:.1f}s")
                broker_stall = last_fault = killed_at  # measured at the end
        release.set()
        while monitor.seen < total:
            _check_deadline(hard_deadline, f"{monitor.seen}/{total} answered")
            time.sleep(0.2)
        run_s = time.time() - run_started
        producer.join(timeout=60)
        for w in workers.values():
            code = w.stop()
            if code != 0:
                failures.append(f"worker {w.slot} stopped with exit {code}")
        monitor.stop.set()
        figures, check_failures = check(bootstrap, names, plan.poison_keys, plan.rejected_keys)
        failures += check_failures
    except (TimeoutError, local_broker.BrokerError) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
        figures, run_s = {}, float("nan")
    finally:
        monitor.stop.set()
        for w in workers.values():
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        local_broker.stop_broker(state)

    stalls: list[float] = []
    print("\nevents (progress = share of inputs answered):")
    for line in events:
        print(f"  {line}")
    print("\nstall after each SIGKILL + immediate restart (kill -> next committed output on its partitions):")
    phases: dict[str, list[float]] = defaultdict(list)
    for slot, owned, killed_at, restarted in kill_stalls:
        if not owned:
            print(f"  worker {slot}: owned no partitions at the kill")
            continue
        firsts = [monitor.first_after(p, killed_at) for p in owned]
        if any(f is None for f in firsts):
            print(f"  worker {slot} partitions {owned}: no output after the kill")
            continue
        first = max(f for f in firsts if f is not None)
        stall = first - killed_at
        stalls.append(stall)
        marks = restart_marks(restarted.events(), owned, killed_at, first)
        for mark, at in marks.items():
            phases[mark].append(at)
        shown = ", ".join(f"{mark} {at:4.1f}" for mark, at in marks.items())
        print(f"  worker {slot} partitions {owned}: {stall:5.1f} s   (s after the kill: {shown})")
    if stalls:
        print(f"  median {statistics.median(stalls):.1f} s, longest {max(stalls):.1f} s")
        print(
            "  medians, s after the kill: "
            + ", ".join(f"{mark} {statistics.median(phases[mark]):.2f}" for mark in MARKS if phases[mark])
        )
    if removal is not None:
        # Every partition, not only those it held: a cooperative rebalance may have revoked some for it
        # that it never received before its SIGTERM.
        firsts = [monitor.first_after(p, removal[1] + SETTLE_S) for p in range(PARTITIONS)]
        if all(firsts):
            print(
                f"stall after removing a worker (SIGTERM -> output on every partition; a static member keeps "
                f"its place until the session timeout): {max(firsts) - removal[1]:.1f} s"  # type: ignore[type-var]
            )
    if broker_stall is not None:
        firsts = [monitor.first_after(p, broker_stall) for p in range(PARTITIONS)]
        if all(firsts):
            print(
                f"stall after the broker SIGKILL (kill -> output on every partition): {max(firsts) - broker_stall:.1f} s"
            )  # type: ignore[type-var]
    watched = group_events(logs)
    print(
        f"group watch: unowned partitions confirmed {watched['partitions_unowned']} time(s), heals requested "
        f"{watched['group_heal_requested']}, failed {watched['group_heal_failed']}"
    )
    aborts, committed = injected_aborts(logs)
    print(
        f"transactions aborted by the fault hook: {aborts} of {aborts + committed} (rate {args.abort_rate:g})"
    )
    if args.abort_rate > 0 and figures and aborts == 0:
        if abort_expected(aborts + committed, args.abort_rate):
            failures.append(
                "the fault hook aborted no transaction: the abort -> rewind -> redo path did not run"
            )
        else:
            print("  (too few transactions to expect an abort at this rate: the abort path is not checked)")
    print(f"\nrun: {total:,} inputs answered in {run_s:.0f} s ({total / run_s:,.0f}/s with the faults)")
    for key, value in figures.items():
        print(f"  {key:<20} {value}")
    print(f"logs: {logs}")
    print(f"seed: {seed}  (python tests/chaos/run_chaos.py --seed {seed} repeats the schedule)")
    return verdict(
        failures,
        "lost 0, duplicates 0, order kept, dead letters = undecodable poison, REJECTED = invalid claims, no open transaction",
    )


if __name__ == "__main__":
    raise SystemExit(main())
