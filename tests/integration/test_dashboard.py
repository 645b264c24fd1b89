"""Every dashboard panel, alert and recording rule, evaluated by a real Prometheus scraping a real worker.

One worker runs on the session broker with the prescriber directory (index plus updates topic) and the
authorization store on; sample claims give every outcome the default plan produces, a REJECTED answer,
dead letters, an approval paid on file later and a revocation; a ``claims-worker replay`` writes its
``--metrics-file``, served here as the node exporter's textfile collector would. Prometheus (Debian's
``prometheus``, as in test_observability.py) scrapes both every second and loads alerts.yml. Then every
panel target of deploy/grafana/claims-worker.json is sent to ``/api/v1/query`` with Grafana's variables
filled in: it must parse and return data, or be listed in ``EXPECTED_EMPTY`` with the reason.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from deploy.demo.nppes_sample import build_sample_index
from tests.integration import streams
from tests.integration.test_observability import (
    BAD_CHECK_DIGIT_NPI,
    _free_port,
    _get,
    _log_events,
    _metrics_port,
    _outcome_claims,
    _stop,
    _tail,
)
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.directory import Entry
from worker.directory.updates import encode_update, ensure_topic
from worker.runtime.pipeline import ExitCode

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "claims-worker.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SECRET = "integration-dashboard-secret-0123456789"  # noqa: S105 - a test key, not a credential
SECONDARY_ONCOLOGY = "1111111112"  # in the bundled sample index: looked up when the claim sends no taxonomy
FAMILY_PHYSICIAN = "1987654328"

# What Grafana substitutes before a query reaches Prometheus. The run is shorter than 5 minutes, so a
# 5-minute rate window holds every increment the run made, and an hour covers the whole run.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "15s",
    "$__range": "1h",
    "$job": "claims-worker",
    "$instance": ".*",
}

# Panels that are empty in this run, with the reason. Keep it short: a listed panel that returns data
# fails the test too (the list must not go stale).
EXPECTED_EMPTY = {
    "Fenced and not-authorized exits (Kubernetes)": "kube-state-metrics series; the test runs no Kubernetes",
}

# Series an alert reads that this run cannot have, with the reason.
EXPECTED_ABSENT_SERIES = {
    "kube_pod_container_status_last_terminated_exitcode": "kube-state-metrics; no Kubernetes here",
    "kube_pod_container_status_restarts_total": "kube-state-metrics; no Kubernetes here",
}

_SELECTOR = re.compile(r"\b((?:claims_(?:worker|replay)_|kube_)[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?")


def _fill(n: int, member_of: int, day: date):
    """A later fill without clinical data for the member of claim ``member_of``: only an authorization pays it."""
    member = streams.claim(member_of).patient.model_dump()
    return streams.claim(n, patient=member, diagnoses=[], date_of_service=day)


def _processed(log: Path) -> int:
    return sum(e["batch_size"] for e in _log_events(log) if e.get("event") == "batch_committed")


def _wait_processed(proc: subprocess.Popen[bytes], log: Path, n: int) -> None:
    """Wait until the worker has committed batches totalling at least ``n`` records."""
    done = streams.wait_for(lambda: _processed(log) >= n or proc.poll() is not None, 90, 0.2)
    assert done, f"worker did not process {n} records:\n{_tail(log)}"
    assert proc.poll() is None, f"worker exited:\n{_tail(log)}"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


@contextmanager
def _textfile_collector(path: Path) -> Iterator[int]:
    """Serve ``path`` at /metrics, as the node exporter's textfile collector serves a ``.prom`` file."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = path.read_bytes() if path.exists() else b""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Keep the test output quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _worker_labels() -> dict[str, str]:
    """The target labels of the claims-worker job in deploy/prometheus/prometheus.yml."""
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "claims-worker"]
    return dict(job["static_configs"][0]["labels"])


@contextmanager
def _prometheus(tmp_path: Path, worker_port: int, replay_port: int) -> Iterator[str]:
    """Run Prometheus scraping the worker and the replay's metrics every second, with alerts.yml loaded."""
    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if binary is None:
        pytest.fail(
            "the prometheus server is not installed. `make test` installs it (Debian package `prometheus`); "
            "or run deploy/prometheus/install-promtool.sh as root."
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "claims-worker",
                        # The labels deploy/prometheus/prometheus.yml gives a worker (ClaimsWorkerDown's `service`).
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{worker_port}"], "labels": _worker_labels()}
                        ],
                    },
                    {
                        "job_name": "claims-replay",
                        "static_configs": [{"targets": [f"127.0.0.1:{replay_port}"]}],
                    },
                ],
            }
        )
    )
    web = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "prometheus.log"
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={web}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            try:
                return _get(f"http://{web}/-/ready")[0] == 200
            except OSError:
                return server.poll() is not None

        assert streams.wait_for(ready, 60, 0.2), _tail(log)
        assert server.poll() is None, f"prometheus exited:\n{_tail(log)}"

        # Target discovery reaches the scrapers a few seconds after start: wait for a first scrape of
        # both targets, so the counters' starting values are in the database before the claims flow.
        def scraping() -> bool:
            return _value(web, "count(up == 1)") == 2

        assert streams.wait_for(scraping, 60, 0.2), _tail(log)
        yield web
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _query(web: str, promql: str) -> dict:
    """Send ``promql`` to /api/v1/query; return the decoded answer (status and data, or the error)."""
    status, body = _get(f"http://{web}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    answer = json.loads(body)
    answer["http_status"] = status
    return answer


def _result(web: str, promql: str) -> list[dict]:
    answer = _query(web, promql)
    assert answer["status"] == "success", f"{promql}: {answer.get('error')}"
    return answer["data"]["result"]


def _value(web: str, promql: str) -> float | None:
    result = _result(web, promql)
    return float(result[0]["value"][1]) if result else None


def _concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _panel_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every panel target in the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in panels
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]


def test_every_panel_alert_and_rule_answers_on_a_real_prometheus(kafka_bootstrap, topics, unique, tmp_path):
    """Every dashboard panel query parses and returns data (or is listed empty with a reason); every alert and recording rule parses and the series alerts read exist."""
    codec = Codec()
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    store, updates = f"authorizations-{unique}", f"directory-{unique}"
    ensure_topic(settings, store, partitions=2)
    assert ensure_topic(settings, updates)
    streams.produce(
        kafka_bootstrap,
        updates,
        [
            encode_update(
                int(FAMILY_PHYSICIAN), Entry(1, ("207Q00000X",), 0), "nppes-20240715", date(2024, 7, 15)
            )
        ],
    )
    env = streams.worker_env(
        kafka_bootstrap,
        topics,
        CLAIMS_DIRECTORY_PATH=str(build_sample_index(tmp_path / "sample.idx")),
        CLAIMS_DIRECTORY_UPDATES_TOPIC=updates,
        CLAIMS_AUTHORIZATIONS_TOPIC=store,
        CLAIMS_MEMBER_PSEUDONYM_SECRET=SECRET,
        CLAIMS_INSTANCE="dash-0",
    )
    replay_from = datetime.now(UTC) - timedelta(seconds=30)

    # Every outcome of the default plan, a REJECTED answer, a directory lookup and two dead letters.
    claims = list(_outcome_claims(1).values())
    malformed = streams.claim(6).model_dump()
    malformed["prescriber"]["npi"] = BAD_CHECK_DIGIT_NPI
    looked_up = streams.claim(7, prescriber={"npi": SECONDARY_ONCOLOGY})
    first = [
        *streams.encoded([*claims, looked_up], codec),
        (b"clm-000006", codec.encode_claim(malformed)),
        streams.encoded([claims[0]], codec)[0],  # the approval again: a DUPLICATE_EVENT dead letter
        (b"poison", b"not avro"),
    ]

    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    metrics_file = tmp_path / "textfile" / "claims-replay.prom"
    metrics_file.parent.mkdir()
    try:
        port = _metrics_port(proc, log)
        with (
            _textfile_collector(metrics_file) as replay_port,
            _prometheus(tmp_path, port, replay_port) as web,
        ):
            streams.produce(kafka_bootstrap, topics["claims"], first)
            _wait_processed(proc, log, len(first))
            results = {
                r["claim_id"]: r
                for r in streams.read_outputs(
                    kafka_bootstrap, topics["results"], topics["dead_letter"]
                ).results
            }
            assert {r["outcome"] for r in results.values()} >= {
                "APPROVED",
                "REFERRED",
                "PENDED",
                "NOT_APPLICABLE",
                "REVERSED",
                "REJECTED",
            }
            number = results[claims[0].claim_id]["authorization_number"]
            assert number

            # A later fill paid on file, then the authorization revoked; a directory update while running.
            streams.produce(
                kafka_bootstrap,
                topics["claims"],
                streams.encoded([_fill(8, 1, streams.SERVICE_DAY + timedelta(days=15))], codec),
            )
            _wait_processed(proc, log, len(first) + 1)
            revoked = _cli(env, "authorizations", "revoke", number, "--reason", "ENTERED_IN_ERROR")
            assert revoked.returncode == 0, revoked.stderr
            streams.produce(
                kafka_bootstrap,
                updates,
                [
                    encode_update(
                        int(FAMILY_PHYSICIAN),
                        Entry(1, ("207Q00000X", "207RX0202X"), 0),
                        "nppes-20240722",
                        date(2024, 7, 22),
                    )
                ],
            )

            replay = _cli(
                env,
                "replay",
                "--from",
                replay_from.isoformat(),
                "--replay-id",
                f"dash-{unique}",
                "--output-topic",
                f"replayed-{unique}",
                "--metrics-file",
                str(metrics_file),
                "--progress",
                "off",
            )
            assert replay.returncode == 0, replay.stderr

            def scraped() -> bool:
                return (
                    _value(web, 'max(claims_worker_authorizations{state="revoked"})') == 1
                    and _value(web, "sum(claims_worker_on_file_approvals_total)") == 1
                    and _value(web, "sum(claims_worker_directory_updates_applied_total)") == 2
                    and (_value(web, "max(claims_replay_range_records)") or 0) > 0
                    and (_value(web, "min(count_over_time(claims_worker_up[5m]))") or 0) >= 5
                    and _value(web, "count(job:claims_worker_consumer_lag_records:sum)") == 1
                )

            assert streams.wait_for(scraped, 60, 0.5), f"Prometheus never saw the run:\n{_tail(log)}"
            assert _value(web, 'sum(claims_worker_results_total{outcome="APPROVED"})') >= 2

            _check_panels(web)
            _check_rules(web)
    finally:
        code = _stop(proc)
    assert code == ExitCode.OK, _tail(log)


def _check_panels(web: str) -> None:
    """Each panel target parses; a panel returns data unless listed in EXPECTED_EMPTY (and then it must not)."""
    by_panel: dict[str, list[int]] = {}
    for title, ref, expr in _panel_targets():
        answer = _query(web, _concrete(expr))
        assert answer["status"] == "success", f"{title} [{ref}]: {answer.get('error')}"
        by_panel.setdefault(title, []).append(len(answer["data"]["result"]))
    empty = sorted(title for title, sizes in by_panel.items() if not any(sizes))
    partly = sorted(title for title, sizes in by_panel.items() if any(sizes) and not all(sizes))
    assert partly == [], f"panels with an empty target: {partly}"
    assert empty == sorted(EXPECTED_EMPTY), f"empty panels {empty}, expected {sorted(EXPECTED_EMPTY)}"


def _check_rules(web: str) -> None:
    """Every alert expr parses and the series it reads exist (or are listed); every recording rule has data."""
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        name = rule.get("alert") or rule["record"]
        answer = _query(web, rule["expr"])
        assert answer["status"] == "success", f"{name}: {answer.get('error')}"
        if "record" in rule:
            assert answer["data"]["result"], f"recording rule {name} has no data"
            assert _result(web, f"count({name})"), f"{name} was never recorded"
            continue
        for metric, matchers in _SELECTOR.findall(rule["expr"]):
            selector = metric + matchers
            present = bool(_result(web, f"count({selector})"))
            if metric in EXPECTED_ABSENT_SERIES:
                assert not present, f"{name}: {selector} exists; drop it from EXPECTED_ABSENT_SERIES"
            else:
                assert present, f"{name}: no series {selector}"
