"""Observability of the running worker on a real broker: metrics, health, PHI-free output, Prometheus scraping."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import streams
from worker import __version__
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import CriterionStatus, Outcome
from worker.errors import DeadLetterClass
from worker.kafka.reads import read_topic
from worker.policy import Facts, decide, default_policy
from worker.policy.catalog import catalog_choice
from worker.runtime.pipeline import ExitCode

if TYPE_CHECKING:
    from worker.contracts.model import Claim

pytestmark = [pytest.mark.kafka]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

PHI_PATIENT = {
    "member_id": "PHIMEMBER8675309",
    "first_name": "ZZPHIFIRSTNAME",
    "last_name": "ZZPHILASTNAME",
    "date_of_birth": "1937-04-23",
}
# The Avro day count of the date of birth is left out: a bare integer would match unrelated numbers.
PHI_SENTINELS = (
    "PHIMEMBER8675309",
    "ZZPHIFIRSTNAME",
    "ZZPHILASTNAME",
    "1937-04-23",
    "19370423",
    "04/23/1937",
)
BAD_CHECK_DIGIT_NPI = "1234567890"


# --- helpers ------------------------------------------------------------------------------------


def _outcome_claims(first: int, **overrides: object) -> dict[Outcome, Claim]:
    """One claim per outcome, numbered from ``first``; ``overrides`` apply to every claim."""
    return {
        Outcome.APPROVED: streams.claim(first, **overrides),
        Outcome.REFERRED: streams.claim(
            first + 1,
            diagnoses=[{"code": "C50.911", "qualifier": "02"}],
            attestation={"disease_status": "LOCALLY_ADVANCED"},
            **overrides,
        ),
        Outcome.PENDED: streams.claim(first + 2, diagnoses=[], **overrides),
        Outcome.NOT_APPLICABLE: streams.claim(
            first + 3,
            product={"product_id": streams.CAPECITABINE, "qualifier": "03"},
            quantity=120.0,
            days_supply=30,
            **overrides,
        ),
        Outcome.REVERSED: streams.claim(
            first + 4, transaction_code="B2", original_claim_id=f"clm-{first:06d}", **overrides
        ),
    }


def _produce_to(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes | None]]) -> None:
    """Produce ``(partition, key, value)`` records to explicit partitions and wait for every ack."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for partition, key, value in records:
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def _read_raw(bootstrap: str, topic: str) -> list:
    """Every committed record of ``topic`` (all partitions, read_committed), with keys and headers."""
    return list(read_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}), topic, timeout_s=30))


def _log_events(log: Path) -> list[dict]:
    """The worker log's JSON events (non-JSON lines, e.g. from stderr, are skipped)."""
    events = []
    for line in streams.iter_log(log) if log.exists() else ():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def _tail(log: Path) -> str:
    """The last part of the worker log, for assertion messages."""
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _metrics_port(proc: subprocess.Popen[bytes], log: Path) -> int:
    """Wait for the worker's ``metrics_serving`` event and return the port it bound."""

    def port() -> int | None:
        return next((e["port"] for e in _log_events(log) if e.get("event") == "metrics_serving"), None)

    found = streams.wait_for(lambda: port() is not None or proc.poll() is not None, 60, 0.1)
    assert found, f"worker did not start serving metrics:\n{_tail(log)}"
    assert proc.poll() is None, f"worker exited before serving metrics:\n{_tail(log)}"
    value = port()
    assert isinstance(value, int), value
    return value


def _get(url: str) -> tuple[int, bytes]:
    """GET ``url``; return the HTTP status and body (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own http://127.0.0.1 URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _scrape(port: int) -> tuple[Samples, str]:
    """Fetch ``/metrics`` and return every sample keyed by (name, labels), and the raw text."""
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    text = body.decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much one sample moved between two scrapes (a missing sample counts as 0)."""
    key = _key(name, **labels)
    return after.get(key, 0.0) - before.get(key, 0.0)


def _series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of metric sample ``name``, by label set."""
    return {labels: value for (n, labels), value in samples.items() if n == name}


def _batches_committed(log: Path) -> list[dict]:
    """The worker's ``batch_committed`` events (logged after every metric of the batch is updated)."""
    return [e for e in _log_events(log) if e.get("event") == "batch_committed"]


def _wait_processed(proc: subprocess.Popen[bytes], log: Path, n: int) -> None:
    """Wait until the worker has logged committed batches totalling ``n`` records."""
    done = streams.wait_for(
        lambda: sum(e["batch_size"] for e in _batches_committed(log)) >= n or proc.poll() is not None, 60, 0.2
    )
    assert done, f"worker did not process {n} records:\n{_tail(log)}"
    assert proc.poll() is None, f"worker exited while processing:\n{_tail(log)}"
    assert sum(e["batch_size"] for e in _batches_committed(log)) == n


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    """SIGTERM the process and return its exit code (kill it if it does not stop)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _phi_hits(text: str) -> list[str]:
    """The PHI sentinels found in ``text`` (case-insensitive)."""
    lowered = text.lower()
    return [s for s in PHI_SENTINELS if s.lower() in lowered]


# --- tests --------------------------------------------------------------------------------------


def test_metrics_move_as_claims_flow(kafka_bootstrap, topics, tmp_path):
    """Each worker metric moves by exactly what a known mix of claims, poison and a duplicate implies."""
    codec = Codec()
    claims = _outcome_claims(1)
    enc = {o: (c.claim_id.encode(), codec.encode_claim(c)) for o, c in claims.items()}
    records: list[tuple[int, bytes | None, bytes | None]] = [
        (0, *enc[Outcome.APPROVED]),
        (0, *enc[Outcome.REFERRED]),
        (0, *enc[Outcome.PENDED]),
        (0, *enc[Outcome.APPROVED]),  # same event again: a DUPLICATE_EVENT dead letter
        (1, *enc[Outcome.NOT_APPLICABLE]),
        (1, *enc[Outcome.REVERSED]),
        (1, b"poison", b"not avro"),
    ]

    # What the policy says the five claims must add to the criterion and reason counters.
    now = datetime.now(UTC)
    criteria: Counter[tuple[str, str]] = Counter()
    reasons: Counter[str] = Counter()
    for claim in claims.values():
        decision = decide(claim, Facts(), default_policy(), now)
        criteria.update((c.criterion_id, c.status.value) for c in decision.criteria)
        if decision.outcome in (Outcome.REFERRED, Outcome.PENDED):
            reasons.update(c.reason_code for c in decision.criteria if c.status != CriterionStatus.MET)
    assert [o for o, c in claims.items() if decide(c, Facts(), default_policy(), now).outcome != o] == [], (
        "the mix must cover every outcome"
    )
    assert reasons, "the mix must include non-approval reasons"

    log = tmp_path / "worker.log"
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_LOG_LEVEL="DEBUG", CLAIMS_LOG_FORMAT="json")
    proc = streams.start_worker(env, log)
    try:
        port = _metrics_port(proc, log)
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/healthz")[0] == 200
        ready = streams.wait_for(lambda: _get(f"{base}/readyz")[0] == 200 or proc.poll() is not None, 60, 0.2)
        assert ready, f"/readyz never turned 200:\n{_tail(log)}"
        assert proc.poll() is None, f"worker exited before it was ready:\n{_tail(log)}"
        status, body = _get(f"{base}/readyz")
        assert status == 200
        assert json.loads(body)["ready"] is True

        before, _ = _scrape(port)
        assert before[_key("claims_worker_assigned_partitions")] == 2
        assert before[_key("claims_worker_up")] == 1
        assert before[_key("claims_worker_claims_consumed_total")] == 0

        _produce_to(kafka_bootstrap, topics["claims"], records)
        _wait_processed(proc, log, len(records))
        after, _ = _scrape(port)
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz")[0] == 200
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK, _tail(log)

    assert streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == len(records)
    batches = len(_batches_committed(log))
    assert batches >= 1

    assert _delta(before, after, "claims_worker_claims_consumed_total") == len(records)
    for outcome in Outcome:
        expected_results = (
            1 if outcome in claims else 0
        )  # DENIED needs the plan's opt-in; REJECTED: not in this mix
        assert (
            _delta(before, after, "claims_worker_results_total", outcome=outcome.value) == expected_results
        ), outcome
    expected_dead = {DeadLetterClass.NOT_AVRO: 1, DeadLetterClass.DUPLICATE_EVENT: 1}
    for error_class in DeadLetterClass:
        moved = _delta(before, after, "claims_worker_dead_letters_total", error_class=error_class.value)
        assert moved == expected_dead.get(error_class, 0), error_class

    evaluations = _series(after, "claims_worker_criterion_evaluations_total")
    assert evaluations, "criterion evaluations are exported"
    for labels in evaluations:
        row = dict(labels)
        expected = criteria[(row["criterion_id"], row["status"])]
        assert _delta(before, after, "claims_worker_criterion_evaluations_total", **row) == expected, row
    assert sum(criteria.values()) == sum(evaluations.values())
    reason_series = _series(after, "claims_worker_non_approval_reasons_total")
    for labels in reason_series:
        row = dict(labels)
        assert (
            _delta(before, after, "claims_worker_non_approval_reasons_total", **row)
            == reasons[row["reason_code"]]
        ), row
    assert set(reasons) <= {dict(labels)["reason_code"] for labels in reason_series}

    assert _delta(before, after, "claims_worker_transactions_total", result="committed") == batches
    assert _delta(before, after, "claims_worker_transactions_total", result="aborted") == 0
    assert _delta(before, after, "claims_worker_batch_size_records_count") == batches
    assert _delta(before, after, "claims_worker_batch_size_records_sum") == len(records)
    assert _delta(before, after, "claims_worker_batch_duration_seconds_count") == batches
    assert _delta(before, after, "claims_worker_batch_duration_seconds_sum") > 0
    # One observation per decision, each well under 10 ms (the policy is pure and in-memory).
    assert _delta(before, after, "claims_worker_decision_latency_seconds_count") == len(claims)
    assert _delta(before, after, "claims_worker_end_to_end_latency_seconds_count") == len(claims)
    assert _delta(before, after, "claims_worker_end_to_end_latency_seconds_sum") > 0

    assert after[_key("claims_worker_assigned_partitions")] == 2
    lag = {
        dict(labels)["partition"]: value
        for labels, value in _series(after, "claims_worker_consumer_lag_records").items()
    }
    assert lag == {"0": 0, "1": 0}
    assert (
        after[_key("claims_worker_last_commit_timestamp_seconds")]
        > before[_key("claims_worker_last_commit_timestamp_seconds")]
    )
    assert after[_key("claims_worker_last_commit_timestamp_seconds")] <= datetime.now(UTC).timestamp()
    # The default CLAIMS_POLICY selects by date of service: the worker reports the version as "dated".
    choice = catalog_choice(load_settings({}).policy)
    info = {
        "policy_id": choice.named.policy_id,
        "policy_version": choice.version_label,
        "worker_version": __version__,
    }
    assert info["policy_version"] == "dated"
    assert after[_key("claims_worker_policy_info", **info)] == 1
    assert after[_key("claims_worker_up")] == 1
    not_approved = {e["claim_id"] for e in _log_events(log) if e.get("event") == "not_approved"}
    assert not_approved == {claims[Outcome.REFERRED].claim_id, claims[Outcome.PENDED].claim_id}


def test_no_phi_in_logs_metrics_or_results(kafka_bootstrap, topics, tmp_path):
    """Sentinel PHI in every outcome, a malformed claim and an invalid one reaches no log line, metric or result.

    Dead letters carry the original bytes on purpose (nothing may be lost), so only their reason,
    error class and headers are checked for PHI. The malformed claim (bad NPI) is answered REJECTED.
    """
    codec = Codec()
    claims = _outcome_claims(100, patient=PHI_PATIENT)
    malformed = streams.claim(201, patient=PHI_PATIENT).model_dump()
    malformed["prescriber"]["npi"] = BAD_CHECK_DIGIT_NPI
    invalid = {**malformed, "claim_id": ""}  # no claim id to answer: a dead letter
    invalid_value = codec.encode_claim(invalid)
    assert b"PHIMEMBER8675309" in invalid_value, "the invalid claim must carry the sentinel PHI"
    records = [(c.claim_id.encode(), codec.encode_claim(c)) for c in claims.values()]
    records.append((malformed["claim_id"].encode(), codec.encode_claim(malformed)))
    records.append((b"no-claim-id", invalid_value))

    log = tmp_path / "worker.log"
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_LOG_LEVEL="DEBUG", CLAIMS_LOG_FORMAT="json")
    proc = streams.start_worker(env, log)
    try:
        port = _metrics_port(proc, log)
        streams.produce(kafka_bootstrap, topics["claims"], records)
        _wait_processed(proc, log, len(records))
        _, metrics_text = _scrape(port)
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK, _tail(log)

    # The per-claim debug lines were really emitted, so the log scan covers them.
    not_approved = {e["claim_id"] for e in _log_events(log) if e.get("event") == "not_approved"}
    assert not_approved == {claims[Outcome.REFERRED].claim_id, claims[Outcome.PENDED].claim_id}

    log_lines = streams.iter_log(log)
    leaks = {i: _phi_hits(line) for i, line in enumerate(log_lines) if _phi_hits(line)}
    assert not leaks, f"PHI in worker log lines: {leaks}"
    assert not _phi_hits(metrics_text), "PHI in /metrics"

    results = _read_raw(kafka_bootstrap, topics["results"])
    assert sorted(codec.decode_result(r.value)["outcome"] for r in results) == sorted(
        [*(o.value for o in claims), "REJECTED"]
    )
    for record in results:
        decoded = codec.decode_result(record.value)
        assert not _phi_hits(json.dumps(decoded, default=str)), decoded["claim_id"]
        assert not _phi_hits(repr(record.key)), decoded["claim_id"]
        assert not _phi_hits(repr(record.headers)), decoded["claim_id"]

    letters = _read_raw(kafka_bootstrap, topics["dead_letter"])
    assert len(letters) == 1
    letter = codec.decode_dead_letter(letters[0].value)
    assert letter["error_class"] == DeadLetterClass.INVALID_FIELD.value
    assert letter["original_value"] == invalid_value, "the dead letter keeps the original bytes"
    assert not _phi_hits(letter["reason"]), letter["reason"]
    assert not _phi_hits(letter["error_class"])
    assert not _phi_hits(repr(letter["original_headers"]))
    assert not _phi_hits(repr(letters[0].headers))


@pytest.mark.prometheus
def test_prometheus_scrapes_the_worker(kafka_bootstrap, topics, tmp_path):
    """A real Prometheus server scrapes the running worker and answers a query on its results counter."""
    prometheus = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if prometheus is None:
        pytest.fail(
            "the prometheus server is not installed. `make test` installs it (Debian package `prometheus`); "
            "or run deploy/prometheus/install-promtool.sh as root."
        )
    codec = Codec()
    log = tmp_path / "worker.log"
    prom_log = tmp_path / "prometheus.log"
    proc = streams.start_worker(streams.worker_env(kafka_bootstrap, topics), log)
    server: subprocess.Popen[bytes] | None = None
    try:
        port = _metrics_port(proc, log)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: claims-worker\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n"
        )
        web = f"127.0.0.1:{_free_port()}"
        with prom_log.open("ab") as out:
            server = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={web}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def query(promql: str) -> list[dict]:
            status, body = _get(f"http://{web}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
            if status != 200:
                return []
            answer = json.loads(body)
            return answer["data"]["result"] if answer.get("status") == "success" else []

        def prometheus_ready() -> bool:
            try:
                return _get(f"http://{web}/-/ready")[0] == 200
            except OSError:
                return server.poll() is not None

        assert streams.wait_for(prometheus_ready, 60, 0.2), _tail(prom_log)
        assert server.poll() is None, f"prometheus exited:\n{_tail(prom_log)}"

        claims = list(_outcome_claims(1).values())
        streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims, codec))

        def results_counted() -> bool:
            return any(float(s["value"][1]) > 0 for s in query("claims_worker_results_total"))

        assert streams.wait_for(results_counted, 60), f"no results scraped:\n{_tail(prom_log)}\n{_tail(log)}"
        vector = query("claims_worker_results_total")
        assert {s["metric"]["outcome"] for s in vector} == {o.value for o in Outcome}
        assert all(s["metric"]["job"] == "claims-worker" for s in vector)
        up = query('up{job="claims-worker"}')
        assert [float(s["value"][1]) for s in up] == [1.0]
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        code = _stop(proc)
    assert server.returncode == 0, _tail(prom_log)
    assert code == ExitCode.OK, _tail(log)
