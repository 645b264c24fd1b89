"""Authorization store figures: restore (catch-up) time and resident memory for N authorizations on file.

Starts (or uses $KAFKA_BOOTSTRAP_SERVERS) a real broker, writes N authorization records to a fresh
compacted store topic, then, in a fresh child process, catches the store up from the topic the way a
starting worker does and reports the wall time and the child's RSS before and after. Also reports the
on-file lookup cost per claim. Figures only: nothing here asserts a time.

    .venv/bin/python tests/bench/bench_authorizations.py [--count 1000000] [--partitions 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from worker.config.settings import load_settings  # noqa: E402
from worker.devtools import broker as local_broker  # noqa: E402
from worker.directory.updates import ensure_topic  # noqa: E402
from worker.runtime.clients import Role, new_producer  # noqa: E402
from worker.state.authorizations import Authorization, encode_authorization  # noqa: E402

_CHILD = r"""
import json, sys, time
from datetime import UTC, datetime
from worker.config.settings import load_settings
from worker.state.authorizations import Authorizations
from tests.unit.claims import make_claim
from worker.policy import decide, default_policy
from worker.policy.facts import Facts

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

bootstrap, topic = sys.argv[1], sys.argv[2]
settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CLAIMS_AUTHORIZATIONS_TOPIC": topic,
                          "CLAIMS_MEMBER_PSEUDONYM_SECRET": "bench-secret-0123456789",
                          "CLAIMS_AUTHORIZATIONS_CATCH_UP_TIMEOUT_S": "3600"})
before = rss_kib()
store = Authorizations.connect(settings)
started = time.perf_counter()
store.catch_up()
elapsed = time.perf_counter() - started
after = rss_kib()
policy, now = default_policy(), datetime.now(UTC)
claims = [make_claim(claim_id=f"c{i}", patient={"member_id": f"M{i:09d}", "last_name": "X",
          "date_of_birth": "1970-01-01"}, dx=()) for i in range(2000)]
t = time.perf_counter()
for c in claims:
    store.decide(c, policy, now, lambda c=c: decide(c, Facts(), policy, now))
lookup = (time.perf_counter() - t) / len(claims)
store.close()
print(json.dumps({"records": len(store.table), "catch_up_s": elapsed, "rss_before_mib": before / 1024,
                  "rss_after_mib": after / 1024, "decide_with_store_us": lookup * 1e6}))
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


def main() -> int:
    """Write N authorizations, then time a worker-style catch-up in a child process and print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=2)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    state = None
    if not bootstrap:
        state = Path(local_broker.ROOT, ".cache", "kafka", f"bench-auth-{os.getpid()}")
        bootstrap = local_broker.start_broker(state_dir=state).bootstrap
    try:
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        topic = f"bench-authorizations-{uuid.uuid4().hex[:6]}"
        ensure_topic(settings, topic, args.partitions)
        producer = new_producer(settings, Role.SEEDER, acks=1, linger_ms=50, batch_size=512 * 1024)
        started = time.perf_counter()
        for key, value in _records(args.count):
            producer.send(topic, key=key, value=value, partition=int(key) % args.partitions)
        producer.flush()
        producer.close()
        written_s = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, bootstrap, topic],
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
            f"{figures['rss_after_mib']:.0f} MiB\n"
            f"  decide with the store (no match):  {figures['decide_with_store_us']:.1f} us per claim"
        )
    finally:
        if state is not None:
            local_broker.stop_broker(state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
