"""The Grafana dashboard and the Prometheus files name only metrics, labels and values the worker exposes.

"The worker" is WorkerMetrics, DirectoryMetrics, AuthorizationMetrics and the replay's ReplayMetrics; the
only other series allowed are kube-state-metrics' (``kube_*``, with their own labels), for exits the
worker cannot report itself (it is gone).
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from worker.ops.directory_metrics import DirectoryMetrics
from worker.ops.metrics import WorkerMetrics
from worker.runtime.replay_job import ReplayMetrics
from worker.state.authorization_table import AuthorizationMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "claims-worker.json"
PROMETHEUS_FILES = [ROOT / "deploy" / "prometheus" / name for name in ("alerts.yml", "tests.yml")]

# Labels Prometheus adds at scrape time, or that histogram_quantile groups by; kube-state-metrics' pod label.


def _target_labels() -> set[str]:
    """The labels prometheus.yml gives its targets (ClaimsWorkerDown's `service`): added by the scrape."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {
        label
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for label in group.get("labels", {})
    }


SCRAPE_LABELS = frozenset({"job", "instance", "le", *_target_labels()})
EXTERNAL_LABELS = frozenset({"pod", "namespace", "container"})
EXTERNAL_METRIC = re.compile(r"\bkube_pod_container_status_(?:last_terminated_exitcode|restarts_total)\b")
# Label values that depend on the deployment (partition numbers) rather than a closed set.
OPEN_VALUE_LABELS = frozenset({"partition"})

# A metric name; the parts of a recording rule's name (level:metric:operations) are not metrics.
_METRIC = re.compile(r"(?<![\w:])claims_(?:worker|replay)_[a-zA-Z0-9_]+(?![\w:])")
_SELECTOR = re.compile(r"(?<![\w:])(claims_(?:worker|replay)_[a-zA-Z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
# `{{ label }}` in a legend; `{{ else }}` and `{{ end }}` are template keywords (alert annotations).
_LEGEND_LABEL = re.compile(r"\{\{\s*(?!(?:else|end)\s*\}\})([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _exposed() -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, from a WorkerMetrics with every kind of series present."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, criterion_ids=("A", "B"), reason_codes=("DX_NOT_COVERED",))
    metrics.set_lag(0, 1)
    metrics.set_lag_seconds(0, 1.0)
    metrics.set_policy_info("IXEMPRA-PA", "1", "0.1.0")
    DirectoryMetrics(registry).set_directory("nppes-20241110", date(2024, 11, 10))
    AuthorizationMetrics(registry)
    replay = ReplayMetrics()
    replay.count("replay", "APPROVED")
    samples: dict[str, list[dict[str, str]]] = {}
    for reg in (registry, replay.registry):
        for family in reg.collect():
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


EXPOSED = _exposed()
LABEL_NAMES = {name for label_sets in EXPOSED.values() for labels in label_sets for name in labels}


def _dashboard() -> dict[str, object]:
    return json.loads(DASHBOARD.read_text())


def _walk(node: object, key: str) -> list[str]:
    """Every string stored under ``key`` anywhere in a JSON tree."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                found.append(v)
            else:
                found.extend(_walk(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item, key))
    return found


def _prometheus_text(path: Path) -> str:
    """The file without comment lines (comments may mention metrics in prose)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def _sources() -> list[tuple[str, str]]:
    """(name, PromQL-bearing text) for each dashboard expression, variable query and Prometheus file."""
    dashboard = _dashboard()
    out = [(f"dashboard expr {i}", expr) for i, expr in enumerate(_walk(dashboard, "expr"))]
    out += [(f"dashboard variable {q}", q) for q in _walk(dashboard, "definition")]
    out += [(path.name, _prometheus_text(path)) for path in PROMETHEUS_FILES]
    return out


SOURCES = _sources()
IDS = [name for name, _ in SOURCES]


class TestMetricNames:
    """Every referenced claims_worker_* name is exposed."""

    @pytest.mark.parametrize(("name", "text"), SOURCES, ids=IDS)
    def test_referenced_metrics_exist(self, name, text):
        """Each claims_worker_*/claims_replay_* name (with its suffix) is an exposed sample name."""
        referenced = set(_METRIC.findall(text))
        assert referenced or EXTERNAL_METRIC.search(text), f"{name} references no worker metric"
        assert referenced <= EXPOSED.keys(), f"{name}: unknown {sorted(referenced - EXPOSED.keys())}"

    @pytest.mark.parametrize(("name", "text"), SOURCES, ids=IDS)
    def test_label_matchers_match_exposed_series(self, name, text):
        """Each equality matcher on a claims_worker_* metric names one of its labels and an exposed value."""
        for metric, matchers in _SELECTOR.findall(text):
            label_sets = EXPOSED.get(metric, [])
            for label, op, value in _MATCHER.findall(matchers):
                if label in SCRAPE_LABELS:
                    continue
                assert any(label in labels for labels in label_sets), f"{name}: {metric} has no label {label}"
                if op == "=" and label not in OPEN_VALUE_LABELS and "$" not in value:
                    assert any(labels.get(label) == value for labels in label_sets), (
                        f"{name}: {metric}{{{label}={value!r}}} is never exposed"
                    )

    @pytest.mark.parametrize(("name", "text"), SOURCES, ids=IDS)
    def test_grouping_labels_exist(self, name, text):
        """Labels in by/on/without/ignoring clauses and legends are exposed or added by the scrape."""
        used = {
            label.strip() for group in _GROUPING.findall(text) for label in group.split(",") if label.strip()
        }
        used |= set(_LEGEND_LABEL.findall(text))
        known = LABEL_NAMES | SCRAPE_LABELS | EXTERNAL_LABELS
        assert used <= known, f"{name}: unknown labels {sorted(used - known)}"


class TestDashboard:
    """The dashboard's shape: importable, templated on a Prometheus data source, with the panels asked for."""

    def test_schema_and_datasource_variable(self):
        """schemaVersion is 39 and a DS_PROMETHEUS data-source variable exists."""
        dashboard = _dashboard()
        assert dashboard["schemaVersion"] == 39
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"

    def test_every_query_uses_the_datasource_variable(self):
        """Every panel and target reads from ${DS_PROMETHEUS}, never a hard-coded data source."""
        for panel in _dashboard()["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]

    def test_panel_ids_unique_and_grid_fits(self):
        """Panel ids are unique and every panel fits the 24-column grid."""
        panels = _dashboard()["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids))
        for p in panels:
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]

    @pytest.mark.parametrize(
        "metric",
        [
            "claims_worker_claims_consumed_total",
            "claims_worker_results_total",
            "claims_worker_dead_letters_total",
            "claims_worker_consumer_lag_records",
            "claims_worker_consumer_lag_seconds",
            "claims_worker_end_to_end_latency_seconds_bucket",
            "claims_worker_decision_latency_seconds_bucket",
            "claims_worker_batch_size_records_bucket",
            "claims_worker_transactions_total",
            "claims_worker_rebalances_total",
            "claims_worker_policy_info",
            "claims_worker_ncpdp_rejects_total",
            "claims_worker_authorizations",
            "claims_worker_authorizations_restore_seconds",
            "claims_worker_on_file_approvals_total",
            "claims_worker_directory_release_timestamp_seconds",
            "claims_worker_directory_updates_lag_records",
            "claims_worker_start_time_seconds",
            "claims_replay_remaining_records",
            "claims_replay_range_records",
        ],
    )
    def test_required_panels_present(self, metric):
        """The dashboard charts each metric the operators asked for."""
        assert any(metric in expr for expr in _walk(_dashboard(), "expr"))

    def test_latency_panels_show_p50_and_p99(self):
        """End-to-end latency is charted as histogram_quantile at 0.5 and 0.99."""
        exprs = [e for e in _walk(_dashboard(), "expr") if "end_to_end_latency_seconds_bucket" in e]
        assert {e.split(",")[0] for e in exprs} == {"histogram_quantile(0.5", "histogram_quantile(0.99"}
