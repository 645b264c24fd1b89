"""The worker with a prescriber directory on a real broker: claims without a taxonomy, updates while running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from datetime import date
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.demo.nppes_sample import SAMPLE_RELEASE, build_sample_index
from tests.integration import streams
from worker.config.settings import load_settings
from worker.contracts.icd10cm import ICD10CM_REFERENCE, RELEASE
from worker.directory import Entry
from worker.directory.updates import encode_update, ensure_topic
from worker.kafka.failures import ExitCode

ICD10CM = {ICD10CM_REFERENCE: RELEASE}  # every decision that read a diagnosis code names the code set

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ONCOLOGY = "207RX0202X"
SECONDARY_ONCOLOGY = "1111111112"  # internal medicine primary, oncology secondary (bundled sample)
FAMILY_PHYSICIAN = "1987654328"  # family medicine only in the index
HEMATOLOGIST = "1555555550"  # hematology only in the index
WEEKLY = "nppes-20240715"


def _events(log: Path) -> list[dict]:
    events = []
    for line in streams.iter_log(log):
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _metrics(port: int) -> dict[str, float]:
    """Scrape the worker's unlabelled directory samples (and lookups, keyed ``name{role,status}``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("claims_worker_directory"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def _update(npi: str, taxonomies: tuple[str, ...]) -> tuple[bytes, bytes]:
    return encode_update(int(npi), Entry(1, taxonomies, 0), WEEKLY, date(2024, 7, 15))


def _no_taxonomy(n: int, npi: str):
    return streams.claim(n, prescriber={"npi": npi})


def _b_evidence(result: dict) -> list[str]:
    return next(c["evidence"] for c in result["criteria"] if c["criterion_id"] == "B")


def test_worker_decides_through_the_directory_and_follows_updates_while_running(
    kafka_bootstrap, topics, unique, tmp_path
):
    """Claims without a taxonomy are decided through the directory (results name its version); an update
    published before start is read before the first claim, and one published while running decides a later claim."""
    index = build_sample_index(tmp_path / "sample.idx")
    updates_topic = f"directory-{unique}"
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert ensure_topic(settings, updates_topic)
    # Before the worker starts: the hematologist now lists oncology (read during catch-up, before ready).
    streams.produce(kafka_bootstrap, updates_topic, [_update(HEMATOLOGIST, ("207RH0000X", ONCOLOGY))])
    streams.produce(
        kafka_bootstrap,
        topics["claims"],
        streams.encoded(
            [
                _no_taxonomy(1, SECONDARY_ONCOLOGY),
                _no_taxonomy(2, FAMILY_PHYSICIAN),
                _no_taxonomy(3, HEMATOLOGIST),
            ]
        ),
    )
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_DIRECTORY_PATH=str(index),
        CLAIMS_DIRECTORY_UPDATES_TOPIC=updates_topic,
        CLAIMS_DIRECTORY_CATCH_UP_TIMEOUT_S="60",
    )
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: (
                streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 3
                or proc.poll() is not None
            ),
            90,
        ), log.read_text()[-3000:]
        assert proc.poll() is None, log.read_text()[-3000:]
        first = {
            r["claim_id"]: r
            for r in streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"]).results
        }
        secondary, family, hematologist = (first[f"clm-{n:06d}"] for n in (1, 2, 3))
        assert secondary["outcome"] == "APPROVED"
        assert any(f"source=directory {SAMPLE_RELEASE}" in item for item in _b_evidence(secondary))
        assert secondary["reference_versions"] == {"prescriber-directory": SAMPLE_RELEASE, **ICD10CM}
        assert family["outcome"] != "APPROVED"
        assert any(f"source=directory {SAMPLE_RELEASE}" in item for item in _b_evidence(family))
        assert hematologist["outcome"] == "APPROVED"  # the update read at start-up wins over the index
        assert any(f"source=directory {WEEKLY}" in item for item in _b_evidence(hematologist))
        assert hematologist["reference_versions"] == {
            "prescriber-directory": f"{SAMPLE_RELEASE}+{WEEKLY}",
            **ICD10CM,
        }

        # While running: the family physician adds oncology; wait until the worker has applied it.
        port = next(e["port"] for e in _events(log) if e.get("event") == "metrics_serving")
        applied = "claims_worker_directory_updates_applied_total"
        assert _metrics(port)[applied] == 1
        streams.produce(kafka_bootstrap, updates_topic, [_update(FAMILY_PHYSICIAN, ("207Q00000X", ONCOLOGY))])
        assert streams.wait_for(lambda: _metrics(port)[applied] == 2, 60), log.read_text()[-3000:]
        streams.produce(
            kafka_bootstrap, topics["claims"], streams.encoded([_no_taxonomy(4, FAMILY_PHYSICIAN)])
        )
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == 4, 60
        ), log.read_text()[-3000:]
        # Lookup counts are flushed once per loop pass, so the fourth claim's shows on a later pass.
        lookups = "claims_worker_directory_lookups_total{role=prescriber,status=ACTIVE}"
        assert streams.wait_for(lambda: _metrics(port)[lookups] == 4, 30), _metrics(port)
        metrics = _metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == ExitCode.OK, log.read_text()[-3000:]
    later = {
        r["claim_id"]: r
        for r in streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"]).results
    }
    assert len(later) == 4
    fourth = later["clm-000004"]
    assert fourth["outcome"] == "APPROVED"
    assert any(f"source=directory {WEEKLY}" in item for item in _b_evidence(fourth))
    assert fourth["reference_versions"] == {"prescriber-directory": f"{SAMPLE_RELEASE}+{WEEKLY}", **ICD10CM}
    assert metrics["claims_worker_directory_overlay_npis"] == 2
    ready = [e for e in _events(log) if e.get("event") == "directory_updates_caught_up"]
    assert len(ready) == 1


def test_missing_directory_index_exits_2_with_one_line(kafka_bootstrap, topics, tmp_path):
    """A worker whose CLAIMS_DIRECTORY_PATH names no index exits 2 with one error line naming the setting."""
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_DIRECTORY_PATH=str(tmp_path / "absent.idx"))
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=streams.ROOT,
        check=False,
    )
    assert done.returncode == ExitCode.BAD_SETTINGS
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "CLAIMS_DIRECTORY_PATH" in errors[0]
    assert "Traceback" not in done.stderr
