"""Bad-input campaign (``make chaos-input``, also run by ``make chaos``): malformed records of every probed kind
mixed with valid claims on a 3-partition topic, answered by two ``claims-worker run`` processes.

On its own local broker (or ``--bootstrap``) it:

1. creates a 3-partition claims topic and its results and dead-letter topics, and produces ``--malformed``
   malformed inputs (tests/chaos/bad_inputs.py: truncations, wrong fingerprints, unknown Confluent ids,
   wrong types, invalid fields, control characters and bidi in ids and text, oversized fields, nulls
   where required, many and large headers, empty and null values, non-UTF-8 keys) among ``--valid``
   valid claims, each with a marker header naming its index;
2. runs two ``python -m worker run`` processes (instance slots 0 and 1, one group) until every input is
   answered, sampling each one's VmRSS and VmHWM from /proc/<pid>/status, then stops them (SIGTERM);
3. checks with read_committed reads: every input has exactly one answer, the answer its kind must get
   (a result with the claim's id for an identifiable claim, else a dead letter), every dead letter keeps
   the original key, value and headers byte for byte (a TOO_LARGE one names its source instead, as
   route.too_large documents), no worker log line holds "Traceback", each worker exits 0, its peak RSS
   (VmHWM) stays under ``--rss-limit-mib`` and its RSS at the end is at most ``--rss-growth-mib`` above
   its RSS after warm-up (a quarter of the inputs answered);
4. prints the figures: inputs/s, inputs by kind and by answer, dead letters by error class, RSS.

Exit status 0 when every check holds, 1 otherwise.

    python tests/chaos/bad_input_campaign.py [--malformed 10000] [--valid 10000] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kafka import KafkaProducer

from deploy.kafka import broker as local_broker
from tests.chaos.bad_inputs import MARKER_HEADER, Expect, Input, make_inputs
from tests.chaos.run_chaos import Monitor, verdict
from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.kafka import topics as kafka_topics
from worker.kafka.reads import read_topic

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
WORKERS = 2
MIB = 1024 * 1024


def produce(bootstrap: str, topic: str, inputs: list[Input]) -> None:
    """Produce every input idempotently, with its headers, and wait until all are acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, batch_size=256 * 1024
    )
    try:
        for item in inputs:
            producer.send(topic, key=item.key, value=item.value, headers=item.headers)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=30)


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB ({} once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in {"VmRSS", "VmHWM"}
    }


class RssSampler:
    """Samples each worker's VmRSS/VmHWM twice a second; remembers the RSS at warm-up and the last sample."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak: dict[int, int] = defaultdict(int)
        self.last: dict[int, int] = {}
        self.warm: dict[int, int] = {}
        self.stop = threading.Event()

    def sample(self) -> None:
        for pid in self.pids:
            status = rss_kib(pid)
            if status:
                self.peak[pid] = max(self.peak[pid], status["VmHWM"], status["VmRSS"])
                self.last[pid] = status["VmRSS"]

    def mark_warm(self) -> None:
        self.sample()
        self.warm = dict(self.last)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()


def judge(item: Input, got: list[tuple[str, dict]]) -> tuple[str, str | None]:  # noqa: PLR0911 - one per rule
    """Return (the answer's label, the violation or None) for one input and the answers naming it."""
    if len(got) != 1:
        return ("none" if not got else "several"), ("unanswered" if not got else "answered more than once")
    kind, out = got[0]
    if kind == "dead_letter":
        headers = [(h["key"], h["value"]) for h in out["original_headers"]]
        label = f"dead letter {out['error_class']}"
        if item.expect in {Expect.RESULT, Expect.REJECTED}:
            return label, f"dead letter for an input that must get a {item.expect}"
        if out["error_class"] == "TOO_LARGE":
            ok = item.expect is Expect.ANSWER and out["original_value"] is None
            return label, None if ok else "unexpected TOO_LARGE dead letter"
        kept = (out["original_key"], out["original_value"], headers) == (item.key, item.value, item.headers)
        return label, None if kept else "dead letter does not keep the original bytes"
    label = f"result {out['outcome']}"
    rejected = out["outcome"] == "REJECTED"
    if item.expect is Expect.DEAD:
        return label, "result for an input that must be a dead letter"
    if item.expect is Expect.REJECTED and not (rejected and out["reject_codes"]):
        return label, "no REJECTED result with reject codes"
    if item.expect is Expect.RESULT and rejected:
        return label, "a claim that must be judged was REJECTED"
    if item.claim_id is not None and out["claim_id"] != item.claim_id:
        return label, "result names another claim id"
    return label, None


def read_answers(bootstrap: str, names: dict[str, str]) -> dict[tuple[int, int], list[tuple[str, dict]]]:
    """Every committed result and dead letter, by the source coordinates it names."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    codec = Codec()
    answers: dict[tuple[int, int], list[tuple[str, dict]]] = defaultdict(list)
    for kind, topic in (("result", names["results"]), ("dead_letter", names["dead_letter"])):
        decode = codec.decode_result if kind == "result" else codec.decode_dead_letter
        for record in read_topic(settings, topic, timeout_s=300):
            out = decode(record.value)
            answers[(out["source"]["partition"], out["source"]["offset"])].append((kind, out))
    return answers


def check(bootstrap: str, names: dict[str, str], inputs: list[Input]) -> tuple[dict[str, object], list[str]]:
    """Read inputs and answers back with read_committed; return (figures, failures)."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    by_source: dict[tuple[int, int], Input] = {}
    unmarked = 0
    for record in read_topic(settings, names["claims"], timeout_s=300):
        marker = dict(record.headers or ()).get(MARKER_HEADER)
        if marker is None:
            unmarked += 1
        else:
            by_source[(record.partition, record.offset)] = inputs[int(marker)]
    failures: list[str] = []
    if len(by_source) != len(inputs) or unmarked:
        failures.append(f"read back {len(by_source)} marked inputs of {len(inputs)}, {unmarked} unmarked")
    answers = read_answers(bootstrap, names)
    by_answer: dict[str, Counter[str]] = defaultdict(Counter)
    wrong: Counter[str] = Counter()
    examples: list[str] = []
    for src, item in by_source.items():
        label, violation = judge(item, answers.get(src, []))
        by_answer[item.kind][label] += 1
        if violation is not None:
            wrong[violation] += 1
            if len(examples) < 10:
                examples.append(f"{violation}: {item.kind} at {src}")
    strays = sum(len(v) for src, v in answers.items() if src not in by_source)
    if strays:
        failures.append(f"{strays} answers name no input")
    failures += [f"{n} x {what}" for what, n in wrong.items()]
    if examples:
        failures.append("e.g. " + "; ".join(examples))
    classes = Counter(out["error_class"] for v in answers.values() for k, out in v if k == "dead_letter")
    figures = {
        "inputs": len(by_source),
        "answers": sum(len(v) for v in answers.values()),
        "results": sum(1 for v in answers.values() for k, _ in v if k == "result"),
        "dead letters": sum(classes.values()),
        "dead letters by class": dict(sorted(classes.items())),
        "by kind and answer": {k: dict(sorted(v.items())) for k, v in sorted(by_answer.items())},
    }
    return figures, failures


def run_workers(
    bootstrap: str, names: dict[str, str], total: int, logs: Path, deadline_s: float
) -> tuple[float, RssSampler, list[str]]:
    """Run the workers until ``total`` answers are committed; stop them; return (seconds, RSS, failures)."""
    env = streams.worker_env(bootstrap, names, CLAIMS_TRANSACTION_TIMEOUT_MS="60000")
    started = time.monotonic()
    procs = [
        streams.start_worker(env | {"CLAIMS_INSTANCE": str(slot)}, logs / f"worker-{slot}.log")
        for slot in range(WORKERS)
    ]
    sampler = RssSampler([p.pid for p in procs])
    answers = Monitor(bootstrap, (names["results"], names["dead_letter"]), partitions=PARTITIONS)
    threading.Thread(target=sampler.run, daemon=True).start()
    threading.Thread(target=answers.run, daemon=True).start()
    failures: list[str] = []
    try:
        while answers.seen < total and not failures:
            if time.monotonic() - started > deadline_s:
                failures.append(f"deadline: {answers.seen}/{total} answered")
            if exited := [p.returncode for p in procs if p.poll() is not None]:
                failures.append(f"a worker exited on its own with {exited}")
            if not sampler.warm and answers.seen >= total / 4:
                sampler.mark_warm()
            time.sleep(0.2)
        run_s = time.monotonic() - started
        sampler.sample()
        sampler.stop.set()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for slot, proc in enumerate(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
            if proc.returncode != 0:
                failures.append(f"worker {slot} stopped with exit {proc.returncode}")
    finally:
        answers.stop.set()
        sampler.stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failures.extend(
        f"worker {slot}'s log holds a Traceback"
        for slot in range(WORKERS)
        if "Traceback" in (logs / f"worker-{slot}.log").read_text(errors="replace")
    )
    return run_s, sampler, failures


def rss_report(sampler: RssSampler, limit_mib: float, growth_mib: float) -> list[str]:
    """Print each worker's RSS after warm-up, at the end and its peak; return the bounds it breaks."""
    failures: list[str] = []
    print(
        f"  RSS (MiB)              warm-up -> end (bound +{growth_mib:.0f}), peak VmHWM (bound {limit_mib:.0f})"
    )
    for slot, pid in enumerate(sampler.pids):
        warm, end = sampler.warm.get(pid, 0) / 1024, sampler.last.get(pid, 0) / 1024
        peak = sampler.peak[pid] / 1024
        print(f"    worker {slot}             {warm:.0f} -> {end:.0f}, peak {peak:.0f}")
        if peak > limit_mib:
            failures.append(f"worker {slot} peak RSS {peak:.0f} MiB > {limit_mib:.0f} MiB")
        if not sampler.warm or end - warm > growth_mib:
            failures.append(
                f"worker {slot} RSS grew {end - warm:.0f} MiB after warm-up (bound {growth_mib:.0f})"
            )
    return failures


def print_figures(figures: dict[str, object]) -> None:
    """The check's figures, the by-kind table one kind a line."""
    for key, value in figures.items():
        if key == "by kind and answer" and isinstance(value, dict):
            print(f"  {key}:")
            for kind, got in value.items():
                print(f"    {kind:<22} {', '.join(f'{a} {n}' for a, n in got.items())}")
        else:
            print(f"  {key:<22} {value}")


def main() -> int:
    """Produce the inputs, run the workers, check the answers, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--malformed", type=int, default=10_000)
    parser.add_argument("--valid", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    parser.add_argument("--rss-limit-mib", type=float, default=256.0, help="bound on each worker's VmHWM")
    parser.add_argument(
        "--rss-growth-mib", type=float, default=32.0, help="bound on RSS growth from warm-up to the end"
    )
    parser.add_argument("--deadline", type=float, default=1_200.0, help="give up after this many seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"bad-input campaign: seed {seed}, {args.malformed:,} malformed + {args.valid:,} valid", flush=True)
    inputs = make_inputs(args.malformed, args.valid, random.Random(seed))
    logs = ROOT / ".cache" / "chaos-input" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    state = ROOT / ".cache" / "kafka" / f"chaos-input-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    names = {k: f"campaign-{tag}.{k}" for k in ("claims", "results", "dead_letter")}
    names["group"] = f"campaign-{tag}"
    figures: dict[str, object] = {}
    try:
        bootstrap = args.bootstrap or local_broker.start_broker(state_dir=state).bootstrap
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        topics = [names["claims"], names["results"], names["dead_letter"]]
        kafka_topics.create_topics(settings, topics, PARTITIONS)
        produce(bootstrap, names["claims"], inputs)
        print(f"  produced {len(inputs):,} inputs on {PARTITIONS} partitions", flush=True)
        run_s, sampler, failures = run_workers(bootstrap, names, len(inputs), logs, args.deadline)
        if not failures:
            figures, check_failures = check(bootstrap, names, inputs)
            failures += check_failures
    except local_broker.BrokerError as exc:
        run_s, sampler, failures = float("nan"), RssSampler([]), [f"broker: {exc}"]
    finally:
        if args.bootstrap is None:
            local_broker.stop_broker(state)
    print(
        f"\nrun: {len(inputs):,} inputs answered in {run_s:.1f} s ({len(inputs) / run_s:,.0f}/s, {WORKERS} workers)"
    )
    print_figures(figures)
    failures += rss_report(sampler, args.rss_limit_mib, args.rss_growth_mib)
    print(f"logs: {logs}\nseed: {seed}  (--seed {seed} repeats the inputs)")
    return verdict(
        failures,
        "one answer per input, the expected one; dead letters keep the original bytes; "
        "no Traceback; both workers exit 0; RSS bounded",
    )


if __name__ == "__main__":
    raise SystemExit(main())
