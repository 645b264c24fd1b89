"""Bad-input campaign: thousands of malformed records mixed into valid traffic, against one worker process.

Every record must be answered exactly once (a result, or a dead letter that names its class and reason), the
valid claims must all get results, and the worker must never crash or restart: one process that stops with
exit 0 once the topic is drained and idle.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from tests.integration import streams
from tests.integration.malformed import malformed
from worker.contracts.codec import Codec
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MALFORMED = 10_000
VALID = 2_000
SEED = 20261130


def test_malformed_flood_is_answered_record_by_record_without_a_restart(kafka_bootstrap, topics, tmp_path):
    """10k malformed records among 2k valid: records in = results + dead letters, one process, exit 0."""
    rng = random.Random(SEED)
    codec = Codec()
    bad = malformed(MALFORMED, codec, rng)
    valid = [(f"valid-{i}".encode(), codec.encode_claim(streams.claim(i))) for i in range(VALID)]
    records = [(f"bad-{kind}-{i}".encode(), value) for i, (kind, value) in enumerate(bad)] + valid
    rng.shuffle(records)
    streams.produce(kafka_bootstrap, topics["claims"], records)

    log = tmp_path / "worker.log"
    proc = streams.start_worker(streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="3"), log)
    try:
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line).get("event") for line in streams.iter_log(log) if line.startswith("{")]
    assert code == ExitCode.OK, log.read_text()[-3000:]
    assert events.count("starting") == 1

    out = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    sources = out.sources()
    assert len(sources) == len(records), "records in must equal results + dead letters"
    assert len(set(sources)) == len(sources), "no record is answered twice"
    for letter in out.dead_letters:
        assert letter["error_class"]
        assert letter["reason"].strip()
    dead_keys = {letter["original_key"] for letter in out.dead_letters}
    # A decodable claim with a readable claim id and a broken field is answered: a REJECTED result with
    # NCPDP M/I reject codes. Every other malformed record is dead-lettered, except bit flips, which
    # may still decode to a valid claim.
    answered = {key for key, _ in records if key.startswith(b"bad-invalid-field")}
    rejected = {r["claim_id"]: r for r in out.results if r["outcome"] == "REJECTED"}
    expected_ids = {f"bad-{int(key.rsplit(b'-', 1)[1]):06d}" for key in answered}
    assert expected_ids <= set(rejected), (
        f"{len(expected_ids - set(rejected))} invalid claims got no REJECTED"
    )
    assert all(rejected[claim_id]["reject_codes"] for claim_id in expected_ids)
    must_die = {
        key
        for key, _ in records
        if key.startswith(b"bad-") and not key.startswith((b"bad-bit-flip", b"bad-invalid-field"))
    }
    assert must_die <= dead_keys, f"{len(must_die - dead_keys)} malformed records were not dead-lettered"
    assert not any(key.startswith(b"valid-") for key in dead_keys), "a valid claim was dead-lettered"
    assert len(out.results) >= VALID
    print(
        f"\nbad-input campaign: {len(records):,} records in, {len(out.results):,} results, "
        f"{len(out.dead_letters):,} dead letters, classes {dict(Counter(d['error_class'] for d in out.dead_letters))}"
    )
