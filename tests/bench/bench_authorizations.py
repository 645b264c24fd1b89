"""Authorization store figures: restore time and RSS for N authorizations; end-to-end claims/s, store on vs off.

Starts (or uses $KAFKA_BOOTSTRAP_SERVERS) a real broker, writes N authorization records to a fresh
compacted store topic, then, in a fresh child process, catches the store up from the topic the way a
starting worker does and reports the wall time and the child's RSS before and after, and the RSS curve:
bytes per authorization over the child's baseline as the table passes 100,000, 250,000 and 500,000
authorizations and after the catch-up. Also reports the on-file lookup cost per claim.

Then, on the same broker, end to end: each round produces the same M claims to two fresh claims
topics and drains one with the worker as the CLI builds it with the store off and the other with the
store on (the order alternates between rounds). With the store on, a table of ``--table`` unrelated
authorizations plus one authorization for every other claim's member is on file: half of the claims
are paid on file, the other half are approved afresh and each writes its new authorization in its
batch's transaction. The clock starts at the first batch (the store's catch-up at start is not
counted). Prints the medians over the rounds and the on/off ratio. Figures only: nothing asserts a time.

    .venv/bin/python tests/bench/bench_authorizations.py [--count 1000000] [--partitions 2]
        [--e2e-claims 20000] [--rounds 3] [--table 100000] [--skip-restore] [--skip-e2e] [--worker-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from deploy.kafka import broker as local_broker  # noqa: E402
from worker.config.settings import load_settings  # noqa: E402
from worker.directory.updates import ensure_topic  # noqa: E402
from worker.kafka.clients import Role, new_producer  # noqa: E402
from worker.policy import default_policy  # noqa: E402
from worker.state.authorization import Authorization, encode_authorization, member_pseudonym  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from worker.config.settings import Settings
    from worker.contracts.model import Claim

_E2E_SECRET = "bench-secret-0123456789"  # noqa: S105 - a bench key, not a credential
_CURVE = (100_000, 250_000, 500_000)  # RSS noted as the catch-up passes these (and after it, at --count)

_CHILD = r"""
import json, sys, time
from datetime import UTC, datetime
from worker.config.settings import load_settings
from worker.state.authorizations import Authorizations
from tests.unit.claims import make_claim
from worker.policy import decide, default_policy
from worker.policy.facts import Facts

def rss_kib(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0

bootstrap, topic = sys.argv[1], sys.argv[2]
points = sorted(int(n) for n in sys.argv[3].split(",") if n)
settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CLAIMS_AUTHORIZATIONS_TOPIC": topic,
                          "CLAIMS_MEMBER_PSEUDONYM_SECRET": "bench-secret-0123456789",
                          "CLAIMS_AUTHORIZATIONS_CATCH_UP_TIMEOUT_S": "3600"})
before = rss_kib()
store = Authorizations.connect(settings)
curve = []

class Probe(type(store.table)):
    # The worker's table, noting the RSS as it reaches each point (one poll's records in flight then).

    def apply(self, auth):
        super().apply(auth)
        if points and len(self) >= points[0]:
            curve.append((points.pop(0), rss_kib() / 1024))

store.table = Probe()
started = time.perf_counter()
store.catch_up()
elapsed = time.perf_counter() - started
after = rss_kib()
policy, now = default_policy(), datetime.now(UTC)
claims = [make_claim(claim_id=f"c{i}", patient={"member_id": f"M{i:09d}", "last_name": "X",
          "date_of_birth": "1970-01-01"}, dx=()) for i in range(2000)]
t = time.perf_counter()
for c in claims:
    store.decide(c, Facts(), policy, now, lambda c=c: decide(c, Facts(), policy, now))
lookup = (time.perf_counter() - t) / len(claims)
store.close()
print(json.dumps({"records": len(store.table), "catch_up_s": elapsed, "rss_before_mib": before / 1024,
                  "rss_after_mib": after / 1024, "rss_peak_mib": rss_kib("VmHWM:") / 1024,
                  "decide_with_store_us": lookup * 1e6, "curve": curve}))
"""


def _records(count: int) -> object:
    """Yield ``count`` synthetic authorization records (pseudonyms are random hex, no identities)."""
    start = date(2025, 1, 1)
    decided = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(count):
        effective = start + timedelta(days=i % 365)
        yield encode_authorization(
            Authorization(
                number=f"{i:011d}",
                member=uuid.UUID(int=i).hex * 2,
                policy_id="IXEMPRA-PA",
                policy_version="2020.09-2",
                product="70020191001",
                effective=effective,
                expiration=effective + timedelta(days=364),
                source_kind="claim",
                source_id=f"bench-claim-{i}",
                decided_at=decided,
            )
        )


def _write(settings: Settings, topic: str, records: Iterable[tuple[bytes, bytes]], partitions: int) -> float:
    """Write store records (partitioned as the worker partitions them); return the seconds taken."""
    producer = new_producer(settings, Role.SEEDER, acks=1, linger_ms=50, batch_size=512 * 1024)
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value, partition=int(key) % partitions)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def _on_file(claims: list[Claim], secret: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield an authorization holding the date of service for the member of every other claim."""
    policy = default_policy()
    decided = datetime(2026, 10, 1, tzinfo=UTC)
    for i, claim in enumerate(claims[::2]):
        yield encode_authorization(
            Authorization(
                number=f"9{i:010d}",
                member=member_pseudonym(secret, claim.patient),
                policy_id=policy.policy_id,
                policy_version=policy.version,
                product="70020191001",
                effective=claim.date_of_service - timedelta(days=30),
                expiration=claim.date_of_service + timedelta(days=334),
                source_kind="claim",
                source_id=f"bench-first-fill-{i}",
                decided_at=decided,
            )
        )


def _e2e(bootstrap: str, args: argparse.Namespace) -> None:
    """Claims/s end to end with the store off and on: the same records, the same broker, medians of rounds."""
    from tests.bench.bench_pipeline import _drain, _prepare  # noqa: PLC0415 - the same drain as make bench
    from tests.integration import streams  # noqa: PLC0415
    from worker.contracts.codec import Codec  # noqa: PLC0415

    count, rounds = args.e2e_claims, args.rounds
    claims = [streams.claim(i) for i in range(count * rounds)]  # each round: its own members
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    store = f"bench-e2e-authorizations-{uuid.uuid4().hex[:6]}"
    ensure_topic(settings, store, args.partitions)
    written = _write(settings, store, _records(args.table), args.partitions)
    written += _write(settings, store, _on_file(claims, _E2E_SECRET.encode()), args.partitions)
    print(
        f"store for the end-to-end runs: {args.table:,} unrelated + {len(claims[::2]):,} on file "
        f"for the claims' members, written in {written:.1f} s",
        flush=True,
    )
    codec = Codec()
    with_store = {
        "authorizations_topic": store,
        "member_pseudonym_secret": SecretStr(_E2E_SECRET),
        "authorizations_catch_up_timeout_s": 3600.0,
    }
    # Warm-up, discarded (members of their own, none on file): the first drains on a fresh broker are slow.
    warm = streams.encoded([streams.claim(count * rounds + i) for i in range(2_000)], codec)
    _drain("worker", _prepare(bootstrap, args.batch, warm), len(warm), None)
    _drain("worker", _prepare(bootstrap, args.batch, warm).model_copy(update=with_store), len(warm), None)
    off_rates, on_rates, ratios, on_file = [], [], [], []
    for n in range(rounds):
        values = streams.encoded(claims[n * count : (n + 1) * count], codec)
        off = _prepare(bootstrap, args.batch, values)
        on = _prepare(bootstrap, args.batch, values).model_copy(update=with_store)
        if n % 2:  # alternate which goes first, so neither always gets the warmer broker
            rate_on = _drain("worker", on, count, None)
            rate_off = _drain("worker", off, count, None)
        else:
            rate_off = _drain("worker", off, count, None)
            rate_on = _drain("worker", on, count, None)
        results = streams.read_all(bootstrap, on.results_topic, codec, "result")
        on_file.append(sum(r["decision_source"] == "ON_FILE" for r in results))
        off_rates.append(rate_off)
        on_rates.append(rate_on)
        ratios.append(rate_on / rate_off)
        print(
            f"round {n + 1}: store off {rate_off:,.0f} claims/s, store on {rate_on:,.0f} claims/s, "
            f"ratio on/off {rate_on / rate_off:.2f} (store on: {on_file[-1]:,} of {count:,} paid on file)",
            flush=True,
        )
    print(
        f"end to end, {count:,} claims x {rounds} rounds, batch {args.batch}, one partition, one process:\n"
        f"  store off  median {statistics.median(off_rates):>9,.0f} claims/s\n"
        f"  store on   median {statistics.median(on_rates):>9,.0f} claims/s "
        f"(half paid on file, half approved afresh and written to the store)\n"
        f"  ratio on/off: median {statistics.median(ratios):.2f} "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


def main() -> int:
    """Write N authorizations, time a worker-style catch-up in a child process, then claims/s on vs off."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--e2e-claims", type=int, default=20_000, help="claims per end-to-end drain")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds (medians)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--table", type=int, default=100_000, help="unrelated authorizations on file (e2e)")
    parser.add_argument("--skip-restore", action="store_true", help="only the end-to-end figures")
    parser.add_argument("--skip-e2e", action="store_true", help="only the restore figures")
    parser.add_argument(
        "--worker-baseline",
        action="store_true",
        help="first: peak RSS of `claims-worker run` (store on, empty) draining the sample claims",
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"bench-auth-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    try:
        if args.worker_baseline:
            _worker_baseline(bootstrap)
        if not args.skip_restore:
            _restore(bootstrap, args)
        if not args.skip_e2e:
            _e2e(bootstrap, args)
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    return 0


_PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _worker_baseline(bootstrap: str) -> None:
    """Print the peak RSS of a real ``claims-worker run`` with the store on but empty (the sizing baseline)."""
    run = uuid.uuid4().hex[:6]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLAIMS_CLAIMS_TOPIC": f"baseline-{run}.claims",
        "CLAIMS_RESULTS_TOPIC": f"baseline-{run}.results",
        "CLAIMS_DEAD_LETTER_TOPIC": f"baseline-{run}.dead-letter",
        "CLAIMS_GROUP_ID": f"baseline-{run}",
        "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"baseline-{run}",
        "CLAIMS_AUTHORIZATIONS_TOPIC": f"baseline-{run}.authorizations",
        "CLAIMS_MEMBER_PSEUDONYM_SECRET": _E2E_SECRET,
        "CLAIMS_METRICS_PORT": "0",
        "CLAIMS_EXIT_WHEN_IDLE_S": "5",
        "CLAIMS_LOG_FORMAT": "json",
    }
    cli = [sys.executable, "-m", "worker"]
    for step in (
        ["create-topics", "--partitions", "2", "--replication-factor", "1", "--min-insync-replicas", "1"],
        ["authorizations", "create-topic"],
        ["seed-samples"],
    ):
        subprocess.run([*cli, *step], env=env, check=True, capture_output=True, cwd=ROOT)
    peak = subprocess.run(
        [sys.executable, "-c", _PEAK, *cli, "run"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    peak_mib = int(peak.stdout.strip().splitlines()[-1]) / 1024
    print(
        f"worker baseline: peak RSS of `claims-worker run`, store on and empty: {peak_mib:.0f} MiB",
        flush=True,
    )


def _restore(bootstrap: str, args: argparse.Namespace) -> None:
    """Write ``--count`` authorizations, then time a worker-style catch-up in a child process."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    topic = f"bench-authorizations-{uuid.uuid4().hex[:6]}"
    ensure_topic(settings, topic, args.partitions)
    written_s = _write(settings, topic, _records(args.count), args.partitions)
    points = ",".join(str(n) for n in _CURVE if n < args.count)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, bootstrap, topic, points],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures["write_s"] = written_s
    print(
        f"authorization store, {figures['records']:,} records on {args.partitions} partitions:\n"
        f"  write (one producer, acks=1)       : {written_s:.1f} s\n"
        f"  catch-up (restore at start):       {figures['catch_up_s']:.1f} s "
        f"({figures['records'] / max(figures['catch_up_s'], 1e-9):,.0f} records/s)\n"
        f"  RSS before / after catch-up:       {figures['rss_before_mib']:.0f} MiB / "
        f"{figures['rss_after_mib']:.0f} MiB (peak {figures['rss_peak_mib']:.0f} MiB)\n"
        f"  RSS per authorization (after - before) / records: "
        f"{(figures['rss_after_mib'] - figures['rss_before_mib']) * 2**20 / max(figures['records'], 1):.0f} bytes\n"
        f"  decide with the store (no match):  {figures['decide_with_store_us']:.1f} us per claim",
        flush=True,
    )
    _print_curve(figures)


def _print_curve(figures: dict[str, Any]) -> None:
    """Print RSS over the child's baseline per authorization as the table grows, then after the catch-up."""
    before = figures["rss_before_mib"]
    points = [*figures["curve"], (figures["records"], figures["rss_after_mib"])]
    print(f"  RSS curve (baseline: the child before connecting, {before:.0f} MiB):")
    for n, (records, rss) in enumerate(points):
        when = "after the catch-up" if n == len(points) - 1 else "during the catch-up"
        print(
            f"    {records:>9,} authorizations: {rss:6.0f} MiB, "
            f"{(rss - before) * 2**20 / max(records, 1):5.0f} bytes per authorization over the baseline "
            f"({when})",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
